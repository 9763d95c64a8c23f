"""Task lifecycle events, produced by task-service on `stayops.tasks`
(and `stayops.task.requested`, produced by whoever asks for a task).

Every lifecycle event names its task and organisation and, when the task is a
workflow step, the run and step, so a saga can route it without a lookup."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Field, model_validator

from stayops_schemas.events.base import NonEmptyStr, Payload
from stayops_schemas.events.org import UserType

Title = Annotated[str, Field(min_length=1, max_length=300)]


# The system user `automated` tasks are assigned to; automation-service executes them.
AUTOMATION_ASSIGNEE = "automation"

# Actions of `automated` tasks that change the outside world (prices live on a
# platform, a sync run against it): only a workflow run starts them, after its
# decision step, never a member's request data.
SIDE_EFFECTING_ACTIONS: frozenset[str] = frozenset({"publish_prices", "request_sync"})

# `created_by` of the tasks a workflow run requests.
WORKFLOW_CREATOR = "workflow-service"


class TaskType(StrEnum):
    MANUAL = "manual"
    AUTOMATED = "automated"
    ANALYSIS = "analysis"
    DECISION = "decision"


class TaskStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    BLOCKED = "blocked"
    # Withdrawn by whoever asked for it (a cancelled reservation cancels its cleaning).
    CANCELLED = "cancelled"


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


class DecisionOutcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class TaskRequested(Payload):
    """`stayops.task.requested`: ask task-service for a task. A request, not a fact:
    task-service may refuse it. `request_id` is the idempotency key, so asking twice
    creates one task."""

    request_id: NonEmptyStr
    org_id: NonEmptyStr
    title: Title
    task_type: TaskType
    priority: Priority = Priority.MEDIUM
    description: str | None = None
    role_id: str | None = None
    department_id: str | None = None
    assigned_to: str | None = None
    due_at: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    parent_task_id: str | None = None
    workflow_run_id: str | None = None
    workflow_step: str | None = None
    requested_by: NonEmptyStr


class TaskCreated(Payload):
    """`stayops.task.created`: a task exists; `request_id` names the request it
    answers, if it was created from one."""

    task_id: NonEmptyStr
    org_id: NonEmptyStr
    title: Title
    task_type: TaskType
    status: TaskStatus
    priority: Priority
    description: str | None = None
    department_id: str | None = None
    role_id: str | None = None
    assigned_to: str | None = None
    due_at: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    parent_task_id: str | None = None
    workflow_run_id: str | None = None
    workflow_step: str | None = None
    created_by: NonEmptyStr
    request_id: str | None = None


class _TaskEvent(Payload):
    """What every lifecycle event after creation carries."""

    task_id: NonEmptyStr
    org_id: NonEmptyStr
    workflow_run_id: str | None = None
    workflow_step: str | None = None
    request_id: str | None = Field(
        default=None,
        description="The request the task answers (`stayops.task.requested`), so the requester "
        "matches the happening to the attempt that asked for it.",
    )


class TaskAssigned(_TaskEvent):
    """`stayops.task.assigned`: the task has a new assignee. It carries the task's
    type, title and data so the assignee's service (agent-service for an AI agent,
    automation-service for an `automated` task) can start without a lookup.
    `assigned_to` is None when the task waits in a role's or department's queue."""

    task_type: TaskType
    title: Title
    data: dict[str, Any] = Field(default_factory=dict)
    assigned_to: str | None = None
    assignee_type: UserType | None = None
    role_id: str | None = None
    department_id: str | None = None
    rule: NonEmptyStr = Field(
        description="Why this assignee: the rule that chose it, or who assigned it by hand.",
        examples=["role:revenue-manager -> only member", "assigned by user u-42"],
    )
    created_by: str | None = Field(
        default=None,
        description="Who created the task: a user id, or the service that requested it "
        "(`workflow-service`); side-effecting automated tasks are executed only for a workflow.",
    )

    @model_validator(mode="after")
    def _assignee_type_names_an_assignee(self) -> Self:
        if self.assigned_to == AUTOMATION_ASSIGNEE:
            if self.assignee_type is not None:
                raise ValueError("the automation system user is neither a human nor an AI agent")
            return self
        if (self.assigned_to is None) != (self.assignee_type is None):
            raise ValueError("assigned_to and assignee_type are set together or not at all")
        return self


class TaskStarted(_TaskEvent):
    """`stayops.task.started`: work on the task began."""

    started_by: NonEmptyStr = Field(
        description="User id of the person or AI agent, or the automation that runs it."
    )


class TaskCompleted(_TaskEvent):
    """`stayops.task.completed`: the task is done. A `decision` task always has an
    `outcome`; other tasks never do. `changes` holds the edits a decider made to the
    proposal before approving it."""

    task_type: TaskType
    completed_by: NonEmptyStr = Field(
        description="User id of the person or AI agent, or the automation that did it."
    )
    result: dict[str, Any] = Field(default_factory=dict)
    outcome: DecisionOutcome | None = None
    comment: str | None = None
    changes: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _outcome_only_for_decisions(self) -> Self:
        if self.task_type is TaskType.DECISION and self.outcome is None:
            raise ValueError("a decision task completes with an outcome: approved or rejected")
        if self.task_type is not TaskType.DECISION and self.outcome is not None:
            raise ValueError("only a decision task has an outcome")
        return self


class TaskFailed(_TaskEvent):
    """`stayops.task.failed`: the task cannot be done; a saga compensates. `result`
    holds what a partly done task did get done (e.g. the listings whose prices a
    failed publish did apply), so a retry does only the rest."""

    reason: NonEmptyStr
    failed_by: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)


class TaskBlocked(_TaskEvent):
    """`stayops.task.blocked`: the task waits on something outside it."""

    reason: NonEmptyStr
    blocked_by: str | None = None


class TaskUnblocked(_TaskEvent):
    """`stayops.task.unblocked`: the last of the tasks this task is blocked by is done
    (completed or cancelled), or its last open dependency was removed; it may start."""

    blocker_ids: list[NonEmptyStr] = Field(
        default_factory=list, description="The tasks it is still blocked by, each of them done now.")
    released_by: str | None = Field(
        default=None, description="The blocker whose completion or cancellation unblocked it; null when "
        "removing a dependency did.")
    unblocked_by: NonEmptyStr = Field(description="Who finished that blocker or removed the dependency.")


class TaskCancelRequested(Payload):
    """`stayops.task.cancel.requested`: the requester of a task (named by the
    `request_id` it asked with) withdraws it; task-service cancels it if still open."""

    request_id: NonEmptyStr
    org_id: NonEmptyStr
    reason: NonEmptyStr
    requested_by: NonEmptyStr


class TaskRescheduleRequested(Payload):
    """`stayops.task.reschedule.requested`: the requester of a task moves its due
    time (a reservation's check-out moved, so its cleaning moves)."""

    request_id: NonEmptyStr
    org_id: NonEmptyStr
    due_at: datetime
    reason: str | None = None
    requested_by: NonEmptyStr


class ReassignMode(StrEnum):
    """What a reassignment does: hand the task over, or add a second decider."""

    REASSIGN = "reassign"
    ADD_REVIEWER = "add_reviewer"


class TaskReassignRequested(Payload):
    """`stayops.task.reassign.requested`: the requester of a task hands it, still
    open, to another user (`assigned_to`) or to a role's queue (`role_id`) — a
    decision escalated when nobody took it in time. task-service announces the new
    assignment as `stayops.task.assigned`. With `mode: add_reviewer` the assignee
    stays and the user (or the member of the role the usual rules choose) is added
    to the task's reviewers, who may decide it too and see it in their inbox."""

    request_id: NonEmptyStr
    org_id: NonEmptyStr
    assigned_to: str | None = None
    role_id: str | None = None
    reason: NonEmptyStr
    requested_by: NonEmptyStr
    mode: ReassignMode = ReassignMode.REASSIGN

    @model_validator(mode="after")
    def _names_one_assignee(self) -> Self:
        if (self.assigned_to is None) == (self.role_id is None):
            raise ValueError("a reassignment names either assigned_to or role_id")
        return self


class TaskCancelled(_TaskEvent):
    """`stayops.task.cancelled`: the task was withdrawn before it was done."""

    reason: NonEmptyStr
    cancelled_by: NonEmptyStr


class TaskRescheduled(_TaskEvent):
    """`stayops.task.rescheduled`: the task's due time moved."""

    due_at: datetime
    previous_due_at: datetime | None = None
    reason: str | None = None
