"""Workflow definitions, runs and the run log: what they are and what a task's
outcome adds to a run's log. Pure: no I/O, no framework."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stayops_kit.errors import NotFound
from stayops_schemas.events.tasks import TaskCompleted, TaskFailed
from stayops_schemas.events.workflows import RunStatus

# Who a log entry names when the event does not say who acted.
TASK_SERVICE_ACTOR = "task-service"


class RunNotFound(NotFound):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"workflow run {run_id} does not exist in your organisation")


@dataclass(frozen=True)
class WorkflowDefinition:
    """One published version of a workflow; versions are immutable, a change is a new
    version. `document` holds the steps (its schema arrives with the saga engine)."""

    org_id: str
    key: str
    version: int
    name: str
    document: dict[str, Any]
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class WorkflowRun:
    """One run of one definition version: the saga's state."""

    id: str
    org_id: str
    workflow_key: str
    workflow_version: int
    status: RunStatus
    started_at: datetime
    updated_at: datetime
    current_step: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    started_by: str | None = None
    request_id: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True)
class RunLogEntry:
    """One line of a run's log: who did what, and when."""

    run_id: str
    org_id: str
    at: datetime
    actor: str
    message: str


def _task_label(task_id: str, step: str | None) -> str:
    return f"task {task_id}" + (f" (step {step})" if step else "")


def task_completed_entry(run: WorkflowRun, event: TaskCompleted, at: datetime) -> RunLogEntry:
    message = f"{_task_label(event.task_id, event.workflow_step)} completed"
    if event.outcome is not None:
        message += f": {event.outcome.value}"
    if event.comment:
        message += f" ({event.comment})"
    return RunLogEntry(run_id=run.id, org_id=run.org_id, at=at, actor=event.completed_by, message=message)


def task_failed_entry(run: WorkflowRun, event: TaskFailed, at: datetime) -> RunLogEntry:
    return RunLogEntry(
        run_id=run.id,
        org_id=run.org_id,
        at=at,
        actor=event.failed_by or TASK_SERVICE_ACTOR,
        message=f"{_task_label(event.task_id, event.workflow_step)} failed: {event.reason}",
    )
