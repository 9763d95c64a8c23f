"""Event automations, pure: which automation an event wakes (`on:` type or pattern,
`filter:`), what identifies a firing (`dedupe_key`, `debounce`), and the plan of its
actions — create a task (due at a local time of the listing), cancel the tasks
linked to the same thing, start a workflow, notify. No I/O: `handlers` carries the
plans out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from automation_service.domain import InvalidAction, InvalidTrigger
from stayops_kit import expressions
from stayops_kit.expressions import ExpressionError
from stayops_kit.fields import IsoDuration, IsoTime
from stayops_schemas.canonical import CanonicalEvent
from stayops_schemas.events.tasks import Priority, TaskType

UTC = ZoneInfo("UTC")
DEFAULT_DEDUPE_KEY = "${id}"
DEFAULT_DEBOUNCE_KEY = "${type}"


# --- What an automation says it does (stored as JSON, checked at creation) ----------


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: str | None = Field(default=None, description="An expression; the action runs only when it is true.",
                             examples=["type == 'reservation.cancelled'"])


class LocalTime(BaseModel):
    """A time on a day of the event, in the listing's time zone (the org's by
    default): `{date: "data.check_out", at: "11:00"}` is 11:00 on check-out day;
    `{date: "data.check_in", at: "15:00", offset: "PT2H"}` two hours after a 15:00
    check-in; `offset: "-P3D"` three days before. The offset moves the local wall
    clock, so "09:00 three days before" stays 09:00 across a DST change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date: str = Field(description="An expression giving a date or a date-time (ISO 8601).",
                      examples=["data.check_out"])
    at: IsoTime | None = Field(default=None, examples=["11:00"])
    offset: IsoDuration = Field(default=dt.timedelta(0), examples=["PT2H", "-P3D"])


class CreateTaskAction(_Action):
    """Ask task-service for a task linked to `link` (e.g. the reservation). The
    same `key` for the same link is one task: fired again, it moves to the new due
    time instead of being created twice."""

    type: Literal["create_task"]
    key: str = Field(min_length=1, max_length=100, examples=["cleaning"])
    link: str = Field(default=DEFAULT_DEDUPE_KEY, examples=["${data.reservation_id}"])
    title: str = Field(min_length=1, max_length=300)
    description: str | None = None
    task_type: TaskType = TaskType.MANUAL
    priority: Priority = Priority.MEDIUM
    assigned_to: str | None = None
    role_id: str | None = None
    department_id: str | None = None
    due: LocalTime | str | None = Field(default=None, description="A local time, or an expression "
                                        "giving an ISO 8601 date-time.")
    data: dict[str, Any] = Field(default_factory=dict)


class CancelTasksAction(_Action):
    """Cancel the open tasks earlier firings linked to `link` (all, or those `keys`)."""

    type: Literal["cancel_tasks"]
    link: str = Field(examples=["${data.reservation_id}"])
    keys: list[str] | None = None
    reason: str = "cancelled by automation"


class StartWorkflowAction(_Action):
    type: Literal["start_workflow"]
    workflow_key: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)


class NotifyAction(_Action):
    """Leave a notification for a user, for every member of a role, or both."""

    type: Literal["notify"]
    user_id: str | None = Field(default=None, min_length=1)
    role_id: str | None = Field(default=None, min_length=1, examples=["owner"])
    subject: str = Field(min_length=1)
    body: str = ""

    @model_validator(mode="after")
    def _names_someone(self) -> NotifyAction:
        if self.user_id is None and self.role_id is None:
            raise ValueError("a notification names a user_id, a role_id, or both")
        return self


EventAction = Annotated[CreateTaskAction | CancelTasksAction | StartWorkflowAction | NotifyAction,
                        Field(discriminator="type")]
_ACTIONS: TypeAdapter[list[EventAction]] = TypeAdapter(list[EventAction])


def parse_actions(raw: Sequence[Mapping[str, Any]]) -> list[EventAction]:
    """The stored actions, typed (they were checked when the automation was made)."""
    return _ACTIONS.validate_python(list(raw))


def check_event_automation(on: str, filter_: str | None, dedupe_key: str | None, debounce_key: str | None,
                           actions: Sequence[Mapping[str, Any]]) -> None:
    """Refuse, at creation, an automation that could not fire: no actions, actions
    of unknown shape, or an expression outside the language."""
    if not on.strip():
        raise InvalidTrigger("an event automation needs `on`: an event type or pattern, e.g. 'review.created'")
    if not actions:
        raise InvalidAction("an event automation needs at least one action")
    try:
        typed = parse_actions(actions)
    except ValidationError as exc:
        raise InvalidAction(f"invalid actions: {exc}") from exc
    if filter_ is not None:
        expressions.check(filter_)
    for template in (dedupe_key, debounce_key):
        expressions.check_template(template)
    for action in typed:
        if action.when is not None:
            expressions.check(action.when)
        expressions.check_template(action.model_dump(mode="json", exclude={"when", "due"}))
        if isinstance(action, CreateTaskAction) and isinstance(action.due, LocalTime):
            expressions.check(action.due.date)
        elif isinstance(action, CreateTaskAction):
            expressions.check_template(action.due)


# --- Which automations an event wakes ----------------------------------------------


def matches(pattern: str, event: CanonicalEvent) -> bool:
    """`on:` is an event type or a shell-style pattern (`listing.*`), matched against
    the canonical type and the platform's own (`hostaway.reservation.created`)."""
    names = [event.type] + ([event.platform_type] if event.platform_type else [])
    return any(fnmatchcase(name, pattern.strip()) for name in names)


def names_of(event: CanonicalEvent, listing: Mapping[str, Any] | None) -> dict[str, Any]:
    """What expressions see: the event (`type`, `id`, `data`, `platform`, ...) and the
    listing it is about (`listing.timezone`, `listing.title`; null if unknown)."""
    return {**event.as_names(), "listing": dict(listing) if listing else None}


def filter_value(filter_: str | None, names: Mapping[str, Any]) -> Any:
    return True if filter_ is None else expressions.evaluate(filter_, names)


def key_of(template: str | None, default: str, names: Mapping[str, Any], fallback: str) -> str:
    """A dedupe or debounce key; a template that renders empty falls back to `fallback`."""
    value = expressions.render(template or default, names)
    return fallback if value is None or value == "" else str(value)


# --- Local times --------------------------------------------------------------------


def zone_of(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ExpressionError(f"unknown time zone {name!r}") from exc


def local_instant(value: Any, at: dt.time | None, offset: dt.timedelta, zone: ZoneInfo) -> dt.datetime:
    """A wall-clock time in `zone` as a UTC instant. `value` is a date or a date-time
    (ISO text or object); a naive time is local. A local time that does not exist
    (skipped by a DST change) is read with the offset before the change, which puts
    it just after the gap; one that happens twice is its first occurrence."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value) if "T" in value else dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ExpressionError(f"{value!r} is not an ISO 8601 date or date-time") from exc
    if isinstance(value, dt.datetime):
        local = value.astimezone(zone).replace(tzinfo=None) if value.tzinfo else value
    elif isinstance(value, dt.date):
        local = dt.datetime.combine(value, dt.time(0, 0))
    else:
        raise ExpressionError(f"a due time needs a date, not {value!r}")
    if at is not None:
        local = dt.datetime.combine(local.date(), at.replace(tzinfo=None))
    local += offset
    instant = local.replace(tzinfo=zone, fold=0)
    # Round trip through UTC normalises a time inside a DST gap.
    return instant.astimezone(UTC).replace(microsecond=0)


# --- Plans --------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskPlan:
    key: str
    link: str
    title: str
    task_type: TaskType
    priority: Priority
    description: str | None
    assigned_to: str | None
    role_id: str | None
    department_id: str | None
    due_at: dt.datetime | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelPlan:
    link: str
    keys: list[str] | None
    reason: str


@dataclass(frozen=True)
class WorkflowPlan:
    workflow_key: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class NotifyPlan:
    user_id: str | None
    subject: str
    body: str
    role_id: str | None = None


@dataclass(frozen=True)
class NotPlanned:
    """An action that will not run: its `when` was false, or planning it failed."""

    action: str
    reason: str
    failed: bool


Plan = TaskPlan | CancelPlan | WorkflowPlan | NotifyPlan | NotPlanned


def _text(template: str | None, names: Mapping[str, Any]) -> str | None:
    if template is None:
        return None
    value = expressions.render(template, names)
    return None if value is None else str(value)


def _plan(action: EventAction, names: Mapping[str, Any], zone: ZoneInfo) -> Plan:
    if isinstance(action, CreateTaskAction):
        due_at: dt.datetime | None = None
        if isinstance(action.due, LocalTime):
            due_at = local_instant(expressions.evaluate(action.due.date, names), action.due.at,
                                   action.due.offset, zone)
        elif isinstance(action.due, str):
            due_at = local_instant(expressions.render(action.due, names), None, dt.timedelta(0), zone)
        link = _text(action.link, names)
        if not link:
            raise ExpressionError(f"the link {action.link!r} of task {action.key!r} is empty for this event")
        return TaskPlan(
            key=action.key, link=link, title=_text(action.title, names) or action.title,
            task_type=action.task_type, priority=action.priority,
            description=_text(action.description, names), assigned_to=_text(action.assigned_to, names),
            role_id=_text(action.role_id, names), department_id=_text(action.department_id, names),
            due_at=due_at, data=dict(expressions.render(action.data, names)),
        )
    if isinstance(action, CancelTasksAction):
        link = _text(action.link, names)
        if not link:
            raise ExpressionError(f"the link {action.link!r} is empty for this event")
        return CancelPlan(link=link, keys=action.keys, reason=_text(action.reason, names) or action.reason)
    if isinstance(action, StartWorkflowAction):
        return WorkflowPlan(workflow_key=action.workflow_key,
                            parameters=dict(expressions.render(action.parameters, names)))
    return NotifyPlan(user_id=_text(action.user_id, names) or action.user_id if action.user_id else None,
                      subject=_text(action.subject, names) or action.subject,
                      body=_text(action.body, names) or "",
                      role_id=_text(action.role_id, names) or action.role_id if action.role_id else None)


def plan_actions(actions: Sequence[EventAction], names: Mapping[str, Any], zone: ZoneInfo) -> list[Plan]:
    """Each action's plan for this event, in order; one that cannot be planned is
    `NotPlanned(failed=True)` with the reason, and the others still run."""
    plans: list[Plan] = []
    for action in actions:
        try:
            if action.when is not None and not expressions.evaluate(action.when, names):
                plans.append(NotPlanned(action.type, f"when {action.when!r} is false", failed=False))
                continue
            plans.append(_plan(action, names, zone))
        except ExpressionError as exc:
            plans.append(NotPlanned(action.type, str(exc), failed=True))
    return plans
