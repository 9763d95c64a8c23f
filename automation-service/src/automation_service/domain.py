"""Automations, their schedules and executions, the actions of automated tasks and
the notifications they leave: what they are and how they change. Pure: no I/O, no
framework."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from stayops_kit import expressions
from stayops_kit.errors import InvalidRequest, NotFound
from stayops_schemas.events.automations import AutomationType, ExecutionOutcome
from stayops_schemas.events.tasks import SIDE_EFFECTING_ACTIONS, WORKFLOW_CREATOR, TaskAssigned, TaskType
from stayops_schemas.guardrails import PriceRefusal


class AutomationNotFound(NotFound):
    code = "automation-not-found"

    def __init__(self, automation_id: str) -> None:
        super().__init__(f"automation {automation_id} does not exist in your organisation")


class InvalidTrigger(InvalidRequest):
    code = "invalid-trigger"
    title = "Invalid trigger"


class InvalidAction(InvalidRequest):
    code = "invalid-action"
    title = "Invalid action"


@dataclass(frozen=True)
class Automation:
    """Something that fires on its own: on a schedule (`cron` in `timezone`), on an
    event (`event_type`, the `on:` type or pattern), or when a condition over an
    event holds (`condition`). `action` says what a scheduled firing does, e.g.
    request a run of a workflow; an event automation runs its `actions` when its
    `filter` holds, once per `dedupe_key` and at most once per `debounce_s` per
    `debounce_key`, planning local times in the listing's zone or `timezone`."""

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
    next_fire_at: datetime | None = None
    filter: str | None = None
    dedupe_key: str | None = None
    debounce_s: int = 0
    debounce_key: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    overlap: OverlapPolicy = field(default_factory=lambda: OverlapPolicy.SKIP)
    catch_up_s: int | None = None
    # A conditional automation's last evaluation: it fires when this goes false -> true.
    condition_held: bool | None = None

    @property
    def is_scheduled(self) -> bool:
        return self.kind is AutomationType.SCHEDULED

    def first_fire_after(self, now: datetime) -> datetime | None:
        if self.kind is AutomationType.CONDITIONAL:
            return now  # a condition is first checked at once
        if not self.is_scheduled or self.cron is None or self.timezone is None:
            return None
        return next_fire_time(self.cron, self.timezone, now)

    def paused(self, at: datetime) -> Automation:
        """A paused schedule owes nothing for the time it was paused."""
        return replace(self, is_active=False, next_fire_at=None, updated_at=at)

    def resumed(self, at: datetime, now: datetime) -> Automation:
        """Resuming schedules the next time after `now` (database clock)."""
        if self.is_active:
            return self
        return replace(self, is_active=True, next_fire_at=self.first_fire_after(now), updated_at=at)

    def due_firing(self, now: datetime) -> DueFiring | None:
        if self.next_fire_at is None or self.cron is None or self.timezone is None:
            return None
        return due_firing(self.cron, self.timezone, self.next_fire_at, now)


def check_trigger(
    kind: AutomationType,
    *,
    cron: str | None,
    timezone: str | None,
    event_type: str | None,
    condition: dict[str, Any] | None,
) -> None:
    """Each kind names exactly what makes it fire, and nothing that would not. The
    cron expression itself is checked by the cron library."""
    if kind is AutomationType.SCHEDULED:
        if not cron or not timezone:
            raise InvalidTrigger("a scheduled automation needs a cron expression and a time zone")
        if not croniter.is_valid(cron):
            raise InvalidTrigger(
                f"invalid cron expression {cron!r}: use five fields, e.g. '0 9 * * SUN' "
                "for Sundays at 09:00"
            )
        _check_zone(timezone)
        if event_type is not None or condition is not None:
            raise InvalidTrigger("a scheduled automation fires on its schedule, not on an event")
        return
    if cron is not None:
        raise InvalidTrigger(f"a {kind.value} automation fires on an event; it has no schedule")
    if timezone is not None:
        _check_zone(timezone)
    if kind is AutomationType.CONDITIONAL:
        if not condition:
            raise InvalidTrigger("a conditional automation needs the condition that must hold")
        ConditionCheck.of(condition)
        return
    if not event_type:
        raise InvalidTrigger(f"a {kind.value} automation needs the event type it listens to")
    if kind is AutomationType.EVENT and condition is not None:
        raise InvalidTrigger("an event automation takes a `filter` over the event, not a `condition` "
                             "(conditions are for conditional automations)")


def _check_zone(timezone: str) -> None:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidTrigger(
            f"unknown time zone {timezone!r}: use an IANA name such as 'Europe/Lisbon'"
        ) from exc


class ExecutionTrigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    EVENT = "event"
    CONDITION = "condition"


class RecordedOutcome(StrEnum):
    """How an execution ended, as recorded: the outcomes `stayops.automation.executed`
    announces, and `skipped` — an event the automation matched but did not act on
    (its filter was false, a debounce window dropped it), kept so "why did it not
    fire?" has an answer. A skipped execution is never announced and is neither a
    success nor a failure in the metrics."""

    SUCCESS = ExecutionOutcome.SUCCESS.value
    FAILURE = ExecutionOutcome.FAILURE.value
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Execution:
    """One firing of an automation; `outcome` is None while it runs. A scheduled
    firing names the time it was due (`scheduled_for`, unique per automation) and how
    many older missed times it stands for (`skipped_runs`, see `due_firing`). An
    event firing names its event, its `dedupe_key` (unique per automation), what
    its filter evaluated to and what each action did (`action_outcomes`)."""

    id: str
    automation_id: str
    org_id: str
    started_at: datetime
    finished_at: datetime | None = None
    outcome: RecordedOutcome | None = None
    error: str | None = None
    scheduled_for: datetime | None = None
    trigger: ExecutionTrigger = ExecutionTrigger.SCHEDULE
    skipped_runs: int = 0
    event_id: str | None = None
    event_type: str | None = None
    dedupe_key: str | None = None
    debounce_key: str | None = None
    filter_value: Any = None
    action_outcomes: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None
    run_status: RunStatus | None = None
    reason: str | None = None  # why a skipped execution did not act

    @property
    def duration_ms(self) -> int | None:
        if self.finished_at is None:
            return None
        return max(0, int((self.finished_at - self.started_at) / timedelta(milliseconds=1)))


@dataclass(frozen=True)
class ExecutionStats:
    """How an automation has been doing: its last run and the share of finished runs
    that succeeded (None before the first one finished)."""

    runs: int
    successes: int
    failures: int
    last_run: Execution | None
    skipped: int = 0
    # The same counts over the last days (STATS_WINDOWS_DAYS), newest window first.
    windows: list[WindowStats] = field(default_factory=list)

    @property
    def success_rate(self) -> float | None:
        finished = self.successes + self.failures
        return None if finished == 0 else self.successes / finished


STATS_WINDOWS_DAYS = (7, 30)


@dataclass(frozen=True)
class WindowStats:
    """Runs started in the last `days` days and how they ended."""

    days: int
    runs: int
    successes: int
    failures: int
    skipped: int = 0

    @property
    def success_rate(self) -> float | None:
        finished = self.successes + self.failures
        return None if finished == 0 else self.successes / finished


# --- Schedules ---------------------------------------------------------------

# Counting missed times stops here: a per-minute schedule down for a month would
# otherwise walk tens of thousands of times just to report a number.
MAX_COUNTED_MISSED_RUNS = 1000


def next_fire_time(cron: str, timezone: str, after: datetime) -> datetime:
    """The first time strictly after `after` that `cron` names, read as wall-clock
    time in `timezone` (so "0 9 * * SUN" stays 09:00 across DST changes), in UTC.

    Each wall-clock time fires once: on the day the clock goes back, the repeated
    hour's times already fired, so "30 1 * * *" in New York fires once on
    2025-11-02, not at 01:30 EDT and again at 01:30 EST. On the day the clock goes
    forward, a time inside the gap fires once, just after it."""
    local = after.astimezone(ZoneInfo(timezone))
    fire: datetime = croniter(cron, local).get_next(datetime)
    while fire.replace(tzinfo=None) <= local.replace(tzinfo=None):
        fire = croniter(cron, fire).get_next(datetime)
    return fire.astimezone(ZoneInfo("UTC"))


@dataclass(frozen=True)
class DueFiring:
    """What the scheduler does for an automation that is due: fire once for
    `scheduled_for`, then wait for `next_fire_at`."""

    scheduled_for: datetime
    skipped_runs: int
    next_fire_at: datetime


def due_firing(cron: str, timezone: str, next_fire_at: datetime, now: datetime) -> DueFiring | None:
    """The firing owed at `now` by an automation due at `next_fire_at`, or None when
    it is not due yet.

    Missed-run policy (the service was down, or the scheduler fell behind): fire ONCE,
    for the most recent scheduled time at or before `now`, and skip the older missed
    times; `skipped_runs` says how many were skipped (counted up to
    MAX_COUNTED_MISSED_RUNS). A weekly price run missed for three weeks is worth one
    run on today's data, not three on the same data."""
    if next_fire_at > now:
        return None
    scheduled_for = next_fire_at
    skipped = 0
    following = next_fire_time(cron, timezone, scheduled_for)
    while following <= now and skipped < MAX_COUNTED_MISSED_RUNS:
        scheduled_for, skipped = following, skipped + 1
        following = next_fire_time(cron, timezone, scheduled_for)
    if following <= now:  # too many to count: jump straight to the latest due time
        local_now = now.astimezone(ZoneInfo(timezone))
        latest: datetime = croniter(cron, local_now + timedelta(seconds=1)).get_prev(datetime)
        scheduled_for = latest.astimezone(ZoneInfo("UTC"))
        following = next_fire_time(cron, timezone, scheduled_for)
    return DueFiring(scheduled_for=scheduled_for, skipped_runs=skipped, next_fire_at=following)


@dataclass(frozen=True)
class StartWorkflow:
    """The action of an automation that asks workflow-service for a run: of a pinned
    `workflow_version`, or of the latest (None). `parameters` may hold `${...}`
    templates resolved when it fires (`${org.active_listings}`)."""

    workflow_key: str
    parameters: dict[str, Any]
    workflow_version: int | None = None

    @classmethod
    def of(cls, automation: Automation) -> StartWorkflow:
        action = automation.action
        if action.get("type") != "start_workflow" or not action.get("workflow_key"):
            raise InvalidAction(
                f"automation {automation.id} has action {action!r}; the only action an "
                "automation can fire is {'type': 'start_workflow', 'workflow_key': ...}"
            )
        version = action.get("workflow_version")
        if version is not None and (not isinstance(version, int) or version < 1):
            raise InvalidAction(f"workflow_version {version!r}: pin a published version (1, 2, ...) or omit "
                                "it for the latest")
        return cls(workflow_key=str(action["workflow_key"]), parameters=dict(action.get("parameters") or {}),
                   workflow_version=version)


# --- Schedule policies -------------------------------------------------------------


class OverlapPolicy(StrEnum):
    """What a schedule does when its previous run has not ended: `skip` this time
    (the default), keep one firing `buffer_one` until the run ends, or `allow` runs
    side by side."""

    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    ALLOW = "allow"


class RunStatus(StrEnum):
    """How the run a firing asked for stands, as workflow-service announces it."""

    BUFFERED = "buffered"  # waiting for the previous run to end (overlap buffer_one)
    REQUESTED = "requested"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


OPEN_RUN_STATUSES = frozenset({RunStatus.REQUESTED, RunStatus.RUNNING, RunStatus.WAITING})


@dataclass(frozen=True)
class AwaitedRun:
    """A run an execution asked for (`request_id`) and waits on: an execution that
    started workflows succeeds when all of them completed, fails when one failed
    or was cancelled — not when it asked for them (the request may yet be refused,
    the run may fail at its third step)."""

    org_id: str
    request_id: str
    execution_id: str
    run_id: str | None = None
    status: RunStatus = RunStatus.REQUESTED
    reason: str | None = None

    @property
    def ended(self) -> bool:
        return self.status not in OPEN_RUN_STATUSES


def with_run_status(outcomes: list[dict[str, Any]], run: AwaitedRun) -> list[dict[str, Any]]:
    """The execution's action outcomes, the one that asked for `run` saying how the
    run stands now (`running`, `completed`, `failed: <reason>`...)."""
    def updated(outcome: dict[str, Any]) -> dict[str, Any]:
        if outcome.get("request_id") != run.request_id:
            return outcome
        changed = {**outcome, "outcome": run.status.value, "run_id": run.run_id}
        if run.reason:
            changed["detail"] = run.reason
        return changed

    return [updated(outcome) for outcome in outcomes]


def runs_verdict(runs: list[AwaitedRun]) -> str | None:
    """Why the runs of an execution, all ended, make it a failure; None when every
    one of them completed."""
    unsuccessful = [run for run in runs if run.status is not RunStatus.COMPLETED]
    if not unsuccessful:
        return None
    return "; ".join(f"start_workflow: run {run.run_id} {run.status.value}"
                     + (f": {run.reason}" if run.reason else "") for run in unsuccessful)


class FiringDecision(StrEnum):
    FIRE = "fire"
    BUFFER = "buffer"
    SKIP = "skip"


def overlap_decision(policy: OverlapPolicy, *, open_runs: int, buffered: int) -> FiringDecision:
    """Fire, buffer or skip a scheduled time, given the runs of earlier firings that
    have not ended and the firings already buffered."""
    if open_runs == 0 or policy is OverlapPolicy.ALLOW:
        return FiringDecision.FIRE
    if policy is OverlapPolicy.BUFFER_ONE and buffered == 0:
        return FiringDecision.BUFFER
    return FiringDecision.SKIP


def missed_beyond_window(scheduled_for: datetime, now: datetime, catch_up_s: int | None) -> bool:
    """A time missed longer ago than the catch-up window is not run late (it is
    recorded as skipped); no window: a missed time always runs, once."""
    return catch_up_s is not None and now - scheduled_for > timedelta(seconds=catch_up_s)


# --- Automated tasks -----------------------------------------------------------

AUTOMATION_ASSIGNEE = "automation"


class ActionStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # Its task was withdrawn (the run was cancelled) before the action was done.
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ActionFinish:
    """How an action ended: `error` is None on success."""

    result: dict[str, Any]
    error: str | None = None

    @property
    def outcome(self) -> ExecutionOutcome:
        return ExecutionOutcome.SUCCESS if self.error is None else ExecutionOutcome.FAILURE


@dataclass(frozen=True)
class AutomatedAction:
    """The action of one `automated` task assigned to automation. Actions that ask
    another service (a sync, a price update) stay `pending` until it answers with the
    task id as request id; `awaiting` names the listings a price update waits for and
    `answers` what each said (None: applied, else the reason it failed)."""

    task_id: str
    org_id: str
    action: str
    data: dict[str, Any]
    received_at: datetime
    status: ActionStatus = ActionStatus.PENDING
    created_by: str | None = None
    workflow_run_id: str | None = None
    workflow_step: str | None = None
    correlation_id: str | None = None
    awaiting: list[str] = field(default_factory=list)
    answers: dict[str, str | None] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    finished_at: datetime | None = None

    @property
    def is_pending(self) -> bool:
        return self.status is ActionStatus.PENDING

    @property
    def refusal(self) -> str | None:
        """Why automation will not do this action, or None: an action with side effects
        (see SIDE_EFFECTING_ACTIONS) is done only for a task a workflow run requested."""
        if self.action not in SIDE_EFFECTING_ACTIONS:
            return None
        if self.created_by != WORKFLOW_CREATOR or self.workflow_run_id is None:
            return (f"action {self.action!r} changes the outside world and is done only for a task a "
                    f"workflow run requested; task {self.task_id} was created by "
                    f"{self.created_by or 'an unknown creator'} outside any workflow run: refused, "
                    "nothing published")
        return None

    def cancelled(self, reason: str, at: datetime) -> AutomatedAction:
        return replace(self, status=ActionStatus.CANCELLED, error=f"cancelled: {reason}", finished_at=at)

    def finished(self, finish: ActionFinish, at: datetime) -> AutomatedAction:
        status = ActionStatus.SUCCEEDED if finish.error is None else ActionStatus.FAILED
        return replace(self, status=status, result=finish.result, error=finish.error, finished_at=at)

    def price_answered(self, listing_id: str, failure: str | None) -> AutomatedAction:
        """Record one listing's answer; the first answer per listing counts."""
        if listing_id in self.answers:
            return self
        return replace(self, answers={**self.answers, listing_id: failure})

    def prices_outcome(self) -> ActionFinish | None:
        """None while a listing has not answered; then success, or a failure naming
        every listing whose prices were not applied."""
        if any(listing not in self.answers for listing in self.awaiting):
            return None
        failed = {listing: reason for listing, reason in self.answers.items() if reason is not None}
        applied = [listing for listing in self.awaiting if self.answers.get(listing) is None]
        result = {"applied": applied, "failed": failed}
        if not failed:
            return ActionFinish(result)
        named = "; ".join(f"{listing}: {reason}" for listing, reason in sorted(failed.items()))
        return ActionFinish(result, error=f"prices not applied for {len(failed)} listing(s): {named}")


def automated_action(event: TaskAssigned, received_at: datetime, correlation_id: str | None) -> AutomatedAction | None:
    """The action an assignment gives automation: only `automated` tasks assigned to
    the system user `automation` are its to do; people and AI agents do the others."""
    if event.task_type is not TaskType.AUTOMATED or event.assigned_to != AUTOMATION_ASSIGNEE:
        return None
    return AutomatedAction(
        task_id=event.task_id,
        org_id=event.org_id,
        action=str(event.data.get("action") or ""),
        data=event.data,
        received_at=received_at,
        created_by=event.created_by,
        workflow_run_id=event.workflow_run_id,
        workflow_step=event.workflow_step,
        correlation_id=correlation_id,
    )


def refused_prices(refusals: list[PriceRefusal]) -> ActionFinish:
    """A publish the guardrails refused: every refused night with its reason, in the
    result and the error; nothing is published (and nothing clamped)."""
    named = "; ".join(f"{r.listing_id} {r.date} at {r.price}: {r.reason}" for r in refusals)
    return ActionFinish({"refused": [r.as_dict() for r in refusals]},
                        error=f"{len(refusals)} night(s) refused by the price guardrails, nothing "
                              f"published: {named}")


def mixed_currencies(nights: list[dict[str, Any]]) -> list[PriceRefusal]:
    """Nights of a listing in a currency other than the listing's first night's: each
    listing keeps its own currency, never another listing's or a second one."""
    first: dict[str, str] = {}
    refused = []
    for night in nights:
        listing, currency = str(night["listing_id"]), str(night["currency"])
        if first.setdefault(listing, currency) != currency:
            refused.append(PriceRefusal(listing, str(night["date"]), str(night["price"]),
                                        f"listing {listing} is priced in {first[listing]} in the same "
                                        f"publish, not {currency}"))
    return refused


@dataclass(frozen=True)
class Notification:
    """A message left by a `notify` action for one user, for every member of a role,
    or both."""

    id: str
    org_id: str
    user_id: str | None
    subject: str
    body: str
    created_at: datetime
    task_id: str | None = None
    role_id: str | None = None


# --- Conditions ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionCheck:
    """A conditional automation's condition: `expression` over the org's read model,
    evaluated every `every_s` seconds; the metrics cover the next `window_days`
    nights: `occupancy` (booked nights over available nights of the active
    listings, 0..1), `booked_nights`, `available_nights`, `listings`. E.g.
    `{"expression": "occupancy < 0.5", "window_days": 14, "every_s": 3600}`."""

    expression: str
    every_s: int = 3600
    window_days: int = 14

    @classmethod
    def of(cls, condition: dict[str, Any]) -> ConditionCheck:
        unknown = set(condition) - {"expression", "every_s", "window_days"}
        expression = condition.get("expression")
        every_s, window_days = condition.get("every_s", 3600), condition.get("window_days", 14)
        if unknown or not isinstance(expression, str) or not expression.strip():
            raise InvalidTrigger("a condition is {'expression': 'occupancy < 0.5', 'window_days': 14, "
                                 f"'every_s': 3600}}, not {condition!r}")
        if (not isinstance(every_s, int) or every_s < 1 or not isinstance(window_days, int)
                or not 1 <= window_days <= 365):
            raise InvalidTrigger("a condition is checked every 1 s or more (every_s) over 1..365 nights "
                                 "(window_days)")
        expressions.check(expression)
        return cls(expression=expression, every_s=every_s, window_days=window_days)


def occupancy_metrics(booked_nights: int, listings: int, window_days: int) -> dict[str, Any]:
    """What a condition reads about the next `window_days` nights."""
    available = listings * window_days
    return {"occupancy": booked_nights / available if available else 0.0, "booked_nights": booked_nights,
            "available_nights": available, "listings": listings, "window_days": window_days}


def condition_fires(held_before: bool | None, holds_now: bool) -> bool:
    """Fire once per transition from false to true: a condition already true when
    first checked counts as a transition; one that stays true does not fire again."""
    return holds_now and not held_before
