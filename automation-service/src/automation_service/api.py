"""automation-service REST routes: parse, call a handler, shape the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from fastapi import APIRouter, Body, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from automation_service import handlers, store
from automation_service.domain import (
    Automation,
    Execution,
    ExecutionStats,
    ExecutionTrigger,
    Notification,
    OverlapPolicy,
    RecordedOutcome,
    RunStatus,
)
from automation_service.reactions import EventAction
from stayops_kit.api import CurrentCaller, Runtime
from stayops_kit.auth import Caller
from stayops_kit.fields import ExactNumbers
from stayops_kit.permissions import Permission, require
from stayops_kit.problems import problem_responses
from stayops_schemas.events.automations import AutomationType

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


class StartWorkflowIn(ExactNumbers):
    model_config = ConfigDict(extra="forbid")

    type: Literal["start_workflow"]
    workflow_key: str = Field(pattern="^[a-z0-9][a-z0-9-]{0,62}$", examples=["dynamic-pricing"])
    workflow_version: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                         description="A pinned version; null: the latest.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="May hold `${...}` templates resolved "
                                       "when it fires, e.g. `${org.active_listings}`.")


class DebounceIn(ExactNumbers):
    model_config = ConfigDict(extra="forbid")

    seconds: int = Field(ge=1, le=7 * 24 * 3600)
    key: Text | None = Field(default=None, description="Template of the key debounced per; default the "
                             "event type.", examples=["${data.listing_id}"])


class ScheduledAutomationIn(ExactNumbers):
    """Fires on its schedule: `cron` (five fields) in `timezone`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[AutomationType.SCHEDULED]
    name: str = Field(min_length=1, max_length=200)
    description: Text | None = None
    cron: str = Field(pattern=CRON_PATTERN, max_length=200, examples=["0 9 * * SUN"])
    timezone: TimeZone
    action: StartWorkflowIn
    overlap: OverlapPolicy = Field(default=OverlapPolicy.SKIP, description="When the previous run has not "
                                   "ended: skip this time, buffer one firing until it ends, or allow both.")
    catch_up_s: int | None = Field(default=None, ge=0, le=366 * 24 * 3600,
                                   description="A time missed longer ago than this is skipped (and "
                                   "recorded), not run late; null: a missed time runs once.")


class EventAutomationIn(ExactNumbers):
    """Fires on each event `on` names (a type or a pattern such as `reservation.*`,
    in canonical form whatever the platform) whose `filter` holds, once per
    `dedupe_key`, at most once per `debounce` window, running its `actions`;
    `timezone` is the org's zone for local times of listings without one."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Literal[AutomationType.EVENT]
    name: str = Field(min_length=1, max_length=200)
    description: Text | None = None
    event_type: str = Field(alias="on", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.*-]+$",
                            examples=["reservation.*", "review.created"])
    filter: Text | None = Field(default=None, examples=["data.rating <= 3"])
    dedupe_key: Text | None = Field(default=None, examples=["${data.review_id}"])
    debounce: DebounceIn | None = None
    timezone: TimeZone | None = None
    actions: list[EventAction] = Field(min_length=1, max_length=20)


class ConditionIn(ExactNumbers):
    model_config = ConfigDict(extra="forbid")

    expression: str = Field(min_length=1, max_length=1000, examples=["occupancy < 0.5"])
    window_days: int = Field(default=14, ge=1, le=365)
    every_s: int = Field(default=3600, ge=1, le=31 * 24 * 3600)


class ConditionalAutomationIn(ExactNumbers):
    """Checks `condition` over the next nights' occupancy every `every_s` seconds and
    runs its `actions` once each time it turns from false to true."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[AutomationType.CONDITIONAL]
    name: str = Field(min_length=1, max_length=200)
    description: Text | None = None
    condition: ConditionIn
    timezone: TimeZone | None = None
    actions: list[EventAction] = Field(min_length=1, max_length=20)


AutomationIn = Annotated[ScheduledAutomationIn | EventAutomationIn | ConditionalAutomationIn,
                         Field(discriminator="kind")]


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
    filter: str | None
    dedupe_key: str | None
    debounce_s: int
    debounce_key: str | None
    actions: list[dict[str, Any]]
    overlap: OverlapPolicy
    catch_up_s: int | None
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
    outcome: RecordedOutcome | None = Field(description="null while it runs (a run it started has not ended); "
                                            "skipped: the event matched but did not fire, see reason.")
    error: str | None
    reason: str | None = Field(default=None, description="Why a skipped execution did not fire.")
    event_id: str | None = Field(default=None, description="The event that fired it.")
    event_type: str | None = None
    dedupe_key: str | None = None
    filter_value: Any = Field(default=None, description="What the filter evaluated to.")
    action_outcomes: list[dict[str, Any]] = Field(default_factory=list,
                                                  description="What each action did.")
    run_id: str | None = Field(default=None, description="The workflow run it started.")
    run_status: RunStatus | None = None

    @classmethod
    def of(cls, execution: Execution) -> ExecutionOut:
        return cls.model_validate(execution, from_attributes=True)


class ExecutionList(BaseModel):
    items: list[ExecutionOut]


class WindowOut(BaseModel):
    days: int
    runs: int
    successes: int
    failures: int
    skipped: int = Field(default=0, description="Matched events it did not fire for (not runs, not failures).")
    success_rate: float | None


class StatsOut(BaseModel):
    runs: int
    successes: int
    failures: int
    skipped: int = Field(default=0, description="Matched events it did not fire for (not runs, not failures).")
    success_rate: float | None = Field(description="Successes over finished runs; null before the first.")
    last_run: ExecutionOut | None
    windows: list[WindowOut] = Field(default_factory=list, description="The same over the last 7 and 30 days.")

    @classmethod
    def of(cls, stats: ExecutionStats) -> StatsOut:
        return cls(runs=stats.runs, successes=stats.successes, failures=stats.failures, skipped=stats.skipped,
                   success_rate=stats.success_rate,
                   last_run=ExecutionOut.of(stats.last_run) if stats.last_run else None,
                   windows=[WindowOut(days=w.days, runs=w.runs, successes=w.successes, failures=w.failures,
                                      skipped=w.skipped, success_rate=w.success_rate) for w in stats.windows])


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
    new = handlers.NewAutomation(
        name=body.name, description=body.description, kind=body.kind,
        cron=body.cron if isinstance(body, ScheduledAutomationIn) else None, timezone=body.timezone,
        event_type=body.event_type if isinstance(body, EventAutomationIn) else None,
        action=body.action.model_dump() if isinstance(body, ScheduledAutomationIn) else {},
        filter=body.filter if isinstance(body, EventAutomationIn) else None,
        dedupe_key=body.dedupe_key if isinstance(body, EventAutomationIn) else None,
        debounce_s=body.debounce.seconds if isinstance(body, EventAutomationIn) and body.debounce else 0,
        debounce_key=body.debounce.key if isinstance(body, EventAutomationIn) and body.debounce else None,
        actions=[] if isinstance(body, ScheduledAutomationIn)
        else [action.model_dump(mode="json", exclude_none=True) for action in body.actions],
        overlap=body.overlap if isinstance(body, ScheduledAutomationIn) else OverlapPolicy.SKIP,
        catch_up_s=body.catch_up_s if isinstance(body, ScheduledAutomationIn) else None,
        condition=body.condition.model_dump() if isinstance(body, ConditionalAutomationIn) else None,
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
