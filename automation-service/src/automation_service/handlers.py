"""One function per command, query or event: load, decide, save, announce — all in
the caller's unit of work."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from automation_service import store
from automation_service.actions import ActionRegistry
from automation_service.domain import (
    ActionFinish,
    AutomatedAction,
    Automation,
    AutomationNotFound,
    Execution,
    ExecutionStats,
    ExecutionTrigger,
    InvalidAction,
    Notification,
    StartWorkflow,
    automated_action,
    check_trigger,
)
from stayops_kit.auth import Caller
from stayops_kit.consumer import EventContext
from stayops_kit.errors import Conflict
from stayops_kit.outbox import UnitOfWork
from stayops_kit.policies import store_policy
from stayops_schemas.events.automations import (
    ActionFinished,
    AutomationExecuted,
    AutomationTriggered,
    AutomationType,
    ExecutionOutcome,
)
from stayops_schemas.events.org import OrgPolicyUpdated
from stayops_schemas.events.sync import PriceUpdated, PriceUpdateFailed, SyncCompleted, SyncFailed
from stayops_schemas.events.tasks import TaskAssigned
from stayops_schemas.events.workflows import WorkflowRunRequested

log = logging.getLogger(__name__)

# Due automations fired per transaction; the scheduler comes back at once for more.
FIRE_BATCH = 50


# --- Automations -----------------------------------------------------------------


@dataclass(frozen=True)
class NewAutomation:
    name: str
    kind: AutomationType
    action: dict[str, Any]
    description: str | None = None
    cron: str | None = None
    timezone: str | None = None
    event_type: str | None = None
    condition: dict[str, Any] | None = None


@dataclass(frozen=True)
class AutomationWithExecutions:
    automation: Automation
    recent_executions: list[Execution]
    stats: ExecutionStats


async def create_automation(uow: UnitOfWork, caller: Caller, new: NewAutomation) -> Automation:
    check_trigger(new.kind, cron=new.cron, timezone=new.timezone, event_type=new.event_type,
                  condition=new.condition)
    at = uow.clock.now()
    automation = Automation(
        id=uow.ids(), org_id=caller.org_id, name=new.name, kind=new.kind, is_active=True,
        created_by=caller.user_id, created_at=at, updated_at=at, description=new.description,
        cron=new.cron, timezone=new.timezone, event_type=new.event_type, condition=new.condition,
        action=new.action,
    )
    StartWorkflow.of(automation)  # refuse an action the automation could not fire
    automation = replace(automation, next_fire_at=automation.first_fire_after(await store.database_now(uow.conn)))
    await store.insert_automation(uow.conn, automation)
    if automation.is_scheduled:
        await store.wake_schedulers(uow.conn)
    return automation


async def _load(uow: UnitOfWork, caller: Caller, automation_id: str, *, for_update: bool = False) -> Automation:
    automation = await store.get_automation(uow.conn, caller.org_id, automation_id, for_update=for_update)
    if automation is None:
        raise AutomationNotFound(automation_id)
    return automation


async def get_automation(uow: UnitOfWork, caller: Caller, automation_id: str) -> AutomationWithExecutions:
    automation = await _load(uow, caller, automation_id)
    recent = await store.recent_executions(uow.conn, caller.org_id, automation_id)
    stats = await store.execution_stats(uow.conn, caller.org_id, automation_id)
    return AutomationWithExecutions(automation, recent, stats)


async def list_executions(uow: UnitOfWork, caller: Caller, automation_id: str, *, limit: int) -> list[Execution]:
    await _load(uow, caller, automation_id)
    return await store.recent_executions(uow.conn, caller.org_id, automation_id, limit=limit)


async def pause_automation(uow: UnitOfWork, caller: Caller, automation_id: str) -> Automation:
    automation = await _load(uow, caller, automation_id, for_update=True)
    if not automation.is_active:
        return automation
    paused = automation.paused(uow.clock.now())
    await store.update_automation(uow.conn, paused)
    return paused


async def resume_automation(uow: UnitOfWork, caller: Caller, automation_id: str) -> Automation:
    automation = await _load(uow, caller, automation_id, for_update=True)
    if automation.is_active:
        return automation
    resumed = automation.resumed(uow.clock.now(), await store.database_now(uow.conn))
    await store.update_automation(uow.conn, resumed)
    if resumed.is_scheduled:
        await store.wake_schedulers(uow.conn)
    return resumed


async def run_automation_now(uow: UnitOfWork, caller: Caller, automation_id: str) -> Execution:
    """Fire the automation at once, paused or not; its schedule is unchanged."""
    automation = await _load(uow, caller, automation_id, for_update=True)
    now = await store.database_now(uow.conn)
    execution = await _fire(uow, automation, scheduled_for=now, trigger=ExecutionTrigger.MANUAL,
                            skipped_runs=0, started_at=now)
    if execution is None:
        raise Conflict(f"automation {automation_id} was already run at {now.isoformat()}; try again")
    return execution


async def fire_due_automations(uow: UnitOfWork, *, limit: int = FIRE_BATCH) -> int:
    """Fire every schedule due by the database clock that no other scheduler holds:
    the execution, the events and the next fire time commit together, so a time is
    fired once however many schedulers run and whenever one restarts. Returns how
    many automations were claimed."""
    now = await store.database_now(uow.conn)
    due = await store.claim_due_automations(uow.conn, limit=limit)
    for automation in due:
        firing = automation.due_firing(now)
        if firing is None:
            continue
        execution = await _fire(uow, automation, scheduled_for=firing.scheduled_for,
                                trigger=ExecutionTrigger.SCHEDULE, skipped_runs=firing.skipped_runs,
                                started_at=now)
        if execution is not None and firing.skipped_runs:
            log.info("automation %s fired once for %s, skipping %d older missed run(s)",
                     automation.id, firing.scheduled_for.isoformat(), firing.skipped_runs)
        await store.update_automation(uow.conn, replace(automation, next_fire_at=firing.next_fire_at))
    return len(due)


async def _fire(
    uow: UnitOfWork,
    automation: Automation,
    *,
    scheduled_for: datetime,
    trigger: ExecutionTrigger,
    skipped_runs: int,
    started_at: datetime,
) -> Execution | None:
    """Record an execution for `scheduled_for` and announce it: triggered, the run it
    requests, executed. None when that time was already fired."""
    execution = Execution(
        id=uow.ids(), automation_id=automation.id, org_id=automation.org_id, started_at=started_at,
        scheduled_for=scheduled_for, trigger=trigger, skipped_runs=skipped_runs,
    )
    if not await store.insert_execution(uow.conn, execution):
        return None
    org, key, correlation = automation.org_id, automation.id, execution.id
    await uow.announce(
        "stayops.automation.triggered",
        AutomationTriggered(automation_id=automation.id, execution_id=execution.id, org_id=org,
                            automation_type=automation.kind, triggered_at=started_at,
                            scheduled_for=scheduled_for),
        org_id=org, key=key, correlation_id=correlation,
    )
    error: str | None = None
    try:
        start = StartWorkflow.of(automation)
    except InvalidAction as exc:
        error = str(exc)
    else:
        await uow.announce(
            "stayops.workflow.run.requested",
            WorkflowRunRequested(request_id=execution.id, org_id=org, workflow_key=start.workflow_key,
                                 parameters=start.parameters, requested_by=automation.id),
            org_id=org, key=execution.id, correlation_id=correlation,
        )
    outcome = ExecutionOutcome.SUCCESS if error is None else ExecutionOutcome.FAILURE
    execution = replace(execution, finished_at=await store.database_clock(uow.conn), outcome=outcome,
                        error=error)
    await store.finish_execution(uow.conn, execution)
    await uow.announce(
        "stayops.automation.executed",
        AutomationExecuted(automation_id=automation.id, execution_id=execution.id, org_id=org,
                           outcome=outcome, duration_ms=execution.duration_ms or 0, error=error),
        org_id=org, key=key, correlation_id=correlation,
    )
    return execution


async def seconds_until_next_fire(uow: UnitOfWork) -> float | None:
    return await store.seconds_until_next_fire(uow.conn)


# --- Automated tasks ---------------------------------------------------------------


async def task_assigned(actions: ActionRegistry, ctx: EventContext, event: TaskAssigned) -> None:
    """Run the action of an `automated` task assigned to automation, once per task;
    other tasks are done by people and AI agents."""
    action = automated_action(event, ctx.uow.clock.now(), ctx.envelope.correlationid)
    if action is None:
        log.debug("task %s (%s, assigned to %s) is not automation's", event.task_id,
                  event.task_type.value, event.assigned_to)
        return
    if not await store.insert_action(ctx.uow.conn, action):
        log.debug("task %s of org %s is already being done", action.task_id, action.org_id)
        return
    if action.refusal is not None:
        await _finish(ctx.uow, action, ActionFinish({}, error=action.refusal))
        return
    runner = actions.get(action.action)
    if runner is None:
        known = ", ".join(sorted(actions))
        await _finish(ctx.uow, action, ActionFinish(
            {}, error=f"unknown action {action.action!r} in the task data; automation knows {known}"))
        return
    action, finish = await runner.start(ctx.uow, action)
    if finish is not None:
        await _finish(ctx.uow, action, finish)
    else:
        await store.update_action(ctx.uow.conn, action)


async def _pending_action(ctx: EventContext, request_id: str, name: str) -> AutomatedAction | None:
    """The pending action an answer is for, locked; None when the answer is for
    someone else's request or arrives again after the action finished."""
    action = await store.get_action(ctx.uow.conn, ctx.org_id, request_id, for_update=True)
    platform = ctx.envelope.type.split(".", 1)[0]
    if (action is None or action.action != name or not action.is_pending
            or action.data.get("platform") != platform):
        log.debug("%s for request %s: no pending %s action waits for it", ctx.envelope.type, request_id, name)
        return None
    return action


async def sync_answered(ctx: EventContext, event: SyncCompleted | SyncFailed) -> None:
    action = await _pending_action(ctx, event.request_id, "request_sync")
    if action is None:
        return
    if isinstance(event, SyncCompleted):
        finish = ActionFinish({"listing_ids": event.listing_ids, "counts": event.counts.model_dump()})
    else:
        finish = ActionFinish({"listing_ids": event.listing_ids}, error=f"sync failed: {event.reason}")
    await _finish(ctx.uow, action, finish)


async def price_answered(ctx: EventContext, event: PriceUpdated | PriceUpdateFailed) -> None:
    action = await _pending_action(ctx, event.request_id, "publish_prices")
    if action is None:
        return
    if event.listing_id not in action.awaiting:
        log.warning("price answer for listing %s, which request %s did not include",
                    event.listing_id, event.request_id)
        return
    failure = event.reason if isinstance(event, PriceUpdateFailed) else None
    action = action.price_answered(event.listing_id, failure)
    finish = action.prices_outcome()
    if finish is None:
        await store.update_action(ctx.uow.conn, action)
    else:
        await _finish(ctx.uow, action, finish)


async def _finish(uow: UnitOfWork, action: AutomatedAction, finish: ActionFinish) -> None:
    action = action.finished(finish, uow.clock.now())
    await store.update_action(uow.conn, action)
    await uow.announce(
        "stayops.automation.action.finished",
        ActionFinished(org_id=action.org_id, task_id=action.task_id, action=action.action or "unknown",
                       outcome=finish.outcome, result=finish.result, error=finish.error,
                       workflow_run_id=action.workflow_run_id, workflow_step=action.workflow_step),
        org_id=action.org_id, key=action.task_id, correlation_id=action.correlation_id,
    )


# --- Notifications -----------------------------------------------------------------


async def my_notifications(uow: UnitOfWork, caller: Caller) -> list[Notification]:
    """The caller's own notifications and those left for their role."""
    return await store.notifications_for(uow.conn, caller.org_id, caller.user_id, caller.role_id)


# --- Org policy ----------------------------------------------------------------------


async def policy_updated(ctx: EventContext, event: OrgPolicyUpdated) -> None:
    await store_policy(ctx.uow.conn, event)
