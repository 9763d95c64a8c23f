"""One function per command or event: load, decide, save, announce — all in the
caller's unit of work."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from stayops_kit import idempotency
from stayops_kit.auth import Caller
from stayops_kit.consumer import EventContext
from stayops_kit.errors import DomainError, InvalidRequest, PermanentError
from stayops_kit.outbox import UnitOfWork
from stayops_kit.permissions import MissingPermission, Permission
from stayops_kit.policies import policy_of, store_policy
from stayops_schemas.events.agents import AgentPaused, AgentResultProduced, AgentResumed, AgentUpdated
from stayops_schemas.events.automations import ActionFinished, ExecutionOutcome
from stayops_schemas.events.org import MemberJoined, MemberLeft, MemberUpdated, OrgPolicyUpdated, UserType
from stayops_schemas.events.tasks import (
    DecisionOutcome,
    Priority,
    ReassignMode,
    TaskAssigned,
    TaskBlocked,
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskCreated,
    TaskFailed,
    TaskReassignRequested,
    TaskRequested,
    TaskRescheduled,
    TaskRescheduleRequested,
    TaskStarted,
    TaskStatus,
    TaskType,
    TaskUnblocked,
)
from stayops_schemas.ownership import AUTOMATION_SERVICE, WORKFLOW_SERVICE
from task_service import projects, sla, store
from task_service.domain import (
    AUTOMATION,
    Actor,
    AgentStanding,
    Assignment,
    Blocked,
    Decision,
    DependencyCycle,
    DependencyNotFound,
    ParentTaskInvalid,
    ResultInvalid,
    SideEffectNeedsWorkflow,
    Task,
    TaskNotFound,
    actor_of,
    check_side_effects,
    choose_assignment,
    open_blockers,
    reassign_open_work,
    work_to_hand_back,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CreateTask:
    title: str
    task_type: TaskType
    priority: Priority = Priority.MEDIUM
    description: str | None = None
    department_id: str | None = None
    role_id: str | None = None
    assigned_to: str | None = None
    due_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    parent_task_id: str | None = None
    workflow_run_id: str | None = None
    workflow_step: str | None = None
    request_id: str | None = None
    labels: tuple[str, ...] = ()
    required: bool = True
    project_id: str | None = None
    milestone_id: str | None = None
    listing_id: str | None = None


async def create_task(uow: UnitOfWork, caller: Caller, command: CreateTask) -> Task:
    check_side_effects(command.task_type, command.data)
    return await _create(uow, caller.org_id, caller.user_id, command, by=_actor(caller, "created"))


async def task_requested(ctx: EventContext, event: TaskRequested) -> None:
    if ctx.envelope.source != WORKFLOW_SERVICE:
        try:
            check_side_effects(event.task_type, event.data)
        except SideEffectNeedsWorkflow as exc:
            raise PermanentError(f"{ctx.envelope.source} may not ask for this task: {exc}") from exc
    command = CreateTask(
        title=event.title,
        task_type=event.task_type,
        priority=event.priority,
        description=event.description,
        department_id=event.department_id,
        role_id=event.role_id,
        assigned_to=event.assigned_to,
        due_at=event.due_at,
        data=event.data,
        parent_task_id=event.parent_task_id,
        workflow_run_id=event.workflow_run_id,
        workflow_step=event.workflow_step,
        request_id=event.request_id,
    )
    await _create(ctx.uow, event.org_id, event.requested_by, command,
                  by=Actor(event.requested_by, _source_type(ctx), "created"))


async def _create(uow: UnitOfWork, org_id: str, created_by: str, command: CreateTask, *, by: Actor) -> Task:
    # A repeated request is answered by the task it made. The insert below decides a
    # clash by the unique index and writes nothing then, so the read first is needed
    # only where a check before the insert could refuse the repeat (its parent,
    # project or milestone gone since); most requests (a saga's) name none and skip it.
    if command.request_id is not None and (command.parent_task_id or command.project_id or command.milestone_id):
        existing = await store.find_by_request(uow.conn, org_id, command.request_id)
        if existing is not None:
            return existing
    if command.parent_task_id is not None:
        parent = await store.get_task(uow.conn, org_id, command.parent_task_id)
        if parent is None:
            raise ParentTaskInvalid(
                f"parent task {command.parent_task_id} does not exist in your organisation"
            )
    project_id, milestone_id = await projects.placement(uow, org_id, command.project_id, command.milestone_id)
    listing_id = command.listing_id
    if listing_id is None and isinstance(command.data.get("listing_id"), str):
        listing_id = command.data["listing_id"]
    now = uow.clock.now()
    task = Task(
        id=uow.ids(),
        project_id=project_id,
        milestone_id=milestone_id,
        listing_id=listing_id,
        org_id=org_id,
        title=command.title,
        task_type=command.task_type,
        status=TaskStatus.PENDING,
        priority=command.priority,
        created_by=created_by,
        created_at=now,
        updated_at=now,
        description=command.description,
        department_id=command.department_id,
        role_id=command.role_id,
        assigned_to=command.assigned_to,
        due_at=command.due_at,
        data=command.data,
        parent_task_id=command.parent_task_id,
        workflow_run_id=command.workflow_run_id,
        workflow_step=command.workflow_step,
        request_id=command.request_id,
        labels=tuple(dict.fromkeys(command.labels)),
        required=command.required,
    )
    assignment = await _choose_assignment(uow, task)
    if assignment is not None:
        task = task.assign(assignment)
    inserted = await store.insert_task(uow, task, by)
    if not inserted and command.request_id is not None:
        # The same request raced us and won: its task is the answer; announce nothing.
        winner = await store.find_by_request(uow.conn, org_id, command.request_id)
        if winner is None:
            raise RuntimeError(f"request {command.request_id} clashed, yet no task answers it")
        return winner
    await uow.announce("stayops.task.created", task_created(task), org_id=org_id, key=task.id)
    if assignment is not None:
        await uow.announce("stayops.task.assigned", task_assigned(task, assignment),
                           org_id=org_id, key=task.id)
    return task


async def _choose_assignment(uow: UnitOfWork, task: Task) -> Assignment | None:
    explicit_type = None
    if task.assigned_to is not None and task.assigned_to != AUTOMATION:
        explicit_type = await store.member_type(uow.conn, task.org_id, task.assigned_to)
    candidates = []
    if task.assigned_to is None and task.role_id is not None:
        candidates = await store.lock_role_candidates(uow.conn, task.org_id, task.role_id)
    return choose_assignment(
        skill=task.skill,
        task_type=task.task_type,
        assigned_to=task.assigned_to,
        role_id=task.role_id,
        department_id=task.department_id,
        requested_by=task.created_by,
        explicit_assignee_type=explicit_type,
        candidates=candidates,
    )


def task_created(task: Task) -> TaskCreated:
    return TaskCreated(
        task_id=task.id,
        org_id=task.org_id,
        title=task.title,
        task_type=task.task_type,
        status=task.status,
        priority=task.priority,
        description=task.description,
        department_id=task.department_id,
        role_id=task.role_id,
        assigned_to=task.assigned_to,
        due_at=task.due_at,
        data=task.data,
        parent_task_id=task.parent_task_id,
        workflow_run_id=task.workflow_run_id,
        workflow_step=task.workflow_step,
        created_by=task.created_by,
        request_id=task.request_id,
    )


def task_assigned(task: Task, assignment: Assignment) -> TaskAssigned:
    assignee_type = assignment.assignee_type
    return TaskAssigned(
        task_id=task.id,
        org_id=task.org_id,
        workflow_run_id=task.workflow_run_id,
        workflow_step=task.workflow_step,
        task_type=task.task_type,
        title=task.title,
        data=task.data,
        assigned_to=assignment.assigned_to,
        assignee_type=assignee_type,
        role_id=task.role_id,
        department_id=task.department_id,
        rule=assignment.rule,
        request_id=task.request_id,
        created_by=task.created_by,
    )


async def get_task(uow: UnitOfWork, caller: Caller, task_id: str) -> Task:
    task = await store.get_task(uow.conn, caller.org_id, task_id)
    if task is None:
        raise TaskNotFound(task_id)
    return task


async def _lock(uow: UnitOfWork, caller: Caller, task_id: str) -> Task:
    task = await store.get_task(uow.conn, caller.org_id, task_id, for_update=True)
    if task is None:
        raise TaskNotFound(task_id)
    return task


async def _lock_for(uow: UnitOfWork, caller: Caller, task_id: str) -> Task:
    """The task, locked for this transaction, if the caller is its assignee."""
    task = await _lock(uow, caller, task_id)
    task.check_actor(caller.user_id)
    return task


async def start_task(uow: UnitOfWork, caller: Caller, task_id: str) -> Task:
    """Its assignee starts it; a task waiting in a queue is claimed by the member of
    the queue who starts it, and that is announced as its assignment."""
    task = await _lock(uow, caller, task_id)
    await _check_unblocked(uow, task, "started")
    now = uow.clock.now()
    claim = task.claim(caller.user_id, UserType(caller.user_type.value), caller.role_id, caller.department_id)
    if claim is not None:
        task = replace(task.assign(claim), updated_at=now)
    task = task.start(now)
    task = await store.update_task(uow, task, _actor(caller, "claimed and started" if claim else "started"))
    if claim is not None:
        await uow.announce("stayops.task.assigned", task_assigned(task, claim), org_id=task.org_id, key=task.id,
                           correlation_id=_correlation(uow, task))
    await uow.announce("stayops.task.started", TaskStarted(**_ids(task), started_by=caller.user_id),
                       org_id=task.org_id, key=task.id, correlation_id=_correlation(uow, task))
    return task


async def complete_task(uow: UnitOfWork, caller: Caller, task_id: str, result: dict[str, Any]) -> Task:
    task = await _lock_for(uow, caller, task_id)
    task.check_subtasks_done(await store.subtasks_of(uow.conn, task.org_id, task.id))
    await _check_unblocked(uow, task, "completed")
    task = task.complete(result, caller.user_id, uow.clock.now())
    return await _save_completed(uow, task, by=_actor(caller, "completed"))


async def decide_task(uow: UnitOfWork, caller: Caller, task_id: str, decision: Decision) -> Task:
    task = await _lock(uow, caller, task_id)
    task.check_actor(caller.user_id, deciding=True)
    # Approving prices puts them live: the decider must also be allowed to publish prices.
    proposes_prices = bool(task.proposal) or task.proposal_ref is not None or task.batch is not None
    if proposes_prices and decision.outcome is DecisionOutcome.APPROVED and not caller.may(Permission.PRICES_PUBLISH):
        raise MissingPermission(
            Permission.PRICES_PUBLISH,
            f"approving task {task.id} publishes its prices, which needs the permission "
            f"{Permission.PRICES_PUBLISH.value!r} besides {Permission.DECISIONS_DECIDE.value!r}; "
            "your role does not grant it: ask an owner to decide, or to grant it to your role",
        )
    task.check_subtasks_done(await store.subtasks_of(uow.conn, task.org_id, task.id))
    await _check_unblocked(uow, task, "decided")
    policy = await policy_of(uow.conn, task.org_id)
    task = task.decide(decision, caller.user_id, uow.clock.now(), policy)
    return await _save_completed(uow, task, by=_actor(caller, f"decided ({decision.outcome.value})"),
                                 decision=decision)


async def fail_task(uow: UnitOfWork, caller: Caller, task_id: str, reason: str) -> Task:
    task = (await _lock_for(uow, caller, task_id)).fail(reason, caller.user_id, uow.clock.now())
    return await _save_failed(uow, task, reason, by=_actor(caller, "failed"))


async def block_task(uow: UnitOfWork, caller: Caller, task_id: str, reason: str) -> Task:
    task = (await _lock_for(uow, caller, task_id)).block(reason, uow.clock.now())
    task = await store.update_task(uow, task, _actor(caller, "blocked"))
    await uow.announce("stayops.task.blocked",
                       TaskBlocked(**_ids(task), reason=reason, blocked_by=caller.user_id),
                       org_id=task.org_id, key=task.id, correlation_id=_correlation(uow, task))
    return task


async def agent_result_produced(ctx: EventContext, event: AgentResultProduced) -> None:
    task = await _lock_reported(ctx, event.task_id)
    if task.assigned_to != event.agent_user_id:
        log.info("ignoring result of agent %s for task %s assigned to %s",
                 event.agent_user_id, task.id, task.assigned_to)
        return
    if event.failed:
        # The agent could not do it: the task fails with the agent's reason, visible
        # to the people of its role, instead of staying open as if work went on.
        if not task.can_become(TaskStatus.FAILED):
            log.info("ignoring failure for task %s: it is %s", task.id, task.status.value)
            return
        reason = event.error or event.summary
        failed = task.fail(reason, event.agent_user_id, ctx.uow.clock.now())
        await _save_failed(ctx.uow, failed, reason, by=Actor(event.agent_user_id, "ai_agent", "failed"), before=task)
        return
    if not task.can_become(TaskStatus.COMPLETED):
        log.info("ignoring result for task %s: it is %s", task.id, task.status.value)
        return
    await _complete_reported(ctx.uow, task, event.result, by=Actor(event.agent_user_id, "ai_agent", "completed"))


async def action_finished(ctx: EventContext, event: ActionFinished) -> None:
    task = await _lock_reported(ctx, event.task_id)
    if task.assigned_to != AUTOMATION:
        log.info("ignoring action %s for task %s assigned to %s", event.action, task.id, task.assigned_to)
        return
    now = ctx.uow.clock.now()
    if event.outcome is ExecutionOutcome.SUCCESS:
        if not task.can_become(TaskStatus.COMPLETED):
            log.info("ignoring finished action for task %s: it is %s", task.id, task.status.value)
            return
        await _complete_reported(ctx.uow, task, event.result, by=Actor(AUTOMATION, "automation", "completed"))
    else:
        if not task.can_become(TaskStatus.FAILED):
            log.info("ignoring failed action for task %s: it is %s", task.id, task.status.value)
            return
        reason = event.error or f"action {event.action} failed"
        await _save_failed(ctx.uow, task.fail(reason, AUTOMATION, now, event.result), reason,
                           by=Actor(AUTOMATION, "automation", "failed"), before=task)


async def _complete_reported(uow: UnitOfWork, task: Task, result: dict[str, Any], *, by: Actor) -> None:
    """Complete a task from its assignee's report; a result that does not fit the
    task's skill fails the task instead, saying why (a saga then compensates)."""
    now = uow.clock.now()
    try:
        done = task.complete(result, by.id, now)
    except ResultInvalid as exc:
        reason = str(exc)
        await _save_failed(uow, task.fail(reason, by.id, now), reason, by=replace(by, action="failed"), before=task)
        return
    await _save_completed(uow, done, by=by, before=task)


async def policy_updated(ctx: EventContext, event: OrgPolicyUpdated) -> None:
    await store_policy(ctx.uow, event)


async def _requested_task(ctx: EventContext, request_id: str) -> Task | None:
    """The task a request created, locked; None (logged) when the request never made
    one (task-service refused it), so a withdrawal has nothing to withdraw."""
    found = await store.find_by_request(ctx.uow.conn, ctx.org_id, request_id)
    task = None if found is None else await store.get_task(ctx.uow.conn, ctx.org_id, found.id, for_update=True)
    if task is None:
        log.info("%s for request %s: no task answers that request", ctx.envelope.type, request_id)
    return task


async def task_cancel_requested(ctx: EventContext, event: TaskCancelRequested) -> None:
    """The requester withdraws its task; a task already done or cancelled stays as it is."""
    task = await _requested_task(ctx, event.request_id)
    if task is None or not task.can_become(TaskStatus.CANCELLED):
        return
    task = task.cancel(event.reason, ctx.uow.clock.now())
    by = Actor(event.requested_by, _source_type(ctx), "cancelled")
    await store.update_task(ctx.uow, task, by)
    await ctx.uow.announce("stayops.task.cancelled",
                           TaskCancelled(**_ids(task), reason=event.reason, cancelled_by=event.requested_by),
                           org_id=task.org_id, key=task.id)
    await _release_dependents(ctx.uow, task, by)


async def task_reschedule_requested(ctx: EventContext, event: TaskRescheduleRequested) -> None:
    """The requester moves its open task's due time."""
    task = await _requested_task(ctx, event.request_id)
    if task is None or not task.is_open or task.due_at == event.due_at:
        return
    previous = task.due_at
    task = task.rescheduled(event.due_at, ctx.uow.clock.now())
    await store.update_task(ctx.uow, task, Actor(event.requested_by, _source_type(ctx), "rescheduled"))
    await ctx.uow.announce("stayops.task.rescheduled",
                           TaskRescheduled(**_ids(task), due_at=event.due_at, previous_due_at=previous,
                                           reason=event.reason),
                           org_id=task.org_id, key=task.id)


async def task_reassign_requested(ctx: EventContext, event: TaskReassignRequested) -> None:
    """The requester hands its open task to a user, or to a role's queue (whose member
    the usual rules choose): an escalated decision. The new assignment is announced
    as any other, so the assignee sees the task in their inbox."""
    task = await _requested_task(ctx, event.request_id)
    if task is None or not task.is_open:
        return
    if event.mode is ReassignMode.ADD_REVIEWER:
        await _add_reviewer(ctx, task, event)
        return
    if event.assigned_to is not None and task.assigned_to == event.assigned_to:
        return
    moved = replace(task, assigned_to=event.assigned_to, assignee_type=None, assignment_rule=None,
                    role_id=event.role_id if event.role_id is not None else task.role_id,
                    updated_at=ctx.uow.clock.now())
    chosen = await _choose_assignment(ctx.uow, moved)
    if chosen is None:  # the event names a user or a role, so someone or a queue is chosen
        return
    assignment = replace(chosen, rule=f"{event.reason} ({chosen.rule})")
    moved = moved.assign(assignment)
    await store.update_task(ctx.uow, moved, Actor(event.requested_by, _source_type(ctx), "reassigned"))
    await ctx.uow.announce("stayops.task.assigned", task_assigned(moved, assignment),
                           org_id=moved.org_id, key=moved.id)


async def _add_reviewer(ctx: EventContext, task: Task, event: TaskReassignRequested) -> None:
    """The escalation keeps the assignee and adds a second person who may decide: the
    user named, or the member of the role the usual rules choose (none chosen: the
    task stays as it is). Written in the task's history as `reviewer added`; the
    reviewer sees the task in their inbox (the requester tells them)."""
    reviewer = event.assigned_to
    if reviewer is None:
        chosen = await _choose_assignment(ctx.uow, replace(task, assigned_to=None, role_id=event.role_id))
        reviewer = chosen.assigned_to if chosen is not None else None
    if reviewer is None:
        log.warning("task %s: nobody of role %s could be added as a reviewer", task.id, event.role_id)
        return
    if reviewer == task.assigned_to or reviewer in task.reviewers:
        return
    task = task.with_reviewer(reviewer, ctx.uow.clock.now())
    await store.update_task(ctx.uow, task, Actor(event.requested_by, _source_type(ctx), "reviewer added"))


async def _lock_reported(ctx: EventContext, task_id: str) -> Task:
    task = await store.get_task(ctx.uow.conn, ctx.org_id, task_id, for_update=True)
    if task is None:
        raise PermanentError(f"task {task_id} does not exist in org {ctx.org_id}: nothing to report on")
    return task


async def _save_completed(uow: UnitOfWork, task: Task, *, by: Actor, decision: Decision | None = None,
                          before: Task | None = None) -> Task:
    """`before`: the task as locked in this transaction, when the caller has it."""
    task = await store.update_task(uow, task, by, before=before)
    event = TaskCompleted(
        **_ids(task),
        task_type=task.task_type,
        completed_by=by.id,
        result=task.result or {},
        outcome=decision.outcome if decision else None,
        comment=decision.comment if decision else None,
        changes=decision.changes if decision else {},
    )
    await uow.announce("stayops.task.completed", event, org_id=task.org_id, key=task.id,
                       correlation_id=_correlation(uow, task))
    await _release_dependents(uow, task, by)
    return task


async def _save_failed(uow: UnitOfWork, task: Task, reason: str, *, by: Actor, before: Task | None = None) -> Task:
    task = await store.update_task(uow, task, by, before=before)
    await uow.announce("stayops.task.failed", TaskFailed(**_ids(task), reason=reason, failed_by=by.id,
                                                         result=task.result or {}),
                       org_id=task.org_id, key=task.id, correlation_id=_correlation(uow, task))
    return task


def _actor(caller: Caller, action: str) -> Actor:
    return actor_of(caller.user_id, UserType(caller.user_type.value), action)


def _source_type(ctx: EventContext) -> str:
    """Who asked, by another service's event: a workflow, an automation, or that service."""
    return {WORKFLOW_SERVICE: "workflow", AUTOMATION_SERVICE: "automation"}.get(
        ctx.envelope.source, ctx.envelope.source.lstrip("/"))


def _correlation(uow: UnitOfWork, task: Task) -> str | None:
    """A person's action on a run's task (over REST, with no correlation of its own)
    belongs to the run: its events carry the run's id, so the run's trace shows them."""
    return uow.correlation_id or task.workflow_run_id


def _ids(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "org_id": task.org_id,
        "workflow_run_id": task.workflow_run_id,
        "workflow_step": task.workflow_step,
        "request_id": task.request_id,
    }


async def member_joined(ctx: EventContext, event: MemberJoined) -> None:
    await store.upsert_member(ctx.uow.conn, {**_membership(event), "joined_at": event.joined_at}, joined=True)
    await _assign_queued(ctx, event.org_id, event.role_id)


async def member_updated(ctx: EventContext, event: MemberUpdated) -> None:
    # `joined_at` only for a first sighting (the update overtook the join).
    await store.upsert_member(ctx.uow.conn, {**_membership(event), "joined_at": event.updated_at}, joined=False)
    await _assign_queued(ctx, event.org_id, event.role_id)


async def _assign_queued(ctx: EventContext, org_id: str, role_id: str) -> None:
    """A role that gains a member hands it the work that waited in the role's queue
    (the directory and the task requests come on different topics, in no fixed order)."""
    now = ctx.uow.clock.now()
    for task in await store.lock_queued_role_tasks(ctx.uow.conn, org_id, role_id):
        assignment = await _choose_assignment(ctx.uow, task)
        if assignment is None or assignment.assigned_to is None:
            continue
        assigned = replace(task.assign(assignment), updated_at=now)
        await store.update_task(ctx.uow, assigned, Actor("task-service", "system", assignment.rule))
        await ctx.uow.announce("stayops.task.assigned", task_assigned(assigned, assignment),
                               org_id=org_id, key=task.id)


async def member_left(ctx: EventContext, event: MemberLeft) -> None:
    """The leaver's open work is handed on by the assignment rule, and announced."""
    await store.deactivate_member(ctx.uow.conn, event.org_id, event.user_id)
    open_tasks = await store.lock_open_tasks_of(ctx.uow.conn, event.org_id, event.user_id)
    await _hand_on(ctx, event.org_id, event.user_id, open_tasks)


async def agent_standing_changed(ctx: EventContext, event: AgentPaused | AgentResumed | AgentUpdated) -> None:
    """agent-service says where an AI agent stands (kill switches, autonomy, skills):
    the assignment rule follows it from now on, and the agent's open tasks that it
    may no longer hold (all of them once it is paused or off) are handed on by the
    rule — to another member of the role, or the role's queue — and announced. A
    resume pulls nothing back."""
    conn, org_id, agent = ctx.uow.conn, event.org_id, event.agent_user_id
    # Taken first, as an assignment to the role takes them: no task is given to the
    # agent by the standing this event replaces once its open tasks are counted.
    await store.lock_member_and_role(conn, org_id, agent)
    standing = AgentStanding(skills=frozenset(event.skills), autonomy=event.autonomy, paused=event.paused,
                             org_paused=event.org_paused)
    if not await store.save_standing(conn, org_id, agent, standing, event.changed_at):
        log.info("%s for agent %s is older than its kept standing: ignored", ctx.envelope.type, agent)
        return
    handed = work_to_hand_back(standing, await store.lock_open_tasks_of(conn, org_id, agent))

    def why(task: Task) -> str:
        return f"AI agent {agent} may no longer hold it ({standing.refuses(task.task_type, task.skill)})"

    await _hand_on(ctx, org_id, agent, handed, why=why)


async def _hand_on(ctx: EventContext, org_id: str, holder: str, tasks: list[Task],
                   why: Callable[[Task], str] | None = None) -> None:
    """Hand tasks leaving their holder on by the assignment rule, and announce each."""
    conn = ctx.uow.conn
    roles = sorted({t.role_id for t in tasks if t.role_id is not None})
    candidates = {role: await store.lock_role_candidates(conn, org_id, role) for role in roles}
    now = ctx.uow.clock.now()
    for task, assignment in reassign_open_work(holder, tasks, candidates, why=why):
        handed_on = replace(task.assign(assignment), updated_at=now)
        await store.update_task(ctx.uow, handed_on, Actor("task-service", "system", assignment.rule))
        await ctx.uow.announce("stayops.task.assigned", task_assigned(handed_on, assignment),
                               org_id=task.org_id, key=task.id)


def _membership(event: MemberJoined | MemberUpdated) -> dict[str, Any]:
    return {
        "org_id": event.org_id,
        "user_id": event.user_id,
        "user_type": event.user_type.value,
        "display_name": event.display_name,
        "role_id": event.role_id,
        "role_name": event.role_name,
        "department_id": event.department_id,
        "department_name": event.department_name,
    }


async def create_task_once(uow: UnitOfWork, caller: Caller, command: CreateTask, key: str,
                           digest: str) -> tuple[Task, bool]:
    """Create a task for a request with an Idempotency-Key: the task and whether it
    is new; a retry answers the task the first request made."""
    earlier = await idempotency.claim(uow.conn, caller.org_id, caller.user_id, key, digest)
    if earlier is not None:
        return await get_task(uow, caller, earlier), False
    task = await create_task(uow, caller, command)
    await idempotency.settle(uow.conn, caller.org_id, caller.user_id, key, task.id)
    return task, True


# -- the task product: edit, claim, release, cancel, reopen, comments, watchers --------

MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][A-Za-z0-9_.:-]{0,99})")


async def edit_task(uow: UnitOfWork, caller: Caller, task_id: str, changes: dict[str, Any],
                    if_match: str | None) -> Task:
    """Edit an open task's fields, at the version the caller read (If-Match). A new
    assignee, role or department is announced as an assignment; a new due time as a
    rescheduling."""
    before = await _lock(uow, caller, task_id)
    before.check_version(if_match)
    if {"project_id", "milestone_id"} & changes.keys():
        project_id = changes.get("project_id", before.project_id)
        # A task moved to another project leaves the milestone of the one before.
        milestone_id = changes.get("milestone_id", before.milestone_id if project_id == before.project_id else None)
        if "milestone_id" in changes and "project_id" not in changes and milestone_id is not None:
            project_id = None
        changes = {**changes, **dict(zip(("project_id", "milestone_id"), await projects.placement(
            uow, before.org_id, project_id, milestone_id), strict=True))}
    now = uow.clock.now()
    task = before.edited(changes, now)
    moved = {"assigned_to", "role_id", "department_id"} & changes.keys() and (
        (task.assigned_to, task.role_id, task.department_id)
        != (before.assigned_to, before.role_id, before.department_id))
    assignment = None
    if moved:
        if task.assigned_to is not None and task.assigned_to != before.assigned_to:
            explicit = await store.member_type(uow.conn, task.org_id, task.assigned_to)
            assignment = choose_assignment(
                task_type=task.task_type, assigned_to=task.assigned_to, role_id=task.role_id,
                department_id=task.department_id, requested_by=caller.user_id,
                explicit_assignee_type=explicit, candidates=[], skill=task.skill)
        elif task.assigned_to is None:
            assignment = Assignment(None, None, f"moved by {caller.user_id} to the queue of {task.queue}")
        else:
            assignment = Assignment(task.assigned_to, task.assignee_type,
                                    f"kept by {task.assigned_to}; team changed by {caller.user_id}")
        if assignment is not None:
            task = task.assign(assignment)
    task = await store.update_task(uow, task, _actor(caller, "edited"))
    correlation = _correlation(uow, task)
    if assignment is not None:
        await uow.announce("stayops.task.assigned", task_assigned(task, assignment), org_id=task.org_id,
                           key=task.id, correlation_id=correlation)
    if task.due_at != before.due_at and task.due_at is not None:
        await uow.announce("stayops.task.rescheduled",
                           TaskRescheduled(**_ids(task), due_at=task.due_at, previous_due_at=before.due_at,
                                           reason=f"edited by {caller.user_id}"),
                           org_id=task.org_id, key=task.id, correlation_id=correlation)
    return task


async def claim_task(uow: UnitOfWork, caller: Caller, task_id: str) -> Task:
    """A queued task becomes the caller's (it stays pending until started)."""
    task = await _lock(uow, caller, task_id)
    task, assignment = task.claimed(caller.user_id, UserType(caller.user_type.value), caller.role_id,
                                    caller.department_id, uow.clock.now())
    task = await store.update_task(uow, task, _actor(caller, "claimed"))
    await uow.announce("stayops.task.assigned", task_assigned(task, assignment), org_id=task.org_id,
                       key=task.id, correlation_id=_correlation(uow, task))
    return task


async def release_task(uow: UnitOfWork, caller: Caller, task_id: str) -> Task:
    """Its assignee hands it back to its queue."""
    task = await _lock(uow, caller, task_id)
    task, assignment = task.released(caller.user_id, uow.clock.now())
    task = await store.update_task(uow, task, _actor(caller, "released"))
    await uow.announce("stayops.task.assigned", task_assigned(task, assignment), org_id=task.org_id,
                       key=task.id, correlation_id=_correlation(uow, task))
    return task


async def cancel_task(uow: UnitOfWork, caller: Caller, task_id: str, reason: str) -> Task:
    task = (await _lock(uow, caller, task_id)).cancel(reason, uow.clock.now())
    by = _actor(caller, "cancelled")
    task = await store.update_task(uow, task, by)
    await uow.announce("stayops.task.cancelled",
                       TaskCancelled(**_ids(task), reason=reason, cancelled_by=caller.user_id),
                       org_id=task.org_id, key=task.id, correlation_id=_correlation(uow, task))
    await _release_dependents(uow, task, by)
    return task


async def reopen_task(uow: UnitOfWork, caller: Caller, task_id: str) -> Task:
    """A finished task waits again, with its assignee (or in its queue). No event
    says so yet: the task's history does."""
    task = (await _lock(uow, caller, task_id)).reopened(uow.clock.now())
    return await store.update_task(uow, task, _actor(caller, "reopened"))


def mentions_in(body: str) -> list[str]:
    return list(dict.fromkeys(MENTION.findall(body)))


async def add_comment(uow: UnitOfWork, caller: Caller, task_id: str, body: str) -> dict[str, Any]:
    """A comment on a task. Each `@user` it names who is a member of the org is
    notified (a `notify` task for automation-service, which leaves the notification
    GET /v1/notifications shows) and watches the task from then on, as the author does."""
    task = await _lock(uow, caller, task_id)
    now = uow.clock.now()
    mentioned = mentions_in(body)
    comment = {"id": uow.ids(), "org_id": task.org_id, "task_id": task.id, "author": caller.user_id,
               "body": body, "mentions": mentioned, "created_at": now}
    await store.add_comment(uow.conn, comment)
    await store.add_watcher(uow.conn, task.org_id, task.id, caller.user_id, now)
    notified = []
    for user_id in mentioned:
        if user_id == caller.user_id or await store.member_type(uow.conn, task.org_id, user_id) is None:
            continue
        await store.add_watcher(uow.conn, task.org_id, task.id, user_id, now)
        await _notify(uow, task, user_id, f"{caller.user_id} mentioned you on {task.title}",
                      f"{caller.user_id} mentioned you", body, by=_actor(caller, "mentioned"))
        notified.append(user_id)
    return {**comment, "notified": notified}


async def _notify(uow: UnitOfWork, task: Task, user_id: str, title: str, subject: str, body: str, *,
                  by: Actor) -> None:
    """A notification to a member about a task: a `notify` task for automation-service,
    which leaves it in the member's GET /v1/notifications."""
    await _create(uow, task.org_id, by.id, CreateTask(
        title=title[:300], task_type=TaskType.AUTOMATED, assigned_to=AUTOMATION,
        data={"action": "notify", "user_id": user_id, "subject": subject[:300], "body": body[:2_000],
              "about_task_id": task.id}),
        by=by)


async def watch(uow: UnitOfWork, caller: Caller, task_id: str, user_id: str, *, on: bool) -> list[str]:
    task = await _lock(uow, caller, task_id)
    if on:
        await store.add_watcher(uow.conn, task.org_id, task.id, user_id, uow.clock.now())
    else:
        await store.remove_watcher(uow.conn, task.org_id, task.id, user_id)
    return await store.watchers_of(uow.conn, task.org_id, task.id)


# -- dependencies: a task blocked by others starts and completes once they are done ------

async def _check_unblocked(uow: UnitOfWork, task: Task, what: str) -> None:
    """A person may not start, complete or decide a task while a task it is blocked by
    is open (409 `blocked`, naming them)."""
    waiting = open_blockers(await store.blockers_of(uow.conn, task.org_id, task.id))
    if waiting:
        raise Blocked(task, waiting, what)


async def add_dependency(uow: UnitOfWork, caller: Caller, task_id: str, blocker_id: str) -> Task:
    """`task_id` is blocked by `blocker_id` (both of the caller's org, any projects);
    refused (422 `dependency-cycle`) when the blocker is, through others, blocked by
    the task. Written to the task's history."""
    task = await _lock(uow, caller, task_id)
    blocker = await get_task(uow, caller, blocker_id)
    await store.lock_dependencies(uow.conn, task.org_id)
    cycle = await store.find_cycle(uow.conn, task.org_id, task.id, blocker.id)
    if cycle is not None:
        raise DependencyCycle(cycle)
    before = [t.id for t in await store.blockers_of(uow.conn, task.org_id, task.id)]
    now = uow.clock.now()
    if await store.add_dependency(uow.conn, task.org_id, task.id, blocker.id, caller.user_id, now):
        store.note(uow, task, _actor(caller, "dependency added"),
                   {"blocked_by": {"from": before, "to": [*before, blocker.id]}}, now)
    return task


async def remove_dependency(uow: UnitOfWork, caller: Caller, task_id: str, blocker_id: str) -> Task:
    """The task is no longer blocked by `blocker_id`; if that blocker was the last open
    one, the task is announced unblocked."""
    task = await _lock(uow, caller, task_id)
    await store.lock_dependencies(uow.conn, task.org_id)
    blockers = await store.blockers_of(uow.conn, task.org_id, task.id)
    removed = next((b for b in blockers if b.id == blocker_id), None)
    if removed is None or not await store.remove_dependency(uow.conn, task.org_id, task.id, blocker_id):
        raise DependencyNotFound(task.id, blocker_id)
    now = uow.clock.now()
    by = _actor(caller, "dependency removed")
    left = [b for b in blockers if b.id != blocker_id]
    store.note(uow, task, by, {"blocked_by": {"from": [b.id for b in blockers],
                                                   "to": [b.id for b in left]}}, now)
    if open_blockers([removed]) and not open_blockers(left) and task.is_open:
        await _announce_unblocked(uow, task, left, None, by)
    return task


async def _release_dependents(uow: UnitOfWork, finished: Task, by: Actor) -> None:
    """A task just done (completed or cancelled): each open task it blocked whose
    blockers are now all done is announced unblocked, and its history says so."""
    for waiting in await store.blocked_by_this(uow.conn, finished.org_id, finished.id, lock=True):
        if not waiting.is_open:
            continue
        blockers = await store.blockers_of(uow.conn, waiting.org_id, waiting.id)
        if open_blockers(blockers):
            continue
        await _announce_unblocked(uow, waiting, blockers, finished.id, by)


async def _announce_unblocked(uow: UnitOfWork, task: Task, blockers: list[Task], released_by: str | None,
                              by: Actor) -> None:
    store.note(uow, task, Actor("task-service", "system", "unblocked"), {
        "open_blockers": {"from": [released_by] if released_by else [], "to": []},
        "released_by": {"from": None, "to": released_by or f"dependency removed by {by.id}"}}, uow.clock.now())
    await uow.announce("stayops.task.unblocked",
                       TaskUnblocked(**_ids(task), blocker_ids=[b.id for b in blockers], released_by=released_by,
                                     unblocked_by=by.id),
                       org_id=task.org_id, key=task.id, correlation_id=_correlation(uow, task))


# -- bulk actions -------------------------------------------------------------------------

MAX_LABELS = 20


@dataclass(frozen=True)
class BulkOutcome:
    task_id: str
    task: Task | None = None
    error: DomainError | None = None


async def bulk(uow: UnitOfWork, caller: Caller, action: str, task_ids: list[str], params: dict[str, Any]
               ) -> list[BulkOutcome]:
    """One action on many tasks, each as its single route would do it (the same checks
    and events, its history entry), each in its own savepoint: a task refused keeps
    its state and the others still change. The tasks are locked in id order first."""
    await store.lock_tasks(uow.conn, caller.org_id, sorted(set(task_ids)))
    outcomes = []
    for task_id in dict.fromkeys(task_ids):
        try:
            async with uow.conn.begin_nested():
                done = await _bulk_one(uow, caller, action, task_id, params)
            outcomes.append(BulkOutcome(task_id, task=done))
        except DomainError as exc:
            outcomes.append(BulkOutcome(task_id, error=exc))
    return outcomes


async def _bulk_one(uow: UnitOfWork, caller: Caller, action: str, task_id: str, params: dict[str, Any]) -> Task:
    if action == "cancel":
        return await cancel_task(uow, caller, task_id, params["reason"])
    if action == "label":
        task = await get_task(uow, caller, task_id)
        labels = [label for label in dict.fromkeys((*task.labels, *params.get("add", ())))
                  if label not in set(params.get("remove", ()))]
        if len(labels) > MAX_LABELS:
            raise InvalidRequest(f"task {task_id} would have {len(labels)} labels; at most {MAX_LABELS}")
        return await edit_task(uow, caller, task_id, {"labels": tuple(labels)}, None)
    # assign and move: the fields given, as PATCH would change them.
    return await edit_task(uow, caller, task_id, params, None)


# -- SLAs: due reminders and overdue escalation, fired by the due-timer loop -------------

SLA_ACTOR = "task-service"


async def fire_due_timers(uow: UnitOfWork, limit: int = 20) -> int:
    """Fire the stage of each due timer (claimed with its task, skipping any another
    transaction holds) and arm its next one, in this transaction: a stage fires once,
    with its notification and history entry, or not at all. Returns how many timers."""
    claimed = await store.claim_due_timers(uow.conn, limit)
    for timer, task in claimed:
        await _fire_stage(uow, timer, task)
    return len(claimed)


async def _fire_stage(uow: UnitOfWork, timer: store.DueTimer, task: Task) -> None:
    conn = uow.conn
    if not task.is_open or task.due_at is None or not sla.covered(task.due_at):
        await store.drop_timer(conn, task.org_id, task.id)
        return
    if task.due_at != timer.due_at:  # moved meanwhile without its timer (never by this service's writes)
        await store.sync_due_timer(conn, None, task)
        return
    policy = await store.effective_sla_policy(conn, task.org_id, task.project_id)
    stage = policy.next_stage(timer.last_offset) if policy else None
    if policy is None or stage is None:
        await store.drop_timer(conn, task.org_id, task.id)
        return
    if stage.at(task.due_at) > timer.fire_at:  # the policy moved this stage later since it was armed
        await store.timer_fired(conn, timer, timer.last_offset, stage.at(task.due_at))
        return
    now = uow.clock.now()
    if not sla.skipped(stage, task.due_at, now):
        await _sla_act(uow, task, stage, policy, now)
    following = policy.next_stage(stage.offset)
    await store.timer_fired(conn, timer, stage.offset, following.at(task.due_at) if following else None)


def _late(delta: timedelta) -> str:
    minutes = max(0, round(delta.total_seconds() / 60))
    if minutes < 120:
        return f"{minutes} min"
    hours = round(minutes / 60)
    return f"{hours} h" if hours < 48 else f"{round(hours / 24)} days"


async def _sla_act(uow: UnitOfWork, task: Task, stage: sla.Stage, policy: sla.SlaPolicy, now: datetime) -> None:
    """What one stage does: remind or notify someone (a notification, and a history
    entry saying so), or reassign the task (its history entry and assignment event)."""
    assert task.due_at is not None
    due = task.due_at.isoformat()
    step = stage.step
    action = "reminded" if stage.kind != "escalation" else "escalated"
    if step is not None and step.action == "reassign":
        await _sla_reassign(uow, task, step, f"overdue by {_late(now - task.due_at)} (SLA escalation)")
        return
    if step is not None and step.action == "notify_lead":
        to = policy.leads.get(task.role_id or "")
        what = f"lead of {task.role_id}"
        subject = f"Overdue in your team: {task.title}"
        body = (f"{task.title} ({task.assigned_to or 'unassigned'}) was due at {due}: "
                f"overdue by {_late(now - task.due_at)}.")
    else:
        to = task.assigned_to if task.assigned_to != AUTOMATION else None
        what = "assignee"
        if stage.kind == "reminder":
            subject = f"Due in {_late(task.due_at - now)}: {task.title}"
            body = f"{task.title} is due at {due}."
        elif stage.kind == "due":
            subject = f"Due now: {task.title}"
            body = f"{task.title} is due now ({due})."
        else:
            subject = f"Overdue: {task.title}"
            body = f"{task.title} was due at {due}: overdue by {_late(now - task.due_at)}."
    by = Actor(SLA_ACTOR, "system", action)
    if to is None:
        store.note(uow, task, by, {"sla": {"from": None, "to": f"{stage.kind} at {_offset(stage)}: "
                                                              f"no {what} to notify"}}, now)
        return
    await _notify(uow, task, to, subject, subject, body, by=by)
    store.note(uow, task, by, {"sla": {"from": None, "to": f"{stage.kind} at {_offset(stage)}: "
                                                          f"notified {what} {to}"}}, now)


def _offset(stage: sla.Stage) -> str:
    if stage.offset < timedelta(0):
        return f"due - {sla.iso_duration(-stage.offset)}"
    return "due" if stage.offset == timedelta(0) else f"due + {sla.iso_duration(stage.offset)}"


async def _sla_reassign(uow: UnitOfWork, task: Task, step: sla.EscalationStep, reason: str) -> None:
    """An overdue task to a user, or to a role (its member by the usual rule, else its
    queue); announced as any assignment, and in the history as `reassigned`."""
    if step.user_id is not None and task.assigned_to == step.user_id:
        store.note(uow, task, Actor(SLA_ACTOR, "system", "escalated"),
                   {"sla": {"from": None, "to": f"reassign: already {step.user_id}'s"}}, uow.clock.now())
        return
    moved = replace(task, assigned_to=step.user_id, assignee_type=None, assignment_rule=None,
                    role_id=step.role_id if step.role_id is not None else task.role_id,
                    updated_at=uow.clock.now())
    chosen = await _choose_assignment(uow, moved)
    if chosen is None:
        return
    assignment = replace(chosen, rule=f"{reason} ({chosen.rule})")
    moved = moved.assign(assignment)
    await store.update_task(uow, moved, Actor(SLA_ACTOR, "system", "reassigned"))
    await uow.announce("stayops.task.assigned", task_assigned(moved, assignment), org_id=moved.org_id,
                       key=moved.id, correlation_id=_correlation(uow, moved))
