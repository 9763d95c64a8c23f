"""automation-service REST routes: parse, call a handler, shape the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from fastapi import APIRouter, Body, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from automation_service import handlers, store
from automation_service.domain import Automation, Execution, ExecutionStats, ExecutionTrigger, Notification
from stayops_kit.api import CurrentCaller, Runtime
from stayops_kit.auth import Caller
from stayops_kit.permissions import Permission, require
from stayops_kit.problems import problem_responses
from stayops_schemas.catalog import CATALOG
from stayops_schemas.events.automations import AutomationType, ExecutionOutcome

router = APIRouter(tags=["automations"])
notifications_router = APIRouter(tags=["notifications"])

Manager = Annotated[Caller, require(Permission.AUTOMATIONS_MANAGE)]


def _cron_field(value: str) -> str:
    """`*`, `*/step`, or a list of values: the schedules that always fire (no
    ranges that could be empty, days of month 1-28 so every month has them)."""
    return rf"(?:\*(?:/[1-9][0-9]?)?|{value}(?:,{value})*)"


_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
CRON_PATTERN = "^" + " ".join(_cron_field(v) for v in (
    "(?:[0-9]|[1-5][0-9])",  # minute
    "(?:[0-9]|1[0-9]|2[0-3])",  # hour
    "(?:[1-9]|1[0-9]|2[0-8])",  # day of month
    f"(?:[1-9]|1[0-2]|{_MONTHS})",  # month
    f"(?:[0-7]|{_DAYS})",  # day of week
)) + "$"

_ZONES = sorted(available_timezones())


def _known_zone(name: str) -> str:
    if name not in _ZONES:
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/Lisbon'")
    return name


TimeZone = Annotated[str, AfterValidator(_known_zone),
                     WithJsonSchema({"type": "string", "enum": _ZONES, "examples": ["Europe/Paris"]})]
Text = Annotated[str, Field(max_length=10_000)]


class StartWorkflowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["start_workflow"]
    workflow_key: str = Field(pattern="^[a-z0-9][a-z0-9-]{0,62}$", examples=["dynamic-pricing"])
    parameters: dict[str, Any] = Field(default_factory=dict)


class ScheduledAutomationIn(BaseModel):
    """Fires on its schedule: `cron` (five fields) in `timezone`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[AutomationType.SCHEDULED]
    name: str = Field(min_length=1, max_length=200)
    description: Text | None = None
    cron: str = Field(pattern=CRON_PATTERN, max_length=200, examples=["0 9 * * SUN"])
    timezone: TimeZone
    action: StartWorkflowIn


class EventAutomationIn(BaseModel):
    """Stored against an event type of the catalog (kept and listed; firing on
    events is not offered yet, so it never runs by itself)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[AutomationType.EVENT]
    name: str = Field(min_length=1, max_length=200)
    description: Text | None = None
    event_type: Literal[tuple(sorted(CATALOG))]  # type: ignore[valid-type]
    action: StartWorkflowIn


# Conditional automations are not accepted over REST: nothing evaluates conditions yet.
AutomationIn = Annotated[ScheduledAutomationIn | EventAutomationIn, Field(discriminator="kind")]


class AutomationOut(BaseModel):
    id: str
    org_id: str
    name: str
    description: str | None
    kind: AutomationType
    cron: str | None
    timezone: str | None
    event_type: str | None
    condition: dict[str, Any] | None
    action: dict[str, Any]
    is_active: bool
    next_fire_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, automation: Automation) -> AutomationOut:
        return cls.model_validate(automation, from_attributes=True)


class AutomationList(BaseModel):
    items: list[AutomationOut]


class ExecutionOut(BaseModel):
    id: str
    trigger: ExecutionTrigger
    scheduled_for: datetime | None
    skipped_runs: int = Field(description="Older missed scheduled times this run stands for (not run).")
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    outcome: ExecutionOutcome | None
    error: str | None

    @classmethod
    def of(cls, execution: Execution) -> ExecutionOut:
        return cls.model_validate(execution, from_attributes=True)


class ExecutionList(BaseModel):
    items: list[ExecutionOut]


class StatsOut(BaseModel):
    runs: int
    successes: int
    failures: int
    success_rate: float | None = Field(description="Successes over finished runs; null before the first.")
    last_run: ExecutionOut | None

    @classmethod
    def of(cls, stats: ExecutionStats) -> StatsOut:
        return cls(runs=stats.runs, successes=stats.successes, failures=stats.failures,
                   success_rate=stats.success_rate,
                   last_run=ExecutionOut.of(stats.last_run) if stats.last_run else None)


class AutomationDetail(AutomationOut):
    stats: StatsOut
    recent_executions: list[ExecutionOut]


class NotificationOut(BaseModel):
    id: str
    user_id: str | None
    role_id: str | None
    subject: str
    body: str
    task_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, notification: Notification) -> NotificationOut:
        return cls.model_validate(notification, from_attributes=True)


class NotificationList(BaseModel):
    items: list[NotificationOut]


@router.post("/automations", response_model=AutomationOut, status_code=201)
async def create_automation(body: Annotated[AutomationIn, Body()], caller: Manager,
                            runtime: Runtime) -> AutomationOut:
    scheduled = isinstance(body, ScheduledAutomationIn)
    new = handlers.NewAutomation(
        name=body.name, description=body.description, kind=body.kind,
        cron=body.cron if scheduled else None, timezone=body.timezone if scheduled else None,
        event_type=None if scheduled else body.event_type, action=body.action.model_dump(),
    )
    async with runtime.uow.begin() as uow:
        created = await handlers.create_automation(uow, caller, new)
    return AutomationOut.of(created)


@router.get("/automations", response_model=AutomationList)
async def list_automations(
    caller: CurrentCaller, runtime: Runtime, is_active: bool | None = None
) -> AutomationList:
    async with runtime.engine.connect() as conn:
        found = await store.list_automations(conn, caller.org_id, is_active=is_active)
    return AutomationList(items=[AutomationOut.of(a) for a in found])


@router.get("/automations/{automation_id}", response_model=AutomationDetail)
async def get_automation(automation_id: str, caller: CurrentCaller, runtime: Runtime) -> AutomationDetail:
    async with runtime.uow.begin() as uow:
        found = await handlers.get_automation(uow, caller, automation_id)
    return AutomationDetail(
        **AutomationOut.of(found.automation).model_dump(),
        stats=StatsOut.of(found.stats),
        recent_executions=[ExecutionOut.of(e) for e in found.recent_executions],
    )


@router.post("/automations/{automation_id}/pause", response_model=AutomationOut)
async def pause_automation(automation_id: str, caller: Manager, runtime: Runtime) -> AutomationOut:
    async with runtime.uow.begin() as uow:
        return AutomationOut.of(await handlers.pause_automation(uow, caller, automation_id))


@router.post("/automations/{automation_id}/resume", response_model=AutomationOut)
async def resume_automation(automation_id: str, caller: Manager, runtime: Runtime) -> AutomationOut:
    async with runtime.uow.begin() as uow:
        return AutomationOut.of(await handlers.resume_automation(uow, caller, automation_id))


@router.post("/automations/{automation_id}/run", response_model=ExecutionOut, status_code=202,
             responses=problem_responses(409))
async def run_automation_now(automation_id: str, caller: Manager, runtime: Runtime) -> ExecutionOut:
    async with runtime.uow.begin() as uow:
        return ExecutionOut.of(await handlers.run_automation_now(uow, caller, automation_id))


@router.get("/automations/{automation_id}/executions", response_model=ExecutionList)
async def list_executions(
    automation_id: str, caller: CurrentCaller, runtime: Runtime, limit: int = Query(50, ge=1, le=500)
) -> ExecutionList:
    async with runtime.uow.begin() as uow:
        found = await handlers.list_executions(uow, caller, automation_id, limit=limit)
    return ExecutionList(items=[ExecutionOut.of(e) for e in found])


@notifications_router.get("/notifications", response_model=NotificationList)
async def my_notifications(caller: CurrentCaller, runtime: Runtime) -> NotificationList:
    async with runtime.uow.begin() as uow:
        found = await handlers.my_notifications(uow, caller)
    return NotificationList(items=[NotificationOut.of(n) for n in found])
