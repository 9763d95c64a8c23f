"""Tasks: what they are, who gets them and how their status may change. Pure: no
I/O, no framework."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from stayops_kit.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from stayops_schemas.events.org import UserType
from stayops_schemas.events.tasks import AUTOMATION_ASSIGNEE, DecisionOutcome, Priority, TaskStatus, TaskType

# The system user that executes `automated` tasks (automation-service).
AUTOMATION = AUTOMATION_ASSIGNEE

OPEN_STATUSES: frozenset[TaskStatus] = frozenset(
    {TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.BLOCKED}
)


class TaskNotFound(NotFound):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} does not exist in your organisation")


class TransitionNotAllowed(Conflict):
    title = "Transition not allowed"

    def __init__(self, task_id: str, current: TaskStatus, wanted: TaskStatus) -> None:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_TRANSITIONS[current])) or "none"
        super().__init__(
            f"task {task_id} is {current.value}; it cannot become {wanted.value} "
            f"(allowed from {current.value}: {allowed})"
        )


class NotYourTask(PermissionDenied):
    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"task {task_id} is assigned to someone else: only its assignee or a member "
            "of its role may act on it"
        )


class DecisionRequired(Conflict):
    title = "Decision required"

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"task {task_id} is a decision: answer it with POST /v1/tasks/{task_id}/decision"
        )


class NotADecision(Conflict):
    title = "Not a decision"

    def __init__(self, task_id: str, task_type: TaskType) -> None:
        super().__init__(
            f"task {task_id} is a {task_type.value} task; only decision tasks take a decision "
            "(complete it with /complete instead)"
        )


class ParentTaskInvalid(InvalidRequest):
    pass


# The task state machine. Completed and failed are final; a blocked task can be
# resumed; a pending task can be completed directly (e.g. an approval by rule).
ALLOWED_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset(
        {TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.BLOCKED}
    ),
    TaskStatus.IN_PROGRESS: frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.BLOCKED}),
    TaskStatus.BLOCKED: frozenset({TaskStatus.IN_PROGRESS, TaskStatus.PENDING, TaskStatus.FAILED}),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}
# Whoever asked for a task may withdraw it while it is open; cancelled is final.
ALLOWED_TRANSITIONS.update({status: ALLOWED_TRANSITIONS[status] | {TaskStatus.CANCELLED}
                            for status in OPEN_STATUSES})


@dataclass(frozen=True)
class Decision:
    """A decider's answer to a decision task. `changes` are the decider's edits to
    the proposal (a list of price overrides travels as `{"prices": [...]}`)."""

    outcome: DecisionOutcome
    comment: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, outcome: DecisionOutcome, comment: str | None, changes: list[Any] | dict[str, Any] | None
    ) -> Decision:
        if changes is None:
            return cls(outcome, comment)
        if isinstance(changes, list):
            return cls(outcome, comment, {"prices": changes})
        return cls(outcome, comment, dict(changes))

    def as_result(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "comment": self.comment, "changes": self.changes}


@dataclass(frozen=True)
class Task:
    id: str
    org_id: str
    title: str
    task_type: TaskType
    status: TaskStatus
    priority: Priority
    created_by: str
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    department_id: str | None = None
    role_id: str | None = None
    assigned_to: str | None = None
    assignee_type: UserType | None = None
    assignment_rule: str | None = None
    due_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    status_reason: str | None = None
    parent_task_id: str | None = None
    workflow_run_id: str | None = None
    workflow_step: str | None = None
    request_id: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def can_become(self, wanted: TaskStatus) -> bool:
        return wanted in ALLOWED_TRANSITIONS[self.status]

    def transition(self, wanted: TaskStatus, now: datetime) -> Task:
        if not self.can_become(wanted):
            raise TransitionNotAllowed(self.id, self.status, wanted)
        return replace(self, status=wanted, updated_at=now)

    def check_actor(self, user_id: str, role_id: str | None) -> None:
        """Only the assignee, or a member of the task's role, may act on it."""
        if user_id == self.assigned_to:
            return
        if role_id is not None and role_id == self.role_id:
            return
        raise NotYourTask(self.id)

    def assign(self, assignment: Assignment) -> Task:
        return replace(
            self,
            assigned_to=assignment.assigned_to,
            assignee_type=assignment.assignee_type,
            assignment_rule=assignment.rule,
        )

    def start(self, now: datetime) -> Task:
        return replace(self.transition(TaskStatus.IN_PROGRESS, now), status_reason=None)

    def complete(self, result: dict[str, Any], now: datetime) -> Task:
        if self.task_type is TaskType.DECISION:
            raise DecisionRequired(self.id)
        return replace(self.transition(TaskStatus.COMPLETED, now), result=result, status_reason=None)

    def decide(self, decision: Decision, now: datetime) -> Task:
        if self.task_type is not TaskType.DECISION:
            raise NotADecision(self.id, self.task_type)
        done = self.transition(TaskStatus.COMPLETED, now)
        return replace(done, result=decision.as_result(), status_reason=None)

    def fail(self, reason: str, now: datetime) -> Task:
        return replace(self.transition(TaskStatus.FAILED, now), status_reason=reason)

    def block(self, reason: str, now: datetime) -> Task:
        return replace(self.transition(TaskStatus.BLOCKED, now), status_reason=reason)

    def cancel(self, reason: str, now: datetime) -> Task:
        return replace(self.transition(TaskStatus.CANCELLED, now), status_reason=reason)

    def rescheduled(self, due_at: datetime, now: datetime) -> Task:
        return replace(self, due_at=due_at, updated_at=now)


@dataclass(frozen=True)
class Assignment:
    """Who a new task goes to and why. `assigned_to` None: it waits in a queue."""

    assigned_to: str | None
    assignee_type: UserType | None
    rule: str


@dataclass(frozen=True)
class Candidate:
    """An active member of a role, as the assignment rule sees them."""

    user_id: str
    user_type: UserType
    joined_at: datetime
    open_tasks: int


def assign_by_role(role_id: str, candidates: Sequence[Candidate]) -> Assignment:
    """The member with the fewest open tasks, then the oldest membership, then the
    smallest user id; people and AI agents alike. No member: the role's queue."""
    if not candidates:
        return Assignment(None, None, f"role:{role_id} -> role queue (no active member)")
    chosen = min(candidates, key=lambda c: (c.open_tasks, c.joined_at, c.user_id))
    if len(candidates) == 1:
        return Assignment(chosen.user_id, chosen.user_type, f"role:{role_id} -> only active member")
    return Assignment(
        chosen.user_id,
        chosen.user_type,
        f"role:{role_id} -> fewest open tasks ({chosen.open_tasks}) among {len(candidates)} "
        "active members, then oldest membership, then user id",
    )


def choose_assignment(
    *,
    task_type: TaskType,
    assigned_to: str | None,
    role_id: str | None,
    department_id: str | None,
    requested_by: str,
    explicit_assignee_type: UserType | None,
    candidates: Sequence[Candidate],
) -> Assignment | None:
    """An explicit assignee wins; else the role's rule; else the department's queue.
    None: the task has nobody and no queue, so nothing is announced."""
    if assigned_to == AUTOMATION and task_type is TaskType.AUTOMATED:
        return Assignment(AUTOMATION, None, f"automated task -> automation (requested by {requested_by})")
    if assigned_to is not None:
        return Assignment(
            assigned_to, explicit_assignee_type or UserType.HUMAN, f"assigned by user {requested_by}"
        )
    if role_id is not None:
        return assign_by_role(role_id, candidates)
    if department_id is not None:
        return Assignment(None, None, f"department:{department_id} -> department queue (no role given)")
    return None


def reassign_open_work(
    leaver: str, open_tasks: Sequence[Task], candidates_by_role: Mapping[str, Sequence[Candidate]]
) -> list[tuple[Task, Assignment]]:
    """A member left: each of their open tasks goes to its role by the same rule
    (counting what this reassignment already handed out), else to its department's
    queue, else to nobody."""
    handed_out: dict[str, int] = {}
    plan: list[tuple[Task, Assignment]] = []
    for task in open_tasks:
        if task.role_id is not None:
            candidates = [
                replace(c, open_tasks=c.open_tasks + handed_out.get(c.user_id, 0))
                for c in candidates_by_role.get(task.role_id, ())
                if c.user_id != leaver
            ]
            chosen = assign_by_role(task.role_id, candidates)
        elif task.department_id is not None:
            chosen = Assignment(None, None, f"department:{task.department_id} -> department queue")
        else:
            chosen = Assignment(None, None, "unassigned: no role or department to hand it to")
        if chosen.assigned_to is not None:
            handed_out[chosen.assigned_to] = handed_out.get(chosen.assigned_to, 0) + 1
        plan.append((task, replace(chosen, rule=f"{leaver} left the organisation; {chosen.rule}")))
    return plan
