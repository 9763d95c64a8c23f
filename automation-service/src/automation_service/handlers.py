"""One function per query or event: load, decide, save — all in the caller's unit
of work."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from automation_service import store
from automation_service.domain import Automation, AutomationNotFound, Execution, queued_task
from stayops_kit.auth import Caller
from stayops_kit.consumer import EventContext
from stayops_kit.outbox import UnitOfWork
from stayops_schemas.events.tasks import TaskAssigned

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutomationWithExecutions:
    automation: Automation
    recent_executions: list[Execution]


async def get_automation(uow: UnitOfWork, caller: Caller, automation_id: str) -> AutomationWithExecutions:
    automation = await store.get_automation(uow.conn, caller.org_id, automation_id)
    if automation is None:
        raise AutomationNotFound(automation_id)
    recent = await store.recent_executions(uow.conn, caller.org_id, automation_id)
    return AutomationWithExecutions(automation, recent)


async def task_assigned(ctx: EventContext, event: TaskAssigned) -> None:
    """Queue an `automated` task for the action registry; other tasks are done by
    people and AI agents."""
    task = queued_task(event, ctx.uow.clock.now())
    if task is None:
        log.debug("task %s is %s work, not automation's", event.task_id, event.task_type.value)
        return
    if not await store.enqueue_task(ctx.uow.conn, task):
        log.debug("task %s of org %s is already queued", task.task_id, task.org_id)
