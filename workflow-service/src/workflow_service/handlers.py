"""One function per command or event: load, decide (the saga in `domain`), save and
announce — all in the caller's unit of work."""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from stayops_kit.auth import Caller
from stayops_kit.claims import ResultReader
from stayops_kit.consumer import EventContext
from stayops_kit.errors import DomainError, PermanentError, TransientError
from stayops_kit.outbox import UnitOfWork
from stayops_kit.policies import org_policy, store_policy
from stayops_schemas.catalog import event_type as catalog_entry
from stayops_schemas.events.base import Payload
from stayops_schemas.events.org import OrgPolicyUpdated
from stayops_schemas.events.tasks import (
    Priority,
    ReassignMode,
    TaskCancelRequested,
    TaskCompleted,
    TaskFailed,
    TaskReassignRequested,
    TaskRequested,
    TaskType,
)
from stayops_schemas.events.workflows import (
    RunStatus,
    WaitKind,
    WorkflowRunCancelled,
    WorkflowRunCompleted,
    WorkflowRunFailed,
    WorkflowRunRequested,
    WorkflowRunStarted,
    WorkflowRunWaiting,
)
from workflow_service import store
from workflow_service.definitions import (
    BRANCH_SEPARATOR,
    Definition,
    DefinitionInvalid,
    builtin_documents,
    concurrency_key,
    map_targets,
    parse,
    resolve_parameters,
)
from workflow_service.domain import (
    FINISHED,
    SERVICE_ACTOR,
    ChildToControl,
    ChildToStart,
    DetailNeeded,
    RunAlreadyFinished,
    RunLogEntry,
    RunNotFound,
    RunNotPausable,
    Saga,
    Transition,
    WorkflowDefinition,
    WorkflowNotFound,
    WorkflowRun,
    task_completed_entry,
    task_failed_entry,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunWithLog:
    run: WorkflowRun
    log: list[RunLogEntry]


@dataclass(frozen=True)
class RunRequest:
    """Ask for a run: from REST (request_id = the Idempotency-Key) or from
    `stayops.workflow.run.requested`."""

    org_id: str
    workflow_key: str
    parameters: dict[str, Any]
    requested_by: str
    request_id: str | None = None
    workflow_version: int | None = None
    # Set when a person (not an automation, not an AI agent) starts the run: the
    # parameters that default to the caller take their user id.
    person: str | None = None
    parent_run_id: str | None = None
    # A parallel step's branch (`<step>/<branch>`) runs that branch of its parent's
    # definition version, whoever owns it (the org, or the built-ins).
    branch: str | None = None
    definition_org_id: str | None = None


# --- definitions ----------------------------------------------------------------

async def publish_definition(uow: UnitOfWork, caller: Caller, document: dict[str, Any]) -> WorkflowDefinition:
    """Validate a definition document and store it as the next version of its key."""
    definition = parse(document)
    unknown = []
    for path, key, version in map_targets(definition):
        try:
            await _definition_for(uow, caller.org_id, key, version)
        except WorkflowNotFound:
            unknown.append({"path": path, "message": f"the org has no workflow {key!r}"
                            + (f" v{version}" if version else "") + " and none is built in; publish it first"})
    if unknown:
        raise DefinitionInvalid(unknown)
    await store.lock_definition_key(uow.conn, caller.org_id, definition.key)
    version = await store.latest_version(uow.conn, caller.org_id, definition.key) + 1
    published = WorkflowDefinition(
        org_id=caller.org_id, key=definition.key, version=version, name=definition.name,
        document={**document, "version": version}, created_at=uow.clock.now(), created_by=caller.user_id,
    )
    await store.insert_definition(uow.conn, published)
    return published


async def _ensure_builtins(uow: UnitOfWork) -> list[WorkflowDefinition]:
    seeded = []
    for key, document in builtin_documents().items():
        builtin = WorkflowDefinition(
            org_id=store.BUILTIN_ORG, key=key, version=int(document.get("version", 1)), name=document["name"],
            document=document, created_at=uow.clock.now(), created_by=SERVICE_ACTOR,
        )
        await store.ensure_definition(uow.conn, builtin)
        seeded.append(builtin)
    return seeded


async def list_definitions(uow: UnitOfWork, caller: Caller) -> list[WorkflowDefinition]:
    """The latest version of each of the org's workflows, and the built-ins it has not replaced."""
    own = await store.list_latest_definitions(uow.conn, caller.org_id)
    keys = {d.key for d in own}
    await _ensure_builtins(uow)
    builtins = await store.list_latest_definitions(uow.conn, store.BUILTIN_ORG)
    return sorted(own + [d for d in builtins if d.key not in keys], key=lambda d: d.key)


async def _definition_for(uow: UnitOfWork, org_id: str, key: str, version: int | None) -> WorkflowDefinition:
    found = await store.get_definition(uow.conn, org_id, key, version)
    if found is None and key in builtin_documents() and (
            version is None or await store.latest_version(uow.conn, org_id, key) == 0):
        await _ensure_builtins(uow)
        found = await store.get_definition(uow.conn, store.BUILTIN_ORG, key, version)
    if found is None:
        raise WorkflowNotFound(key if version is None else f"{key} v{version}")
    return found


# --- runs -----------------------------------------------------------------------

def _log(uow: UnitOfWork, entry: RunLogEntry) -> None:
    """A line of a run's log, inserted with the transaction's other deferred rows at its
    end (one statement for a consumer batch's lines); `get_run` writes them first."""
    uow.defer_insert(store.run_log, store.log_row(entry))


async def get_run(uow: UnitOfWork, caller: Caller, run_id: str) -> RunWithLog:
    run = await store.get_run(uow.conn, caller.org_id, run_id)
    if run is None:
        raise RunNotFound(run_id)
    await uow.flush()  # the log lines this transaction deferred, so the log read has them
    return RunWithLog(run, await store.run_log_of(uow.conn, caller.org_id, run_id))


async def start_run(uow: UnitOfWork, request: RunRequest) -> tuple[WorkflowRun, bool]:
    """Start a run, once per request id; returns the run and whether it is new."""
    if request.request_id is not None:
        existing = await store.run_by_request(uow.conn, request.org_id, request.request_id)
        if existing is not None:
            return existing, False
    stored, definition = await _definition_to_start(uow, request)
    parameters = resolve_parameters(definition, request.parameters, caller=request.person)
    now = uow.clock.now()
    key = concurrency_key(definition, parameters)
    run = WorkflowRun(
        id=uow.ids(), org_id=request.org_id, workflow_key=stored.key, workflow_version=stored.version,
        status=RunStatus.RUNNING, started_at=now, updated_at=now, parameters=parameters,
        started_by=request.requested_by, request_id=request.request_id, definition_org_id=stored.org_id,
        concurrency_key=key, parent_run_id=request.parent_run_id, branch=request.branch,
    )
    run = replace(run, correlation_id=run.id)
    overlapping: list[WorkflowRun] = []
    if key is not None:
        # Serialise the starts of one key, so two overlapping starts see each other.
        await store.lock_concurrency_key(uow.conn, run.org_id, run.workflow_key, key)
        overlapping = await store.open_runs_of_key(uow.conn, run.org_id, run.workflow_key, key)
    if not await store.insert_run_once(uow.conn, run):
        # Someone else started it for this request id a moment ago.
        existing = await store.run_by_request(uow.conn, request.org_id, request.request_id or "")
        if existing is None:
            raise RuntimeError(f"run for request {request.request_id} vanished")
        return existing, False
    await uow.announce("stayops.workflow.run.started", WorkflowRunStarted(
        run_id=run.id, org_id=run.org_id, workflow_key=run.workflow_key, workflow_version=run.workflow_version,
        parameters=parameters, request_id=request.request_id, started_by=request.requested_by,
    ), org_id=run.org_id, key=run.id, correlation_id=run.id)
    policy = (definition.concurrency or {}).get("policy")
    if overlapping and policy == "skip":
        saga = Saga(definition, run.id, parameters, org_id=run.org_id)
        reason = f"skipped: run {overlapping[0].id} is still open for {key}"
        run = await _apply(uow, run, definition, saga.cancel(SERVICE_ACTOR, reason))
        return run, True
    if overlapping and policy == "queue":
        run = replace(run, status=RunStatus.QUEUED,
                      state={"steps": {}, "attempts": {}, "queued_behind": overlapping[0].id})
        await store.update_run(uow.conn, run)
        _log(uow, RunLogEntry(
            run.id, run.org_id, now, SERVICE_ACTOR,
            f"queued: run {overlapping[0].id} is still open for {key}; this run starts when it ends"))
        return run, True
    for previous in overlapping:  # cancel_previous
        await _cancel_loaded(uow, previous, SERVICE_ACTOR,
                             f"superseded by run {run.id} of {run.workflow_key} for {key}", compensate=False)
    return await _begin(uow, run, definition), True


async def _definition_to_start(uow: UnitOfWork, request: RunRequest) -> tuple[WorkflowDefinition, Definition]:
    """The stored definition a run starts with, parsed. A parallel step's branch (only
    ever started by its parent) runs that branch of its parent's definition version."""
    if request.branch is None:
        stored = await _definition_for(uow, request.org_id, request.workflow_key, request.workflow_version)
        return stored, _parsed(uow, stored)
    parents = await store.get_definition(uow.conn, request.definition_org_id or request.org_id,
                                         request.workflow_key, request.workflow_version)
    if parents is None or request.parent_run_id is None:
        raise WorkflowNotFound(f"{request.workflow_key} v{request.workflow_version}")
    try:
        return parents, _parsed(uow, parents).branch(request.branch)
    except KeyError as exc:
        raise WorkflowNotFound(f"{request.workflow_key} v{request.workflow_version} branch {request.branch}") from exc


async def _begin(uow: UnitOfWork, run: WorkflowRun, definition: Definition) -> WorkflowRun:
    saga = Saga(definition, run.id, run.parameters, org_id=run.org_id, policy=await org_policy(uow, run.org_id))
    return await _apply(uow, run, definition, saga.start())


async def _start_queued(uow: UnitOfWork, ended: WorkflowRun) -> None:
    """A run of a `queue` key ended: the oldest run queued behind the key starts."""
    if ended.concurrency_key is None:
        return
    queued = await store.next_queued_run(uow.conn, ended.org_id, ended.workflow_key, ended.concurrency_key)
    if queued is None:
        return
    definition = await _parsed_definition(uow, queued)
    if definition is None:
        return
    _log(uow, RunLogEntry(queued.id, queued.org_id, uow.clock.now(), SERVICE_ACTOR,
                                                 f"run {ended.id} ended ({ended.status.value}); starting"))
    await _begin(uow, replace(queued, status=RunStatus.RUNNING, state={}), definition)


async def cancel_run(uow: UnitOfWork, caller: Caller, run_id: str, reason: str | None,
                     compensate: bool = False, results: ResultReader | None = None) -> RunWithLog:
    run = await _locked_run(uow, caller.org_id, run_id)
    if run is None:
        raise RunNotFound(run_id)
    if run.status in FINISHED:
        raise RunAlreadyFinished(run_id, run.status)
    await _cancel_loaded(uow, run, caller.user_id, reason, compensate=compensate, results=results)
    return await get_run(uow, caller, run_id)


async def _cancel_loaded(uow: UnitOfWork, run: WorkflowRun, actor: str, reason: str | None, *,
                         compensate: bool, results: ResultReader | None = None) -> None:
    """`results` reads stored results for the parent a cancelled child's end advances."""
    definition = await _parsed_definition(uow, run)
    if definition is None:
        return
    saga = await _saga_of(uow, definition, run)
    await _apply(uow, run, definition, saga.cancel(actor, reason, compensate=compensate), results=results)


async def pause_run(uow: UnitOfWork, caller: Caller, run_id: str, reason: str | None) -> RunWithLog:
    run = await _locked_run(uow, caller.org_id, run_id)
    if run is None:
        raise RunNotFound(run_id)
    if run.status not in (RunStatus.RUNNING, RunStatus.WAITING):
        raise RunNotPausable(run_id, run.status, "pause")
    definition = await _parsed_definition(uow, run)
    if definition is not None:
        saga = await _saga_of(uow, definition, run)
        await _apply(uow, run, definition, saga.pause(caller.user_id, reason))
    return await get_run(uow, caller, run_id)


async def resume_run(uow: UnitOfWork, caller: Caller, run_id: str, results: ResultReader | None = None) -> RunWithLog:
    run = await _locked_run(uow, caller.org_id, run_id)
    if run is None:
        raise RunNotFound(run_id)
    if run.status is not RunStatus.PAUSED:
        raise RunNotPausable(run_id, run.status, "resume")
    definition = await _parsed_definition(uow, run)
    if definition is not None:
        transition = await _advance(uow, results, definition, run, lambda saga: saga.resume(caller.user_id))
        await _apply(uow, run, definition, transition, results=results)
    return await get_run(uow, caller, run_id)


async def list_runs(uow: UnitOfWork, caller: Caller, filters: store.RunFilter) -> tuple[list[WorkflowRun], bool]:
    """The org's runs, newest first, as filtered; and whether more follow."""
    found = await store.list_runs(uow.conn, caller.org_id, filters)
    return found[: filters.limit], len(found) > filters.limit


async def children_of(uow: UnitOfWork, caller: Caller, run_id: str) -> list[WorkflowRun]:
    if await store.get_run(uow.conn, caller.org_id, run_id) is None:
        raise RunNotFound(run_id)
    return await store.children_of(uow.conn, caller.org_id, run_id)


async def run_requested(ctx: EventContext, event: WorkflowRunRequested) -> None:
    try:
        await start_run(ctx.uow, RunRequest(
            org_id=event.org_id, workflow_key=event.workflow_key, parameters=event.parameters,
            requested_by=event.requested_by, request_id=event.request_id, workflow_version=event.workflow_version,
        ))
    except DomainError as exc:
        raise PermanentError(f"cannot start {event.workflow_key} for request {event.request_id}: {exc}") from exc


async def _locked_run(uow: UnitOfWork, org_id: str, run_id: str) -> WorkflowRun | None:
    """A run locked for its transition, its parent (and theirs) locked first: a
    child's end locks its parent to report, and a parent's cancel locks its children,
    so every transaction takes a family's locks in the same order, parents first. A
    run without a parent (most) is locked by its one read."""
    top_level = await store.lock_top_level_run(uow.conn, org_id, run_id)
    if top_level is not None:
        return top_level
    run = await store.get_run(uow.conn, org_id, run_id)
    if run is not None and run.parent_run_id is not None:
        await _locked_run(uow, org_id, run.parent_run_id)
    return await store.get_run(uow.conn, org_id, run_id, for_update=True)


async def _run_of(ctx: EventContext, org_id: str, run_id: str | None) -> WorkflowRun | None:
    """The run a task event names, if it is one of this org's runs. Tasks outside any
    run, and runs of another org, are not this service's business."""
    if run_id is None:
        return None
    # Locked so that the saga's writes to one run are serialised.
    run = await _locked_run(ctx.uow, org_id, run_id)
    if run is None:
        log.debug("%s names run %s, which org %s does not have", ctx.envelope.type, run_id, org_id)
    return run


async def task_completed(ctx: EventContext, event: TaskCompleted) -> None:
    run = await _run_of(ctx, event.org_id, event.workflow_run_id)
    if run is None:
        return
    entry = task_completed_entry(run, event, ctx.uow.clock.now())
    if run.status in FINISHED or event.workflow_step is None:
        _log(ctx.uow, _ignored(entry, run))
        return
    step = event.workflow_step
    definition = await _parsed_definition(ctx.uow, run)
    if definition is None:
        return
    transition = await _advance(ctx.uow, ctx.results, definition, run, lambda saga: saga.task_completed(
        step, request_id=event.request_id, actor=event.completed_by, result=event.result,
        outcome=event.outcome.value if event.outcome else None, comment=event.comment, changes=event.changes,
    ))
    _log(ctx.uow, entry if transition.applied else _ignored(entry, run))
    await _apply(ctx.uow, run, definition, transition, results=ctx.results)


async def task_failed(ctx: EventContext, event: TaskFailed) -> None:
    run = await _run_of(ctx, event.org_id, event.workflow_run_id)
    if run is None:
        return
    entry = task_failed_entry(run, event, ctx.uow.clock.now())
    if run.status in FINISHED or event.workflow_step is None:
        _log(ctx.uow, _ignored(entry, run))
        return
    step = event.workflow_step
    definition = await _parsed_definition(ctx.uow, run)
    if definition is None:
        return
    transition = await _advance(ctx.uow, ctx.results, definition, run, lambda saga: saga.task_failed(
        step, request_id=event.request_id, actor=event.failed_by or entry.actor, reason=event.reason,
        result=event.result))
    _log(ctx.uow, entry if transition.applied else _ignored(entry, run))
    await _apply(ctx.uow, run, definition, transition, results=ctx.results)


async def reply_received(ctx: EventContext, event: Payload) -> None:
    """A reply an `emit_and_await` step may wait for: its request id names the run."""
    request_id = str(getattr(event, "request_id", "") or "")
    run = await _run_of(ctx, ctx.org_id, request_id.split(":", 1)[0] or None) if ":" in request_id else None
    if run is None or run.status in FINISHED:
        return
    definition = await _parsed_definition(ctx.uow, run)
    if definition is None:
        return
    transition = await _advance(ctx.uow, ctx.results, definition, run, lambda saga: saga.reply_received(
        ctx.envelope.type, request_id, event.model_dump(mode="json"), actor=ctx.envelope.source))
    await _apply(ctx.uow, run, definition, transition, results=ctx.results)


async def policy_updated(ctx: EventContext, event: OrgPolicyUpdated) -> None:
    """Keep the org's price policy, which bounds what a decision may approve."""
    await store_policy(ctx.uow, event)


async def fire_due_timers(uow: UnitOfWork, results: ResultReader | None = None) -> int:
    """Fire the timers due by the database clock, each advancing its run, in this
    transaction; returns how many fired. A timer whose run cannot advance is logged
    on the run and stays fired, so it cannot block the others."""
    fired = await store.claim_due_timers(uow.conn)
    for timer in fired:
        # Events of a timer that fails must not leave with the others: keep what was
        # pending before it, and put that back if it fails.
        pending_before = {table: list(rows) for table, rows in uow.pending.rows.items()}
        announced_before = len(uow.announced)
        try:
            async with uow.conn.begin_nested():
                run = await _locked_run(uow, timer.org_id, timer.run_id)
                if run is None or run.status in FINISHED:
                    continue
                definition = await _parsed_definition(uow, run)
                if definition is None:
                    continue
                def fire(saga: Saga, t: Any = timer) -> Transition:
                    return saga.timer_fired(t.step, t.id)

                transition = await _advance(uow, results, definition, run, fire)
                await _apply(uow, run, definition, transition, results=results)
        except Exception as exc:
            uow.pending.rows = pending_before
            del uow.announced[announced_before:]
            log.exception("timer %s of run %s could not fire", timer.id, timer.run_id)
            _log(uow, RunLogEntry(
                run_id=timer.run_id, org_id=timer.org_id, at=uow.clock.now(), actor="timer",
                message=f"timer {timer.id} of step {timer.step} could not advance the run: {exc}"))
    return len(fired)


# --- applying a transition --------------------------------------------------------

def _ignored(entry: RunLogEntry, run: WorkflowRun) -> RunLogEntry:
    return replace(entry, message=f"{entry.message} - ignored: run is {run.status.value}"
                                  + (f" at step {run.current_step}" if run.current_step else ""))


async def _parsed_definition(uow: UnitOfWork, run: WorkflowRun) -> Definition | None:
    """The run's definition; None when it no longer passes the checks (published before
    they existed), in which case the run is stopped here, visibly, needing attention."""
    owner = run.definition_org_id or run.org_id
    parsed = _known_definition(uow, owner, run.workflow_key, run.workflow_version)
    if parsed is None:
        stored = await store.get_definition(uow.conn, owner, run.workflow_key, run.workflow_version)
        if stored is None:
            raise PermanentError(f"run {run.id}: definition {run.workflow_key} v{run.workflow_version} is gone")
        try:
            parsed = _parsed(uow, stored)
        except DefinitionInvalid as exc:
            await _stop_outdated(uow, run, exc)
            return None
    try:
        return parsed.branch(run.branch) if run.branch else parsed
    except KeyError as exc:
        raise PermanentError(f"run {run.id}: {run.workflow_key} v{run.workflow_version} has no branch "
                             f"{run.branch}") from exc


# Parsed definitions this process started or advanced runs with, by (owner org, key,
# version), per database (engine); bounded, least recently used out. A run's
# definition is read back and parsed on every event that advances it, and the JSON
# Schema check was a fifth of workflow-service's CPU per saga step. A stored version is
# never changed or deleted, and a `Definition` is never altered, so one parse serves
# every run of it and its row need not be read again. What is remembered was read
# committed (a run's definition is committed before the run is: its foreign key), or is
# a built-in, the same document whoever seeds it; a document that fails the checks is
# not remembered (it raises each time).
_DEFINITIONS_LIMIT = 512
_definitions: weakref.WeakKeyDictionary[Any, OrderedDict[tuple[str, str, int], Definition]] = \
    weakref.WeakKeyDictionary()


def _parsed(uow: UnitOfWork, stored: WorkflowDefinition) -> Definition:
    """`parse` of a stored definition version, once per process and database."""
    found = _known_definition(uow, stored.org_id, stored.key, stored.version)
    if found is None:
        found = parse(stored.document)
        _remember_definition(uow, stored.org_id, stored.key, stored.version, found)
    return found


def _known_definition(uow: UnitOfWork, org_id: str, key: str, version: int) -> Definition | None:
    known = _definitions.get(uow.conn.sync_engine)
    found = None if known is None else known.get((org_id, key, version))
    if found is not None and known is not None:
        known.move_to_end((org_id, key, version))
    return found


def _remember_definition(uow: UnitOfWork, org_id: str, key: str, version: int, parsed: Definition) -> None:
    known = _definitions.setdefault(uow.conn.sync_engine, OrderedDict())
    known[(org_id, key, version)] = parsed
    if len(known) > _DEFINITIONS_LIMIT:
        known.popitem(last=False)


async def _stop_outdated(uow: UnitOfWork, run: WorkflowRun, exc: DefinitionInvalid) -> None:
    reason = (f"{run.workflow_key} v{run.workflow_version} no longer passes the workflow checks ({exc}); "
              "the run takes no further step - needs attention")
    _log(uow, RunLogEntry(run.id, run.org_id, uow.clock.now(), SERVICE_ACTOR, reason))
    await store.cancel_timers(uow.conn, run.org_id, run.id)
    await uow.announce("stayops.workflow.run.failed", WorkflowRunFailed(
        run_id=run.id, org_id=run.org_id, workflow_key=run.workflow_key, workflow_version=run.workflow_version,
        step=run.current_step, reason=reason, compensated=False, status=RunStatus.NEEDS_ATTENTION,
    ), org_id=run.org_id, key=run.id, correlation_id=run.id)
    await store.update_run(uow.conn, replace(run, status=RunStatus.NEEDS_ATTENTION, updated_at=uow.clock.now(),
                                             compensated=False, failure_reason=reason))


async def _saga_of(uow: UnitOfWork, definition: Definition, run: WorkflowRun,
                   details: Mapping[str, dict[str, Any]] | None = None) -> Saga:
    """The run's saga, with the org's price policy as it stands now."""
    return Saga(definition, run.id, run.parameters, run.state, run.status, run.current_step, org_id=run.org_id,
                policy=await org_policy(uow, run.org_id), details=details)


async def _advance(uow: UnitOfWork, results: ResultReader | None, definition: Definition, run: WorkflowRun,
                   happening: Callable[[Saga], Transition]) -> Transition:
    """Apply a happening to the run's saga; when the saga needs a stored result's
    detail (claim check), fetch it from its owner and apply the happening again,
    from the same state, with it. A fetch that fails is transient: the event is
    retried, the run is unchanged."""
    details: dict[str, dict[str, Any]] = {}
    while True:
        saga = await _saga_of(uow, definition, run, details)
        try:
            return happening(saga)
        except DetailNeeded as needed:
            ref = needed.ref
            if ref.org_id != run.org_id:
                raise PermanentError(f"run {run.id}: result {ref.id} belongs to another org") from needed
            if results is None or ref.id in details:
                raise TransientError(f"run {run.id}: cannot read result {ref.id} of {ref.service}") from needed
            details[ref.id] = await results.fetch(ref)


async def _apply(uow: UnitOfWork, run: WorkflowRun, definition: Definition, transition: Transition, *,
                 results: ResultReader | None = None) -> WorkflowRun:
    """Save a transition: log lines, task requests, timers, events and the run row.
    `results` reads stored results (claim check) for the runs this one reaches: the
    parent a child run's end advances (a batch decision reads its segments' proposals)
    and the children a resume reaches."""
    if not transition.applied:
        return run
    now = uow.clock.now()
    for line in transition.log:
        _log(uow, RunLogEntry(run.id, run.org_id, now, line.actor, line.message))

    async def announce(event_type: str, payload: Payload) -> None:
        await uow.announce(event_type, payload, org_id=run.org_id, key=run.id, correlation_id=run.id)

    for task in transition.tasks:
        await announce("stayops.task.requested", TaskRequested(
            due_at=None if task.due_in is None else now + task.due_in,
            request_id=task.request_id, org_id=run.org_id, title=task.title, task_type=TaskType(task.task_type),
            priority=Priority(task.priority), description=task.description, role_id=task.role_id,
            assigned_to=task.assigned_to, data=task.data, workflow_run_id=run.id, workflow_step=task.workflow_step,
            requested_by=SERVICE_ACTOR,
        ))
    for cancel in transition.cancels:
        await announce("stayops.task.cancel.requested", TaskCancelRequested(
            request_id=cancel.request_id, org_id=run.org_id, reason=cancel.reason, requested_by=cancel.requested_by))
    for reassign in transition.reassigns:
        await announce("stayops.task.reassign.requested", TaskReassignRequested(
            request_id=reassign.request_id, org_id=run.org_id, assigned_to=reassign.assigned_to,
            role_id=reassign.role_id, reason=reassign.reason, requested_by=reassign.requested_by,
            mode=ReassignMode(reassign.mode)))
    wake_at = None
    for timer in transition.timers:
        timer_id = uow.ids()
        wake_at = await store.insert_timer(uow.conn, timer_id=timer_id, run_id=run.id, org_id=run.org_id,
                                           step=timer.step, delay=timer.delay, at=timer.at)
        waiting_now = transition.waiting or {}
        if waiting_now.get("step") == timer.step:
            waiting_now["timer_id"] = timer_id
        elif timer.step.partition("@")[0] == waiting_now.get("step") and "timers" in waiting_now:
            waiting_now["timers"][timer.step.partition("@")[2]] = timer_id
    for emit in transition.emits:  # checked by the saga, which failed the step if invalid
        await announce(emit.event_type, catalog_entry(emit.event_type).model.model_validate(emit.data))
    common: dict[str, Any] = {"run_id": run.id, "org_id": run.org_id, "workflow_key": run.workflow_key,
                              "workflow_version": run.workflow_version, "step": transition.current_step}
    status = transition.status
    # An escalation asks for a notification but the run still waits for the same task:
    # that is no new wait to announce.
    before_wait, now_wait = run.state.get("waiting") or {}, transition.waiting or {}
    same_wait = run.status is RunStatus.WAITING and bool(before_wait) and all(
        before_wait.get(k) == now_wait.get(k) for k in ("kind", "step", "request_id", "attempt"))
    started_waiting = bool(transition.tasks or transition.timers or transition.emits or transition.children) \
        and not same_wait
    if status is RunStatus.WAITING and transition.wait_kind is not None and started_waiting:
        waiting = transition.waiting or {}
        kind = transition.wait_kind
        await announce("stayops.workflow.run.waiting", WorkflowRunWaiting(
            **common, waiting_for=kind,
            task_id=(transition.tasks[0].request_id if transition.tasks else waiting.get("request_id"))
            if kind is WaitKind.TASK else None,
            event_type=waiting.get("reply_type") if kind is WaitKind.EVENT else None,
            wake_at=wake_at if kind is WaitKind.TIMER else None,
        ))
    elif status is RunStatus.COMPLETED:
        await announce("stayops.workflow.run.completed", WorkflowRunCompleted(**common, result=transition.result or {}))
    elif status in (RunStatus.FAILED, RunStatus.NEEDS_ATTENTION):
        await announce("stayops.workflow.run.failed", WorkflowRunFailed(
            **common, status=status, reason=transition.failure_reason or "failed",
            compensated=bool(transition.compensated)))
    elif status is RunStatus.CANCELLED:
        await announce("stayops.workflow.run.cancelled", WorkflowRunCancelled(
            **common, cancelled_by=transition.cancelled_by or SERVICE_ACTOR,
            reason=transition.cancel_reason))
    if status in FINISHED:
        await store.cancel_timers(uow.conn, run.org_id, run.id)
    # Timers nobody waits for any more (a reply came before the timeout, a decision
    # before its deadline) are forgotten.
    before, after = run.state.get("waiting") or {}, transition.waiting or {}
    still = {after.get("timer_id"), *(after.get("timers") or {}).values()}
    for previous_timer in (before.get("timer_id"), *(before.get("timers") or {}).values()):
        if previous_timer and previous_timer not in still:
            await store.drop_timer(uow.conn, run.org_id, previous_timer)
    updated = replace(run, status=status, current_step=transition.current_step, state=transition.state,
                      updated_at=now, result=transition.result, compensated=transition.compensated,
                      failure_reason=transition.failure_reason)
    await store.update_run(uow.conn, updated)
    if status in FINISHED and run.status not in FINISHED:
        await _start_queued(uow, updated)
    for control in transition.child_controls:
        await _control_child(uow, run.org_id, control, results)
    if transition.children:
        updated = await _start_children(uow, updated, definition, transition.children, results)
    if status in FINISHED and run.status not in FINISHED and run.parent_run_id is not None:
        await _report_to_parent(uow, updated, results)
    return updated


# --- child runs of a map step -------------------------------------------------------

def _outcome_of(child: WorkflowRun) -> dict[str, Any]:
    """A finished child run as its parent's `child_finished` takes it."""
    return {"request_id": child.request_id or "", "run_id": child.id, "status": child.status.value,
            "result": child.result, "reason": child.failure_reason or (child.state.get("cancelled") or {}).get(
                "reason") or (f"run {child.status.value}" if child.status is not RunStatus.COMPLETED else None)}


async def _start_children(uow: UnitOfWork, parent: WorkflowRun, definition: Definition,
                          children: list[ChildToStart], results: ResultReader | None = None) -> WorkflowRun:
    """Start a map step's child runs in the parent's transaction, as a run request is
    started (once per request id), then record their run ids on the parent. Children
    that ended as they started (or could not start) are applied here: they could not
    report to a parent that did not know their run id yet. A loop, not recursion, as
    each such end may start the next items."""
    while children:
        started: dict[str, str] = {}
        finished: list[dict[str, Any]] = []
        for child in children:
            branch = child.branch is not None
            try:
                run, _ = await start_run(uow, RunRequest(
                    org_id=parent.org_id, parameters=child.parameters,
                    workflow_key=parent.workflow_key if branch else child.workflow_key,
                    branch=(f"{parent.branch}{BRANCH_SEPARATOR}" if parent.branch else "") + child.branch
                    if child.branch is not None else None,
                    workflow_version=parent.workflow_version if branch else child.workflow_version,
                    definition_org_id=parent.definition_org_id if branch else None,
                    requested_by=parent.started_by or SERVICE_ACTOR, request_id=child.request_id,
                    parent_run_id=parent.id))
            except DomainError as exc:  # checked before anything of the child is written
                finished.append({"request_id": child.request_id, "run_id": "", "status": RunStatus.FAILED.value,
                                 "result": None, "reason": f"the child run could not start: {exc}"})
                continue
            started[child.request_id] = run.id
            if run.status in FINISHED:
                finished.append(_outcome_of(run))
        current = await store.get_run(uow.conn, parent.org_id, parent.id, for_update=True)
        if current is None:
            return parent
        parent = current
        def start(saga: Saga, s: dict[str, str] = started, f: list[dict[str, Any]] = finished) -> Transition:
            return saga.children_started(s, f)

        transition = await _advance(uow, results, definition, parent, start)
        children, transition.children = transition.children, []
        parent = await _apply(uow, parent, definition, transition, results=results)
    return parent


async def _control_child(uow: UnitOfWork, org_id: str, control: ChildToControl,
                         results: ResultReader | None = None) -> None:
    """The parent's cancel, pause or resume reaching one of its open children. A
    resume applies what the child recorded while paused, which may need a stored
    result's detail: it goes through `_advance` as the parent's own resume does."""
    child = await store.get_run(uow.conn, org_id, control.run_id, for_update=True)
    if child is None or child.status in FINISHED:
        return
    if control.action == "cancel":
        await _cancel_loaded(uow, child, control.actor, control.reason, compensate=control.compensate,
                             results=results)
        return
    wanted = (RunStatus.RUNNING, RunStatus.WAITING) if control.action == "pause" else (RunStatus.PAUSED,)
    if child.status not in wanted:
        return
    definition = await _parsed_definition(uow, child)
    if definition is None:
        return
    if control.action == "pause":
        transition = (await _saga_of(uow, definition, child)).pause(control.actor, control.reason)
    else:
        transition = await _advance(uow, results, definition, child, lambda saga: saga.resume(control.actor))
    await _apply(uow, child, definition, transition, results=results)


async def _report_to_parent(uow: UnitOfWork, child: WorkflowRun, results: ResultReader | None = None) -> None:
    """A child run has just ended: its parent's map step learns it in this same
    transaction, by the child's request id. Crash-safe without an event: the child's
    end and the parent's step either both commit or neither does."""
    parent = await store.get_run(uow.conn, child.org_id, child.parent_run_id or "", for_update=True)
    if parent is None:
        return
    step = (child.request_id or "").split(":")[1:2]
    items = ((parent.state.get("steps") or {}).get(step[0] if step else "") or {}).get("items") or []
    item = next((i for i in items if i.get("request_id") == child.request_id), None)
    if item is not None and item.get("run_id") is None:
        return  # still being started in this transaction: `_start_children` applies it
    message = f"child run {child.id} {child.status.value}"
    if parent.status in FINISHED:
        _log(uow, RunLogEntry(parent.id, parent.org_id, uow.clock.now(), SERVICE_ACTOR,
                                                     f"{message} - ignored: run is {parent.status.value}"))
        return
    definition = await _parsed_definition(uow, parent)
    if definition is None:
        return
    transition = await _advance(uow, results, definition, parent,
                                lambda saga: saga.child_finished(**_outcome_of(child)))
    if not transition.applied:
        _log(uow, RunLogEntry(parent.id, parent.org_id, uow.clock.now(), SERVICE_ACTOR,
                                                     f"{message} - ignored: the run no longer waits for it"))
    await _apply(uow, parent, definition, transition, results=results)
