"""workflow-service REST routes: parse, call a handler, shape the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, Field

from stayops_kit.api import CurrentCaller, Runtime
from stayops_kit.problems import problem
from stayops_schemas.events.workflows import RunStatus
from workflow_service import handlers
from workflow_service.definitions import DefinitionInvalid, load_document, schema
from workflow_service.domain import RunLogEntry, WorkflowDefinition

router = APIRouter(tags=["workflows"])


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
    log: list[RunLogEntryOut]

    @classmethod
    def of(cls, found: handlers.RunWithLog) -> RunOut:
        run = found.run
        return cls(
            id=run.id, org_id=run.org_id, workflow_key=run.workflow_key,
            workflow_version=run.workflow_version, status=run.status, current_step=run.current_step,
            waiting_for=run.state.get("waiting"), parameters=run.parameters, steps=run.state.get("steps", {}),
            result=run.result, compensated=run.compensated, failure_reason=run.failure_reason,
            needs_attention=run.status is RunStatus.FAILED and run.compensated is False,
            started_by=run.started_by, request_id=run.request_id, correlation_id=run.correlation_id,
            started_at=run.started_at, updated_at=run.updated_at,
            log=[RunLogEntryOut.of(e) for e in found.log],
        )


class StartRun(BaseModel):
    parameters: dict[str, Any] = Field(default_factory=dict)
    workflow_version: int | None = Field(default=None, ge=1)


class CancelRun(BaseModel):
    reason: str | None = Field(default=None, max_length=1000)


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
             openapi_extra={"requestBody": {"content": {
                 "application/json": {"schema": {"type": "object"}},
                 "application/yaml": {"schema": {"type": "string"}}}}})
async def publish_workflow(request: Request, caller: CurrentCaller, runtime: Runtime) -> Any:
    """Publish a definition (JSON, or YAML with a yaml content type); a key the org
    already has gets the next version."""
    try:
        document = load_document(await request.body(), request.headers.get("content-type"))
        async with runtime.uow.begin() as uow:
            published = await handlers.publish_definition(uow, caller, document)
    except DefinitionInvalid as exc:
        return problem(422, str(exc), title=exc.title, instance=request.url.path, errors=exc.errors)
    return WorkflowOut.of(published, caller.org_id)


@router.post("/workflows/{key}/runs", status_code=201, response_model=RunOut)
async def start_run(
    key: str, body: StartRun, caller: CurrentCaller, runtime: Runtime, response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> RunOut:
    """Start a run; the same Idempotency-Key answers the same run (200, not 201)."""
    async with runtime.uow.begin() as uow:
        run, created = await handlers.start_run(uow, handlers.RunRequest(
            org_id=caller.org_id, workflow_key=key, parameters=body.parameters, requested_by=caller.user_id,
            request_id=idempotency_key, workflow_version=body.workflow_version,
            person=None if caller.is_agent else caller.user_id,
        ))
        found = await handlers.get_run(uow, caller, run.id)
    if not created:
        response.status_code = 200
    return RunOut.of(found)


@router.get("/runs/{run_id}", response_model=RunOut)
async def get_run(run_id: str, caller: CurrentCaller, runtime: Runtime) -> RunOut:
    async with runtime.uow.begin() as uow:
        found = await handlers.get_run(uow, caller, run_id)
    return RunOut.of(found)


@router.post("/runs/{run_id}/cancel", response_model=RunOut)
async def cancel_run(run_id: str, caller: CurrentCaller, runtime: Runtime, body: CancelRun | None = None) -> RunOut:
    async with runtime.uow.begin() as uow:
        found = await handlers.cancel_run(uow, caller, run_id, body.reason if body else None)
    return RunOut.of(found)


