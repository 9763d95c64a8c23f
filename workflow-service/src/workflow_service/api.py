"""workflow-service REST routes: parse, call a handler, shape the answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from jsonschema import Draft202012Validator
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema, create_model

from stayops_kit.api import MAX_INT32, CurrentCaller, Runtime
from stayops_kit.auth import Caller
from stayops_kit.fields import ExactNumbers, IsoDateTimeQuery
from stayops_kit.permissions import Permission, require
from stayops_kit.problems import problem_responses
from stayops_schemas.events.workflows import RunStatus
from workflow_service import handlers, store
from workflow_service.definitions import builtin_documents, load_document, schema
from workflow_service.domain import RunLogEntry, WorkflowDefinition

router = APIRouter(tags=["workflows"])

Publisher = Annotated[Caller, require(Permission.WORKFLOWS_PUBLISH)]
Starter = Annotated[Caller, require(Permission.RUNS_START)]
Canceller = Annotated[Caller, require(Permission.RUNS_CANCEL)]

KEY_PATTERN = "^[a-z0-9][a-z0-9-]{0,62}$"  # as workflow.schema.json says of `key`
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=200, pattern="^[!-~]+$",
                                              description="Retrying with the same key answers the same run.")]
WorkflowVersion = Annotated[int | None, Field(default=None, ge=1, le=MAX_INT32,
                                              description="Run this version; the latest by default.")]


class WorkflowOut(BaseModel):
    key: str
    version: int
    name: str
    document: dict[str, Any]
    created_at: datetime
    created_by: str
    builtin: bool = False

    @classmethod
    def of(cls, definition: WorkflowDefinition, caller_org: str) -> WorkflowOut:
        shaped = cls.model_validate(definition, from_attributes=True)
        shaped.builtin = definition.org_id != caller_org
        return shaped


class WorkflowList(BaseModel):
    items: list[WorkflowOut]


class RunLogEntryOut(BaseModel):
    at: datetime
    actor: str
    message: str

    @classmethod
    def of(cls, entry: RunLogEntry) -> RunLogEntryOut:
        return cls.model_validate(entry, from_attributes=True)


class RunOut(BaseModel):
    id: str
    org_id: str
    workflow_key: str
    workflow_version: int
    status: RunStatus
    current_step: str | None
    waiting_for: dict[str, Any] | None
    parameters: dict[str, Any]
    steps: dict[str, Any]
    result: dict[str, Any] | None
    compensated: bool | None
    failure_reason: str | None
    needs_attention: bool
    started_by: str | None
    request_id: str | None
    correlation_id: str | None
    started_at: datetime
    updated_at: datetime
    parent_run_id: str | None = None
    branch: str | None = Field(default=None, description="For a parallel step's branch run: `<step>/<branch>` "
                               "of the workflow version it runs")
    log: list[RunLogEntryOut]

    @classmethod
    def of(cls, found: handlers.RunWithLog) -> RunOut:
        run = found.run
        return cls(
            id=run.id, org_id=run.org_id, workflow_key=run.workflow_key,
            workflow_version=run.workflow_version, status=run.status, current_step=run.current_step,
            waiting_for=run.state.get("waiting"), parameters=run.parameters, steps=run.state.get("steps", {}),
            result=run.result, compensated=run.compensated, failure_reason=run.failure_reason,
            needs_attention=run.status is RunStatus.NEEDS_ATTENTION
            or (run.status is RunStatus.FAILED and run.compensated is False),
            started_by=run.started_by, request_id=run.request_id, correlation_id=run.correlation_id,
            started_at=run.started_at, updated_at=run.updated_at, parent_run_id=run.parent_run_id,
            branch=run.branch, log=[RunLogEntryOut.of(e) for e in found.log],
        )


class StartRun(ExactNumbers):
    """Start a run of an org's own workflow: `parameters` must fit its definition's
    parameter schema (else 422)."""

    parameters: dict[str, Any] = Field(default_factory=dict)
    workflow_version: WorkflowVersion = None


def inline_definitions(json_schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema with its local `$defs` written in place, for embedding in the
    OpenAPI document (whose `#/...` references point at the document's root)."""
    defs: dict[str, Any] = json_schema.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items() if k not in ("$defs", "$schema", "$id")}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    inlined: dict[str, Any] = inline(json_schema)
    return inlined


class _BuiltinRun(ExactNumbers):
    model_config = ConfigDict(extra="forbid")


def _builtin_run_model(key: str, parameters_schema: dict[str, Any]) -> type[BaseModel]:
    """The body of a run of a built-in workflow: its parameter schema, published."""
    required = bool(parameters_schema.get("required"))
    validator = Draft202012Validator(parameters_schema)

    def fits(given: dict[str, Any]) -> dict[str, Any]:
        # Checked here too, so even a retry with a known Idempotency-Key is refused
        # when its parameters do not fit (before the run it names is looked up).
        problems = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(given)]
        if problems:
            raise ValueError(f"the parameters of {key} are not valid: " + "; ".join(problems))
        return given

    parameters: Any = (Annotated[dict[str, Any], AfterValidator(fits), WithJsonSchema(parameters_schema)],
                       ... if required else Field(default_factory=dict))
    model: type[BaseModel] = create_model(
        "".join(part.title() for part in key.split("-")) + "Run",
        __base__=_BuiltinRun,
        __doc__=f"Start a run of the built-in {key!r}; parameters as its definition declares them.",
        parameters=parameters,
        workflow_version=(WorkflowVersion, None),
    )
    return model


class CancelRun(BaseModel):
    reason: str | None = Field(default=None, max_length=1000)
    compensate: StrictBool = Field(default=False, description=(
        "Undo first: the compensations of the completed compensatable steps run in reverse order, "
        "as after a failure (none past a completed pivot); the run is cancelled when they are done."))


class PauseRun(BaseModel):
    reason: str | None = Field(default=None, max_length=1000)


class RunSummary(BaseModel):
    """A run as GET /v1/runs lists it (GET /v1/runs/{id} has its steps and log)."""

    id: str
    workflow_key: str
    workflow_version: int
    status: RunStatus
    current_step: str | None
    parameters: dict[str, Any]
    started_by: str | None
    started_at: datetime
    updated_at: datetime
    parent_run_id: str | None
    branch: str | None = Field(default=None, description="For a parallel step's branch run: `<step>/<branch>` "
                               "of the workflow version it runs")
    failure_reason: str | None

    @classmethod
    def of(cls, run: Any) -> RunSummary:
        return cls.model_validate(run, from_attributes=True)


class RunPage(BaseModel):
    items: list[RunSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")


# A cursor is the position of the last run of a page: its start in microseconds since
# 1970 (16 digits reach the year 2286) and its id; any text of this form is a position.
CURSOR_PATTERN = r"^[0-9]{1,16}\.[A-Za-z0-9-]{1,64}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _cursor_of(run: Any) -> str:
    micros = (run.started_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{run.id}"


def _cursor_after(cursor: str) -> tuple[datetime, str]:
    micros, _, run_id = cursor.partition(".")
    return _EPOCH + timedelta(microseconds=int(micros)), run_id


@router.get("/workflow-schema")
async def workflow_schema() -> dict[str, Any]:
    """The JSON Schema every workflow definition document follows."""
    return schema()


@router.get("/workflows", response_model=WorkflowList)
async def list_workflows(caller: CurrentCaller, runtime: Runtime) -> WorkflowList:
    async with runtime.uow.begin() as uow:
        latest = await handlers.list_definitions(uow, caller)
    return WorkflowList(items=[WorkflowOut.of(d, caller.org_id) for d in latest])


@router.post("/workflows", status_code=201, response_model=WorkflowOut,
             responses={**problem_responses(422)},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": inline_definitions(schema())},
                 "application/yaml": {"schema": {"type": "string", "description": "The same document in YAML."}},
             }}})
async def publish_workflow(request: Request, caller: Publisher, runtime: Runtime) -> WorkflowOut:
    """Publish a definition (JSON, or YAML with a yaml content type); a key the org
    already has gets the next version. Beyond the schema, the service checks what a
    schema cannot say (each `goto` names a step, expressions parse, event types are
    in the catalog): a definition failing those is a 422 naming where."""
    document = load_document(await request.body(), request.headers.get("content-type"))
    async with runtime.uow.begin() as uow:
        published = await handlers.publish_definition(uow, caller, document)
    return WorkflowOut.of(published, caller.org_id)


async def _start(key: str, parameters: dict[str, Any], workflow_version: int | None, caller: Caller,
                 runtime: Any, response: Response, idempotency_key: str | None) -> RunOut:
    async with runtime.uow.begin() as uow:
        run, created = await handlers.start_run(uow, handlers.RunRequest(
            org_id=caller.org_id, workflow_key=key, parameters=parameters, requested_by=caller.user_id,
            request_id=idempotency_key, workflow_version=workflow_version,
            person=None if caller.is_agent else caller.user_id,
        ))
        found = await handlers.get_run(uow, caller, run.id)
    if not created:
        response.status_code = 200
    return RunOut.of(found)


def _builtin_route(key: str, body_model: type[BaseModel]) -> Callable[..., Awaitable[RunOut]]:
    async def start_builtin_run(body: Any, caller: Caller, runtime: Any, response: Response,
                                idempotency_key: str | None = None) -> RunOut:
        return await _start(key, body.parameters, body.workflow_version, caller, runtime, response,
                            idempotency_key)

    # Annotations as objects: the body model is made at import, under a local name.
    start_builtin_run.__annotations__ = {
        "body": body_model, "caller": Starter, "runtime": Runtime, "response": Response,
        "idempotency_key": IdempotencyKey, "return": RunOut}
    start_builtin_run.__name__ = "start_" + key.replace("-", "_") + "_run"
    start_builtin_run.__doc__ = (f"Start a run of the built-in {key!r} (its parameters are published here); "
                                 "the same Idempotency-Key answers the same run (200, not 201).")
    return start_builtin_run


_RETRY: dict[int | str, dict[str, Any]] = {
    200: {"model": RunOut, "description": "A retry: the run its Idempotency-Key started."}}

# Built-in workflows have a route each, so their parameter schemas are in OpenAPI;
# registered before `/workflows/{key}/runs`, which they would otherwise match.
for _key, _document in sorted(builtin_documents().items()):
    router.post(f"/workflows/{_key}/runs", status_code=201, response_model=RunOut,
                responses={**problem_responses(404), **_RETRY})(
        _builtin_route(_key, _builtin_run_model(_key, _document.get("parameters") or {"type": "object"})))


@router.post("/workflows/{key}/runs", status_code=201, response_model=RunOut, responses=_RETRY)
async def start_run(
    key: Annotated[str, Path(pattern=KEY_PATTERN, json_schema_extra={
        "not": {"enum": sorted(builtin_documents())},
        "description": "An org's own workflow; the built-ins have routes of their own."})],
    body: StartRun, caller: Starter, runtime: Runtime, response: Response,
    idempotency_key: IdempotencyKey = None,
) -> RunOut:
    """Start a run; the same Idempotency-Key answers the same run (200, not 201)."""
    return await _start(key, body.parameters, body.workflow_version, caller, runtime, response, idempotency_key)


@router.get("/runs/{run_id}", response_model=RunOut)
async def get_run(run_id: str, caller: CurrentCaller, runtime: Runtime) -> RunOut:
    async with runtime.uow.begin() as uow:
        found = await handlers.get_run(uow, caller, run_id)
    return RunOut.of(found)


@router.post("/runs/{run_id}/cancel", response_model=RunOut, responses=problem_responses(404, 409))
async def cancel_run(run_id: str, caller: Canceller, runtime: Runtime, body: CancelRun | None = None) -> RunOut:
    async with runtime.uow.begin() as uow:
        found = await handlers.cancel_run(uow, caller, run_id, body.reason if body else None,
                                          compensate=body.compensate if body else False, results=runtime.results)
    return RunOut.of(found)




@router.post("/runs/{run_id}/pause", response_model=RunOut, responses=problem_responses(404, 409))
async def pause_run(run_id: str, caller: Canceller, runtime: Runtime, body: PauseRun | None = None) -> RunOut:
    """Hold a running or waiting run: it takes no new step; task outcomes, replies and
    timers that arrive meanwhile are recorded and applied, in order, on resume."""
    async with runtime.uow.begin() as uow:
        found = await handlers.pause_run(uow, caller, run_id, body.reason if body else None)
    return RunOut.of(found)


@router.post("/runs/{run_id}/resume", response_model=RunOut, responses=problem_responses(404, 409))
async def resume_run(run_id: str, caller: Canceller, runtime: Runtime) -> RunOut:
    """Go on with a paused run, applying first what arrived while it was paused."""
    async with runtime.uow.begin() as uow:
        found = await handlers.resume_run(uow, caller, run_id, runtime.results)
    return RunOut.of(found)


MAX_PAGE = 200


@router.get("/runs", response_model=RunPage)
async def list_runs(
    caller: CurrentCaller, runtime: Runtime,
    workflow_key: Annotated[str | None, Query(pattern=KEY_PATTERN)] = None,
    status: Annotated[list[RunStatus] | None, Query(description="One or more; any of them matches.")] = None,
    started_after: Annotated[IsoDateTimeQuery | None, Query(description="Started at or after.")] = None,
    started_before: Annotated[IsoDateTimeQuery | None, Query(description="Started before.")] = None,
    started_by: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    listing_id: Annotated[str | None, Query(min_length=1, max_length=200, description=(
        "Runs whose parameters name this listing (`listing_ids` holds it, or `listing_id` is it)."))] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the page before.")] = None,
) -> RunPage:
    """The org's runs, newest first, filtered; cursor-paginated (runs started after the
    first page was read do not shift the later pages)."""
    filters = store.RunFilter(
        limit=limit, workflow_key=workflow_key, statuses=tuple(status or ()), started_after=started_after,
        started_before=started_before, started_by=started_by, listing_id=listing_id,
        after=_cursor_after(cursor) if cursor else None)
    async with runtime.uow.begin() as uow:
        found, more = await handlers.list_runs(uow, caller, filters)
    return RunPage(items=[RunSummary.of(r) for r in found], next_cursor=_cursor_of(found[-1]) if more else None)


@router.get("/runs/{run_id}/children", response_model=RunPage, responses=problem_responses(404))
async def run_children(run_id: str, caller: CurrentCaller, runtime: Runtime) -> RunPage:
    """The runs this run started (a map step's child runs), oldest first."""
    async with runtime.uow.begin() as uow:
        found = await handlers.children_of(uow, caller, run_id)
    return RunPage(items=[RunSummary.of(r) for r in found], next_cursor=None)
