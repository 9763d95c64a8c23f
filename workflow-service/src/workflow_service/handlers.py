"""One function per query or event: load, decide, save — all in the caller's unit
of work."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stayops_kit.auth import Caller
from stayops_kit.consumer import EventContext
from stayops_kit.outbox import UnitOfWork
from stayops_schemas.events.tasks import TaskCompleted, TaskFailed
from workflow_service import store
from workflow_service.domain import (
    RunLogEntry,
    RunNotFound,
    WorkflowRun,
    task_completed_entry,
    task_failed_entry,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunWithLog:
    run: WorkflowRun
    log: list[RunLogEntry]


async def get_run(uow: UnitOfWork, caller: Caller, run_id: str) -> RunWithLog:
    run = await store.get_run(uow.conn, caller.org_id, run_id)
    if run is None:
        raise RunNotFound(run_id)
    return RunWithLog(run, await store.run_log_of(uow.conn, caller.org_id, run_id))


async def _run_of(ctx: EventContext, org_id: str, run_id: str | None) -> WorkflowRun | None:
    """The run a task event names, if it is one of this org's runs. Tasks outside any
    run, and runs of another org, are not this service's business."""
    if run_id is None:
        return None
    # Locked so that log lines and the saga's own writes to one run are serialised.
    run = await store.get_run(ctx.uow.conn, org_id, run_id, for_update=True)
    if run is None:
        log.debug("%s names run %s, which org %s does not have", ctx.envelope.type, run_id, org_id)
    return run


async def task_completed(ctx: EventContext, event: TaskCompleted) -> None:
    run = await _run_of(ctx, event.org_id, event.workflow_run_id)
    if run is not None:
        await store.append_log(ctx.uow.conn, task_completed_entry(run, event, ctx.envelope.time))


async def task_failed(ctx: EventContext, event: TaskFailed) -> None:
    run = await _run_of(ctx, event.org_id, event.workflow_run_id)
    if run is not None:
        await store.append_log(ctx.uow.conn, task_failed_entry(run, event, ctx.envelope.time))
