"""Tasks: what they are and how their status may change. Pure: no I/O, no framework."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from stayops_kit.errors import Conflict, InvalidRequest, NotFound
from stayops_schemas.events.tasks import Priority, TaskStatus, TaskType


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
}


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
    due_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    parent_task_id: str | None = None
    workflow_run_id: str | None = None
    workflow_step: str | None = None
    request_id: str | None = None

    def transition(self, wanted: TaskStatus, now: datetime) -> Task:
        if wanted not in ALLOWED_TRANSITIONS[self.status]:
            raise TransitionNotAllowed(self.id, self.status, wanted)
        return replace(self, status=wanted, updated_at=now)
