"""One function per command, query or event: load, decide, save, announce — all in
the caller's unit of work."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from automation_service import reactions, store
from automation_service.actions import ActionRegistry
from automation_service.domain import (
    OPEN_RUN_STATUSES,
    ActionFinish,
    AutomatedAction,
    Automation,
    AutomationNotFound,
    AwaitedRun,
    ConditionCheck,
    Execution,
    ExecutionStats,
    ExecutionTrigger,
    FiringDecision,
    InvalidAction,
    Notification,
    OverlapPolicy,
    RecordedOutcome,
    RunStatus,
    StartWorkflow,
    automated_action,
    check_trigger,
    condition_fires,
    missed_beyond_window,
    occupancy_metrics,
    overlap_decision,
    runs_verdict,
    with_run_status,
)
from stayops_kit import expressions
from stayops_kit.auth import Caller
from stayops_kit.consumer import EventContext
from stayops_kit.errors import Conflict
from stayops_kit.expressions import ExpressionError
from stayops_kit.outbox import UnitOfWork
from stayops_kit.policies import store_policy
from stayops_schemas.canonical import CanonicalEvent, canonical_of
from stayops_schemas.events.automations import (
    ActionFinished,
    AutomationExecuted,
    AutomationTriggered,
    AutomationType,
    ExecutionOutcome,
)
from stayops_schemas.events.base import Payload
from stayops_schemas.events.org import OrgPolicyUpdated
from stayops_schemas.events.sync import (
    ListingSynced,
    PriceUpdated,
    PriceUpdateFailed,
    ReservationCancelled,
    ReservationChanged,
    ReservationCreated,
    ReservationStatus,
    SyncCompleted,
    SyncFailed,
)
from stayops_schemas.events.tasks import (
    TaskAssigned,
    TaskCancelRequested,
    TaskRequested,
    TaskRescheduleRequested,
)
from stayops_schemas.events.workflows import (
    WorkflowRunCancelled,
    WorkflowRunCompleted,
    WorkflowRunFailed,
    WorkflowRunRequested,
    WorkflowRunStarted,
    WorkflowRunWaiting,
)

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
    filter: str | None = None
    dedupe_key: str | None = None
    debounce_s: int = 0
    debounce_key: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catch_up_s: int | None = None


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
        action=new.action, filter=new.filter, dedupe_key=new.dedupe_key, debounce_s=new.debounce_s,
        debounce_key=new.debounce_key, actions=new.actions, overlap=new.overlap, catch_up_s=new.catch_up_s,
    )
    if automation.kind is AutomationType.EVENT:
        actions = new.actions or ([new.action] if new.action else [])
        reactions.check_event_automation(new.event_type or "", new.filter, new.dedupe_key,
                                         new.debounce_key, actions)
        automation = replace(automation, actions=actions, action={})
    elif automation.kind is AutomationType.CONDITIONAL:
        actions = new.actions or ([new.action] if new.action else [])
        reactions.check_event_automation("condition.held", None, None, None, actions)
        automation = replace(automation, actions=actions, action={})
    else:
        StartWorkflow.of(automation)  # refuse an action the automation could not fire
    automation = replace(automation, next_fire_at=automation.first_fire_after(await store.database_now(uow.conn)))
    await store.insert_automation(uow.conn, automation)
    if automation.next_fire_at is not None:
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
    if resumed.next_fire_at is not None:
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
        if automation.kind is AutomationType.CONDITIONAL:
            await _check_condition(uow, automation, now)
            continue
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


async def _check_condition(uow: UnitOfWork, automation: Automation, now: datetime) -> None:
    """Evaluate a conditional automation over the read model; fire its actions once
    per transition from false to true, then check again `every_s` later."""
    check = ConditionCheck.of(automation.condition or {})
    today = now.astimezone(reactions.zone_of(automation.timezone)).date()
    booked, listings = await store.booked_nights(uow.conn, automation.org_id, today, check.window_days)
    metrics = occupancy_metrics(booked, listings, check.window_days)
    try:
        holds = bool(expressions.evaluate(check.expression, metrics))
    except ExpressionError as exc:
        log.warning("automation %s: condition %r cannot be evaluated (%s); it counts as false",
                    automation.id, check.expression, exc)
        holds = False
    if condition_fires(automation.condition_held, holds):
        event = CanonicalEvent(id=uow.ids(), type="condition.held", source="/automation-service",
                               org_id=automation.org_id, time=now, data=metrics)
        await _fire_on_event(uow, replace(automation, filter=None, dedupe_key=None, debounce_s=0), event,
                             reactions.names_of(event, None), trigger=ExecutionTrigger.CONDITION)
    await store.update_automation(uow.conn, replace(
        automation, condition_held=holds, next_fire_at=now + timedelta(seconds=check.every_s)))


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
    run_status: RunStatus | None = None
    detail: dict[str, Any]
    if trigger is ExecutionTrigger.SCHEDULE and missed_beyond_window(scheduled_for, started_at,
                                                                     automation.catch_up_s):
        detail = {"outcome": "skipped", "detail": f"missed by more than the catch-up window "
                                                  f"({automation.catch_up_s}s)"}
    else:
        try:
            start = StartWorkflow.of(automation)
            open_runs, buffered = await store.runs_in_the_way(uow.conn, org, automation.id)
            decision = (FiringDecision.FIRE if trigger is ExecutionTrigger.MANUAL
                        else overlap_decision(automation.overlap, open_runs=open_runs, buffered=buffered))
            if decision is FiringDecision.FIRE:
                detail = await _request_run(uow, automation, execution, start)
                run_status = RunStatus.REQUESTED
            elif decision is FiringDecision.BUFFER:
                await store.set_run(uow.conn, replace(execution, run_status=RunStatus.BUFFERED))
                log.info("automation %s: %s buffered until the previous run ends", automation.id,
                         scheduled_for.isoformat())
                return replace(execution, run_status=RunStatus.BUFFERED)
            else:
                detail = {"outcome": "skipped", "detail": f"the previous run has not ended "
                                                          f"(overlap: {automation.overlap.value})"}
        except (InvalidAction, ExpressionError) as exc:
            error, detail = str(exc), {"outcome": "failed", "detail": str(exc)}
    return await _conclude(uow, replace(execution, run_status=run_status),
                           [{"action": "start_workflow", **detail}], error)


async def _request_run(uow: UnitOfWork, automation: Automation, execution: Execution,
                       start: StartWorkflow) -> dict[str, Any]:
    """Ask for the run, its parameters resolved now: `${org.active_listings}` is the
    org's active listings at this firing, so a listing added since is included."""
    org = automation.org_id
    names = {"org": {"id": org, "active_listings": await store.active_listing_ids(uow.conn, org)},
             "scheduled_for": execution.scheduled_for.isoformat() if execution.scheduled_for else None,
             "automation": {"id": automation.id, "name": automation.name}}
    parameters = expressions.render(start.parameters, names)
    await uow.announce(
        "stayops.workflow.run.requested",
        WorkflowRunRequested(request_id=execution.id, org_id=org, workflow_key=start.workflow_key,
                             workflow_version=start.workflow_version, parameters=parameters,
                             requested_by=automation.id),
        org_id=org, key=execution.id, correlation_id=execution.id,
    )
    return {"outcome": "requested", "request_id": execution.id, "workflow_key": start.workflow_key,
            "workflow_version": start.workflow_version}


async def _conclude(uow: UnitOfWork, execution: Execution, outcomes: list[dict[str, Any]],
                    error: str | None) -> Execution:
    """Finish the execution, unless it started workflow runs and nothing has failed
    yet: then it waits for them and succeeds or fails when they end (`run_reported`),
    so its outcome and the automation's metrics say what the runs did, not that a
    request was sent."""
    requested = [o["request_id"] for o in outcomes
                 if o.get("action") == "start_workflow" and o.get("outcome") == "requested"]
    for request_id in requested:
        await store.await_run(uow.conn, AwaitedRun(org_id=execution.org_id, request_id=request_id,
                                                   execution_id=execution.id))
    if requested and error is None:
        execution = replace(execution, action_outcomes=outcomes)
        await store.finish_execution(uow.conn, execution)  # still running: no finish time, no outcome
        return execution
    return await _finish_execution(uow, execution, outcomes, error)


async def _finish_execution(uow: UnitOfWork, execution: Execution, outcomes: list[dict[str, Any]],
                            error: str | None) -> Execution:
    outcome = RecordedOutcome.SUCCESS if error is None else RecordedOutcome.FAILURE
    execution = replace(execution, finished_at=await store.database_clock(uow.conn), outcome=outcome,
                        error=error, action_outcomes=outcomes)
    await store.finish_execution(uow.conn, execution)
    await uow.announce(
        "stayops.automation.executed",
        AutomationExecuted(automation_id=execution.automation_id, execution_id=execution.id,
                           org_id=execution.org_id, outcome=ExecutionOutcome(outcome.value),
                           duration_ms=execution.duration_ms or 0,
                           error=error),
        org_id=execution.org_id, key=execution.automation_id, correlation_id=execution.id,
    )
    return execution


# --- The runs firings asked for -------------------------------------------------------

_RUN_STATUS = {
    "stayops.workflow.run.started": RunStatus.RUNNING,
    "stayops.workflow.run.waiting": RunStatus.WAITING,
    "stayops.workflow.run.completed": RunStatus.COMPLETED,
    "stayops.workflow.run.failed": RunStatus.FAILED,
    "stayops.workflow.run.cancelled": RunStatus.CANCELLED,
}
RunEvent = WorkflowRunStarted | WorkflowRunWaiting | WorkflowRunCompleted | WorkflowRunFailed | WorkflowRunCancelled


async def run_reported(ctx: EventContext, event: RunEvent) -> None:
    """Follow the run a firing asked for (the overlap policy needs to know whether
    it ended); when it ends, fire the firing buffered behind it, and finish the
    execution that waits on it. Event automations then react to the run event like
    to any other."""
    status = _RUN_STATUS[ctx.envelope.type]
    run_id = str(event.run_id)
    request_id = getattr(event, "request_id", None)
    execution = (await store.execution_by_id(ctx.uow.conn, ctx.org_id, request_id) if request_id
                 else await store.execution_of_run(ctx.uow.conn, ctx.org_id, run_id))
    if execution is not None and execution.run_status not in (None, RunStatus.BUFFERED):
        await store.set_run(ctx.uow.conn, replace(execution, run_id=run_id, run_status=status))
        if status not in OPEN_RUN_STATUSES:
            await _release_buffered(ctx.uow, execution)
    await _follow_awaited_run(ctx.uow, ctx.org_id, _run_report(event, status), request_id)
    await event_received(ctx, event)


def _run_report(event: RunEvent, status: RunStatus) -> tuple[str, RunStatus, str | None]:
    """(run id, status, why it did not complete) of a run event."""
    reason: str | None = None
    if isinstance(event, WorkflowRunFailed):
        reason = event.reason
    elif isinstance(event, WorkflowRunCancelled):
        reason = f"cancelled by {event.cancelled_by}" + (f": {event.reason}" if event.reason else "")
    return str(event.run_id), status, reason


async def _follow_awaited_run(uow: UnitOfWork, org_id: str, reported: tuple[str, RunStatus, str | None],
                              request_id: str | None) -> None:
    """Record how a run an execution waits on stands, in its action outcome; once
    every run of the execution has ended, the execution succeeds (all completed) or
    fails (one failed or was cancelled)."""
    run_id, status, reason = reported
    run = await store.awaited_run(uow.conn, org_id, request_id=request_id, run_id=run_id)
    if run is None or run.ended:
        return
    await _settle_awaited_run(uow, replace(run, run_id=run_id, status=status, reason=reason))


async def fail_unanswered_runs(uow: UnitOfWork, *, limit: int = FIRE_BATCH) -> int:
    """Fail the runs asked for more than a day ago that no run ever answered
    (workflow-service refused or lost the request), so their executions end instead
    of waiting for ever. Returns how many."""
    unanswered = await store.unanswered_runs(uow.conn, limit=limit)
    for run in unanswered:
        await _settle_awaited_run(uow, replace(run, status=RunStatus.FAILED, reason=(
            f"no run started for the request within {store.STALE_REQUEST}: workflow-service refused or "
            "lost it (see its dead letters)")))
    return len(unanswered)


async def _settle_awaited_run(uow: UnitOfWork, run: AwaitedRun) -> None:
    """Save how `run` stands and write it into its execution's action outcome; the
    last of the execution's runs to end finishes the execution."""
    org_id = run.org_id
    await store.update_awaited_run(uow.conn, run)
    execution = await store.execution_by_id(uow.conn, org_id, run.execution_id)
    if execution is None:
        return
    outcomes = with_run_status(execution.action_outcomes, run)
    runs = await store.runs_of_execution(uow.conn, org_id, execution.id)
    if execution.outcome is not None or not all(r.ended for r in runs):
        await store.finish_execution(uow.conn, replace(execution, action_outcomes=outcomes))
        return
    await _finish_execution(uow, execution, outcomes, runs_verdict(runs))


async def _release_buffered(uow: UnitOfWork, ended: Execution) -> None:
    automation = await store.get_automation(uow.conn, ended.org_id, ended.automation_id, for_update=True)
    if automation is None:
        return
    buffered = await store.buffered_execution(uow.conn, ended.org_id, automation.id)
    if buffered is None or (await store.runs_in_the_way(uow.conn, automation.org_id, automation.id))[0]:
        return
    error: str | None = None
    try:
        detail = await _request_run(uow, automation, buffered, StartWorkflow.of(automation))
    except (InvalidAction, ExpressionError) as exc:
        error, detail = str(exc), {"outcome": "failed", "detail": str(exc)}
    await _conclude(uow, replace(buffered, run_status=None if error else RunStatus.REQUESTED),
                    [{"action": "start_workflow", "buffered_behind": ended.id, **detail}], error)


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
    action, finish = await runner.start(ctx.uow, action, ctx.results)
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


# --- Event automations -------------------------------------------------------------


async def listing_synced(ctx: EventContext, event: ListingSynced) -> None:
    """Remember the listing (its time zone plans local times), then react to it."""
    platform = ctx.envelope.type.split(".", 1)[0]
    await store.store_listing(ctx.uow.conn, event.org_id, {
        "listing_id": event.listing_id, "platform": platform, "title": event.title, "city": event.city,
        "timezone": event.timezone, "active": event.active, "synced_at": event.synced_at,
        "segment": event.segment, "tags": event.tags,
    })
    await event_received(ctx, event)


async def reservation_reported(ctx: EventContext, event: ReservationCreated | ReservationChanged
                               | ReservationCancelled) -> None:
    """Keep the reservation (conditions read occupancy from them), then react to it."""
    await store.store_reservation(ctx.uow.conn, event.org_id, {
        "reservation_id": event.reservation_id, "listing_id": event.listing_id, "check_in": event.check_in,
        "check_out": event.check_out, "as_of": ctx.envelope.time,
        "cancelled": isinstance(event, ReservationCancelled) or event.status is ReservationStatus.CANCELLED,
    })
    await event_received(ctx, event)


async def task_outcome(ctx: EventContext, payload: Payload) -> None:
    """A task's outcome: a withdrawn task's pending action is cancelled (an answer
    that arrives for it later is ignored, and nothing more is done for it); then the
    event automations that react to the outcome fire."""
    if ctx.envelope.type == "stayops.task.cancelled":
        task_id = str(getattr(payload, "task_id", ""))
        action = await store.get_action(ctx.uow.conn, ctx.org_id, task_id, for_update=True)
        if action is not None and action.is_pending:
            reason = str(getattr(payload, "reason", "") or "the task was withdrawn")
            await store.update_action(ctx.uow.conn, action.cancelled(reason, ctx.uow.clock.now()))
            log.info("task %s was cancelled: its pending %s action is dropped", task_id, action.action)
    await event_received(ctx, payload)


async def event_received(ctx: EventContext, _payload: Payload) -> None:
    """Fire every active event automation of the event's org whose `on:` matches
    it and whose filter holds — each once per dedupe key, in this transaction."""
    event = canonical_of(ctx.envelope)
    # Read once per transaction: a consumer batch's events of one org share the read.
    active = await ctx.uow.reads.once(("active_event_automations", event.org_id),
                                      lambda: store.active_event_automations(ctx.uow.conn, event.org_id))
    candidates = [a for a in active if a.event_type is not None and reactions.matches(a.event_type, event)]
    if not candidates:
        return
    listing_id = event.data.get("listing_id")
    listing = (await store.listing_of(ctx.uow.conn, event.org_id, str(listing_id))
               if listing_id else None)
    names = reactions.names_of(event, listing)
    for automation in candidates:
        await _fire_on_event(ctx.uow, automation, event, names)


async def _fire_on_event(uow: UnitOfWork, automation: Automation, event: CanonicalEvent,
                         names: dict[str, Any], *, trigger: ExecutionTrigger = ExecutionTrigger.EVENT) -> None:
    try:
        passed = reactions.filter_value(automation.filter, names)
        dedupe_key = reactions.key_of(automation.dedupe_key, reactions.DEFAULT_DEDUPE_KEY, names, event.id)
        debounce_key = (reactions.key_of(automation.debounce_key, reactions.DEFAULT_DEBOUNCE_KEY, names,
                                         event.type) if automation.debounce_s else None)
    except ExpressionError as exc:
        # The automation cannot read this event: say so in a failed execution rather
        # than dead-letter an event every other automation may still want.
        passed, dedupe_key, debounce_key = None, event.id, None
        failure: str | None = f"filter or key cannot be evaluated: {exc}"
    else:
        failure = None
    now = await store.database_now(uow.conn)
    if failure is None and not passed:
        await _record_skipped(uow, automation, event, trigger, now, passed,
                              f"the filter {automation.filter!r} is {_as_json(passed)} for this event")
        return
    if debounce_key is not None:
        await store.lock_debounce(uow.conn, automation.id, debounce_key)
        since = now - timedelta(seconds=automation.debounce_s)
        if await store.fired_since(uow.conn, automation.org_id, automation.id, debounce_key, since):
            await _record_skipped(uow, automation, event, trigger, now, passed,
                                  f"debounced: it fired for the key {debounce_key!r} less than "
                                  f"{automation.debounce_s}s earlier")
            return
    execution = Execution(
        id=uow.ids(), automation_id=automation.id, org_id=automation.org_id, started_at=now,
        trigger=trigger, event_id=event.id, event_type=event.platform_type or event.type,
        dedupe_key=dedupe_key, debounce_key=debounce_key,
        filter_value=_filter_record(passed),
    )
    if not await store.insert_execution(uow.conn, execution):
        log.info("automation %s already fired for key %r: %s %s changes nothing", automation.id,
                 dedupe_key, event.type, event.id)
        return
    org, correlation = automation.org_id, execution.id
    await uow.announce(
        "stayops.automation.triggered",
        AutomationTriggered(automation_id=automation.id, execution_id=execution.id, org_id=org,
                            automation_type=automation.kind, triggered_at=now, trigger_event_id=event.id,
                            trigger_event_type=execution.event_type),
        org_id=org, key=automation.id, correlation_id=correlation,
    )
    outcomes: list[dict[str, Any]] = []
    if failure is None:
        zone_name = (names.get("listing") or {}).get("timezone") or automation.timezone
        plans = reactions.plan_actions(reactions.parse_actions(automation.actions), names,
                                       reactions.zone_of(zone_name))
        for plan in plans:
            outcomes.append(await _carry_out(uow, automation, execution, plan))
        failed = [o for o in outcomes if o["outcome"] == "failed"]
        if failed:
            failure = "; ".join(f"{o['action']}: {o['detail']}" for o in failed)
    await _conclude(uow, execution, outcomes, failure)


async def _record_skipped(uow: UnitOfWork, automation: Automation, event: CanonicalEvent,
                          trigger: ExecutionTrigger, now: datetime, passed: Any, reason: str) -> None:
    """Record that the automation matched the event but did not fire, and why. It
    claims neither the dedupe nor the debounce key — a later event with the same key
    may still fire — and announces nothing: nothing happened."""
    log.debug("automation %s skipped %s %s: %s", automation.id, event.type, event.id, reason)
    await store.insert_execution(uow.conn, Execution(
        id=uow.ids(), automation_id=automation.id, org_id=automation.org_id, started_at=now, finished_at=now,
        outcome=RecordedOutcome.SKIPPED, reason=reason, trigger=trigger, event_id=event.id,
        event_type=event.platform_type or event.type, filter_value=_filter_record(passed)))


def _filter_record(passed: Any) -> Any:
    """What a filter evaluated to, as the execution keeps it (JSON scalars as they are)."""
    return passed if isinstance(passed, bool | int | float | str) or passed is None else str(passed)


def _as_json(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool | int | float | str) or value is None else repr(value)


def _requested_by(automation: Automation) -> str:
    return f"automation:{automation.id}"


async def _carry_out(uow: UnitOfWork, automation: Automation, execution: Execution,
                     plan: reactions.Plan) -> dict[str, Any]:
    """Do one planned action; returns what it did, for the execution's record."""
    org = automation.org_id
    if isinstance(plan, reactions.NotPlanned):
        return {"action": plan.action, "outcome": "failed" if plan.failed else "skipped", "detail": plan.reason}
    if isinstance(plan, reactions.TaskPlan):
        return await _plan_task(uow, automation, execution, plan)
    if isinstance(plan, reactions.CancelPlan):
        cancelled = []
        for link in await store.open_task_links(uow.conn, org, plan.link, plan.keys):
            await uow.announce(
                "stayops.task.cancel.requested",
                TaskCancelRequested(request_id=link.request_id, org_id=org, reason=plan.reason,
                                    requested_by=_requested_by(automation)),
                org_id=org, key=link.request_id, correlation_id=execution.id,
            )
            await store.save_task_link(uow.conn, replace(link, status="cancelled", updated_at=execution.started_at))
            cancelled.append(link.key)
        return {"action": "cancel_tasks", "outcome": "cancelled" if cancelled else "unchanged",
                "link": plan.link, "keys": cancelled}
    if isinstance(plan, reactions.WorkflowPlan):
        request_id = uow.ids()
        await uow.announce(
            "stayops.workflow.run.requested",
            WorkflowRunRequested(request_id=request_id, org_id=org, workflow_key=plan.workflow_key,
                                 parameters=plan.parameters, requested_by=automation.id),
            org_id=org, key=request_id, correlation_id=execution.id,
        )
        return {"action": "start_workflow", "outcome": "requested", "request_id": request_id,
                "workflow_key": plan.workflow_key}
    notification = Notification(id=uow.ids(), org_id=org, user_id=plan.user_id, subject=plan.subject,
                                body=plan.body, created_at=uow.clock.now(), role_id=plan.role_id)
    await store.insert_notification(uow.conn, notification)
    return {"action": "notify", "outcome": "notified", "notification_id": notification.id,
            "user_id": plan.user_id, "role_id": plan.role_id}


async def _plan_task(uow: UnitOfWork, automation: Automation, execution: Execution,
                     plan: reactions.TaskPlan) -> dict[str, Any]:
    """The task linked to (link, key): asked for the first time, moved when its due
    time changed, left alone otherwise — so a re-sent or changed event never makes
    a second one."""
    org, now = automation.org_id, execution.started_at
    described = {"action": "create_task", "key": plan.key, "link": plan.link,
                 "due_at": plan.due_at.isoformat() if plan.due_at else None}
    existing = await store.get_task_link(uow.conn, org, plan.link, plan.key)
    if existing is not None:
        described["request_id"] = existing.request_id
        if not existing.is_open:
            return {**described, "outcome": "unchanged", "detail": "cancelled earlier"}
        if plan.due_at is None or existing.due_at == plan.due_at:
            return {**described, "outcome": "unchanged"}
        await uow.announce(
            "stayops.task.reschedule.requested",
            TaskRescheduleRequested(request_id=existing.request_id, org_id=org, due_at=plan.due_at,
                                    reason=f"{execution.event_type} {execution.event_id}",
                                    requested_by=_requested_by(automation)),
            org_id=org, key=existing.request_id, correlation_id=execution.id,
        )
        await store.save_task_link(uow.conn, replace(existing, due_at=plan.due_at, updated_at=now))
        return {**described, "outcome": "rescheduled",
                "previous_due_at": existing.due_at.isoformat() if existing.due_at else None}
    request_id = uow.ids()
    await uow.announce(
        "stayops.task.requested",
        TaskRequested(request_id=request_id, org_id=org, title=plan.title, task_type=plan.task_type,
                      priority=plan.priority, description=plan.description, role_id=plan.role_id,
                      department_id=plan.department_id, assigned_to=plan.assigned_to, due_at=plan.due_at,
                      data={**plan.data, "automation_id": automation.id, "link": plan.link,
                            "link_key": plan.key},
                      requested_by=_requested_by(automation)),
        org_id=org, key=request_id, correlation_id=execution.id,
    )
    await store.save_task_link(uow.conn, store.TaskLink(
        org_id=org, link=plan.link, key=plan.key, automation_id=automation.id, execution_id=execution.id,
        request_id=request_id, due_at=plan.due_at, status="open", created_at=now, updated_at=now,
    ))
    return {**described, "outcome": "requested", "request_id": request_id}


# --- Notifications -----------------------------------------------------------------


async def my_notifications(uow: UnitOfWork, caller: Caller) -> list[Notification]:
    """The caller's own notifications and those left for their role."""
    return await store.notifications_for(uow.conn, caller.org_id, caller.user_id, caller.role_id)


# --- Org policy ----------------------------------------------------------------------


async def policy_updated(ctx: EventContext, event: OrgPolicyUpdated) -> None:
    await store_policy(ctx.uow, event)
