"""Workflow run events, produced by workflow-service on `stayops.workflows`
(and `stayops.workflow.run.requested`, produced by whoever asks for a run:
automation-service when a schedule or an event fires, or a person through the API).

A run is a saga: its events are the run's public log, and `correlationid` on the
envelope ties them to every task and event the run caused."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from stayops_schemas.events.base import NonEmptyStr, Payload


class RunStatus(StrEnum):
    # Waits for an overlapping run of the same concurrency key to end.
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    # Held by a person: takes no new step; what arrives meanwhile is applied on resume.
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    # Failed and could not be put right by itself (a compensation kept failing, a step
    # past the pivot could not go on): it takes no further step; the org's owners are told.
    NEEDS_ATTENTION = "needs_attention"
    CANCELLED = "cancelled"


class WaitKind(StrEnum):
    """What a waiting run needs before its next step."""

    TASK = "task"
    EVENT = "event"
    TIMER = "timer"
    # Child runs a `map` step started (their own run.* events say when each ends).
    RUNS = "runs"


class WorkflowRunRequested(Payload):
    """`stayops.workflow.run.requested`: ask for a run of a workflow. `request_id` is
    the idempotency key; `workflow_version` None means the latest published version."""

    request_id: NonEmptyStr
    org_id: NonEmptyStr
    workflow_key: NonEmptyStr
    workflow_version: int | None = Field(default=None, ge=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    requested_by: NonEmptyStr = Field(
        description="User id, or the automation id when an automation asked for the run."
    )


class _RunEvent(Payload):
    """What every run event carries. `step` is the step the run is at."""

    run_id: NonEmptyStr
    org_id: NonEmptyStr
    workflow_key: NonEmptyStr
    workflow_version: int = Field(ge=1)
    step: str | None = None


class WorkflowRunStarted(_RunEvent):
    """`stayops.workflow.run.started`: a run began; `request_id` names the request it
    answers, if any."""

    status: Literal[RunStatus.RUNNING] = RunStatus.RUNNING
    parameters: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None
    started_by: str | None = None


class WorkflowRunWaiting(_RunEvent):
    """`stayops.workflow.run.waiting`: the run is parked until a task finishes, an
    event arrives or a durable timer fires; the field matching `waiting_for` says which."""

    status: Literal[RunStatus.WAITING] = RunStatus.WAITING
    waiting_for: WaitKind
    task_id: str | None = None
    event_type: str | None = None
    wake_at: datetime | None = None

    @model_validator(mode="after")
    def _names_what_it_waits_for(self) -> Self:
        missing = {
            WaitKind.TASK: self.task_id is None,
            WaitKind.EVENT: self.event_type is None,
            WaitKind.TIMER: self.wake_at is None,
            WaitKind.RUNS: False,
        }[self.waiting_for]
        if missing:
            field = {"task": "task_id", "event": "event_type", "timer": "wake_at"}[self.waiting_for]
            raise ValueError(f"a run waiting for a {self.waiting_for} needs {field}")
        return self


class WorkflowRunCompleted(_RunEvent):
    """`stayops.workflow.run.completed`: the run reached its end."""

    status: Literal[RunStatus.COMPLETED] = RunStatus.COMPLETED
    result: dict[str, Any] = Field(default_factory=dict)


class WorkflowRunFailed(_RunEvent):
    """`stayops.workflow.run.failed`: the run stopped at `step`. `compensated` is False
    when compensation could not finish: the run needs attention (its `status` says so)."""

    status: Literal[RunStatus.FAILED, RunStatus.NEEDS_ATTENTION] = RunStatus.FAILED
    reason: NonEmptyStr
    compensated: bool


class WorkflowRunCancelled(_RunEvent):
    """`stayops.workflow.run.cancelled`: someone stopped the run."""

    status: Literal[RunStatus.CANCELLED] = RunStatus.CANCELLED
    cancelled_by: NonEmptyStr
    reason: str | None = None
