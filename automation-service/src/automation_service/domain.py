"""Automations, their executions and the automated work waiting for the action
registry: what they are and which assignments are automation's. Pure: no I/O, no
framework."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stayops_kit.errors import InvalidRequest, NotFound
from stayops_schemas.events.automations import AutomationType, ExecutionOutcome
from stayops_schemas.events.tasks import TaskAssigned, TaskType


class AutomationNotFound(NotFound):
    def __init__(self, automation_id: str) -> None:
        super().__init__(f"automation {automation_id} does not exist in your organisation")


class InvalidTrigger(InvalidRequest):
    title = "Invalid trigger"


@dataclass(frozen=True)
class Automation:
    """Something that fires on its own: on a schedule (`cron` in `timezone`), on an
    event (`event_type`), or when a condition over an event holds (`condition`).
    `action` says what a firing does, e.g. request a run of a workflow."""

    id: str
    org_id: str
    name: str
    kind: AutomationType
    is_active: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    cron: str | None = None
    timezone: str | None = None
    event_type: str | None = None
    condition: dict[str, Any] | None = None
    action: dict[str, Any] = field(default_factory=dict)


def check_trigger(
    kind: AutomationType,
    *,
    cron: str | None,
    timezone: str | None,
    event_type: str | None,
    condition: dict[str, Any] | None,
) -> None:
    """Each kind names exactly what makes it fire, and nothing that would not. The
    cron expression itself is checked by the scheduler's cron library."""
    if kind is AutomationType.SCHEDULED:
        if not cron or not timezone:
            raise InvalidTrigger("a scheduled automation needs a cron expression and a time zone")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidTrigger(
                f"unknown time zone {timezone!r}: use an IANA name such as 'Europe/Lisbon'"
            ) from exc
        if event_type is not None or condition is not None:
            raise InvalidTrigger("a scheduled automation fires on its schedule, not on an event")
        return
    if cron is not None or timezone is not None:
        raise InvalidTrigger(f"a {kind.value} automation fires on an event; it has no schedule")
    if not event_type:
        raise InvalidTrigger(f"a {kind.value} automation needs the event type it listens to")
    if kind is AutomationType.CONDITIONAL and not condition:
        raise InvalidTrigger("a conditional automation needs the condition that must hold")
    if kind is AutomationType.EVENT and condition is not None:
        raise InvalidTrigger("an event automation fires on every matching event; use a "
                             "conditional automation to add a condition")


@dataclass(frozen=True)
class Execution:
    """One firing of an automation; `outcome` is None while it runs."""

    id: str
    automation_id: str
    org_id: str
    started_at: datetime
    finished_at: datetime | None = None
    outcome: ExecutionOutcome | None = None
    error: str | None = None


@dataclass(frozen=True)
class QueuedTask:
    """An `automated` task assigned to automation, waiting for the action registry."""

    task_id: str
    org_id: str
    title: str
    data: dict[str, Any]
    received_at: datetime
    workflow_run_id: str | None = None
    workflow_step: str | None = None


def queued_task(event: TaskAssigned, received_at: datetime) -> QueuedTask | None:
    """The work an assignment gives automation: only `automated` tasks are its to do;
    people and AI agents do the others."""
    if event.task_type is not TaskType.AUTOMATED:
        return None
    return QueuedTask(
        task_id=event.task_id,
        org_id=event.org_id,
        title=event.title,
        data=event.data,
        received_at=received_at,
        workflow_run_id=event.workflow_run_id,
        workflow_step=event.workflow_step,
    )
