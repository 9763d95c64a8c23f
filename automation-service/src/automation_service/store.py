"""automation-service tables (SQLAlchemy Core) and the queries on them; every query on
a tenant table goes through an `OrgScope`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from automation_service.domain import (
    STATS_WINDOWS_DAYS,
    ActionStatus,
    AutomatedAction,
    Automation,
    AwaitedRun,
    Execution,
    ExecutionStats,
    ExecutionTrigger,
    Notification,
    OverlapPolicy,
    RecordedOutcome,
    RunStatus,
    WindowStats,
)
from stayops_kit.tenancy import OrgScope, OrgTemplate
from stayops_schemas.events.automations import AutomationType

metadata = sa.MetaData()

automations = sa.Table(
    "automations",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("cron", sa.Text),
    sa.Column("timezone", sa.Text),
    sa.Column("event_type", sa.Text),
    sa.Column("condition", pg.JSONB),
    sa.Column("action", pg.JSONB, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("next_fire_at", sa.DateTime(timezone=True)),
    sa.Column("filter", sa.Text),
    sa.Column("dedupe_key", sa.Text),
    sa.Column("debounce_s", sa.Integer, nullable=False, server_default="0"),
    sa.Column("debounce_key", sa.Text),
    sa.Column("actions", pg.JSONB, nullable=False, server_default="[]"),
    sa.Column("overlap", sa.Text, nullable=False, server_default="skip"),
    sa.Column("catch_up_s", sa.Integer),
    sa.Column("condition_held", sa.Boolean),
    sa.CheckConstraint("kind IN ('scheduled', 'event', 'conditional')", name="automations_kind"),
)
# What an event looks up: the org's active event automations.
sa.Index("automations_org_active_event", automations.c.org_id,
         postgresql_where=sa.text("is_active AND kind = 'event'"))
sa.Index("automations_org_created", automations.c.org_id, automations.c.created_at, automations.c.id)
# What the scheduler and the event matcher will look up: active automations by kind/event.
sa.Index("automations_active_kind", automations.c.kind, automations.c.event_type,
         postgresql_where=automations.c.is_active)
# What the scheduler claims: active schedules by due time.
sa.Index("automations_due", automations.c.next_fire_at,
         postgresql_where=sa.text("is_active AND kind = 'scheduled'"))
# ... and conditions due for a check.
sa.Index("automations_conditions_due", automations.c.next_fire_at,
         postgresql_where=sa.text("is_active AND kind = 'conditional'"))

executions = sa.Table(
    "automation_executions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("automation_id", sa.Text, sa.ForeignKey("automations.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("outcome", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("scheduled_for", sa.DateTime(timezone=True)),
    sa.Column("trigger", sa.Text, nullable=False, server_default="schedule"),
    sa.Column("skipped_runs", sa.Integer, nullable=False, server_default="0"),
    sa.Column("event_id", sa.Text),
    sa.Column("event_type", sa.Text),
    sa.Column("dedupe_key", sa.Text),
    sa.Column("debounce_key", sa.Text),
    sa.Column("filter_value", pg.JSONB),
    sa.Column("action_outcomes", pg.JSONB, nullable=False, server_default="[]"),
    sa.Column("run_id", sa.Text),
    sa.Column("run_status", sa.Text),
    sa.Column("reason", sa.Text),
    sa.CheckConstraint("outcome IN ('success', 'failure', 'skipped')", name="automation_executions_outcome"),
    sa.CheckConstraint("trigger IN ('schedule', 'manual', 'event', 'condition')",
                       name="automation_executions_trigger"),
    # One execution per scheduled time: two schedulers, or a restart, cannot fire it twice.
    sa.UniqueConstraint("automation_id", "scheduled_for", name="automation_executions_once_per_time"),
    # One execution per dedupe key: a re-sent event fires once.
    sa.UniqueConstraint("automation_id", "dedupe_key", name="automation_executions_once_per_key"),
)
# What the overlap policy looks up: firings whose run has not ended, or that wait to fire.
sa.Index("automation_executions_open_runs", executions.c.automation_id, executions.c.run_status,
         postgresql_where=executions.c.run_status.in_(["buffered", "requested", "running", "waiting"]))
sa.Index("automation_executions_run", executions.c.org_id, executions.c.run_id,
         postgresql_where=executions.c.run_id.is_not(None))
# What a debounce looks up: the latest firing of an automation for a key.
sa.Index("automation_executions_debounce", executions.c.automation_id, executions.c.debounce_key,
         executions.c.started_at.desc(), postgresql_where=executions.c.debounce_key.is_not(None))
sa.Index("automation_executions_org_automation", executions.c.org_id, executions.c.automation_id,
         executions.c.started_at.desc())

# The runs an execution started and waits on, by the request that asked for each.
execution_runs = sa.Table(
    "automation_execution_runs",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("request_id", sa.Text, primary_key=True),
    sa.Column("execution_id", sa.Text, sa.ForeignKey("automation_executions.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
sa.Index("automation_execution_runs_unanswered", execution_runs.c.requested_at,
         postgresql_where=execution_runs.c.status == RunStatus.REQUESTED.value)
sa.Index("automation_execution_runs_run", execution_runs.c.org_id, execution_runs.c.run_id,
         postgresql_where=execution_runs.c.run_id.is_not(None))
sa.Index("automation_execution_runs_execution", execution_runs.c.execution_id)

automated_actions = sa.Table(
    "automated_actions",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("task_id", sa.Text, primary_key=True),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("data", pg.JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_by", sa.Text),
    sa.Column("workflow_run_id", sa.Text),
    sa.Column("workflow_step", sa.Text),
    sa.Column("correlation_id", sa.Text),
    sa.Column("awaiting", pg.JSONB, nullable=False),
    sa.Column("answers", pg.JSONB, nullable=False),
    sa.Column("result", pg.JSONB),
    sa.Column("error", sa.Text),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'cancelled')", name="automated_actions_status"),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text),
    sa.Column("role_id", sa.Text),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("task_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # A `notify` task redelivered or re-run notifies once.
    sa.UniqueConstraint("org_id", "task_id", name="notifications_once_per_task"),
    sa.CheckConstraint("user_id IS NOT NULL OR role_id IS NOT NULL", name="notifications_for_someone"),
)
sa.Index("notifications_org_user_created", notifications.c.org_id, notifications.c.user_id,
         notifications.c.created_at.desc())
sa.Index("notifications_org_role_created", notifications.c.org_id, notifications.c.role_id,
         notifications.c.created_at.desc(), postgresql_where=notifications.c.role_id.is_not(None))

# The tasks event automations asked for, by what they are linked to (a reservation)
# and their key within it ("cleaning"): a later firing moves or cancels them.
task_links = sa.Table(
    "automation_task_links",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("link", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("automation_id", sa.Text, nullable=False),
    sa.Column("execution_id", sa.Text, nullable=False),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('open', 'cancelled')", name="automation_task_links_status"),
)

# The listings the sync services announced: their time zone plans local times.
listings = sa.Table(
    "automation_listings",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("listing_id", sa.Text, primary_key=True),
    sa.Column("platform", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("city", sa.Text, nullable=False),
    sa.Column("timezone", sa.Text),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    # The owner's segment and labels of the listing (filters read `listing.segment`).
    sa.Column("segment", sa.Text),
    sa.Column("tags", pg.JSONB, nullable=False, server_default="[]"),
)

# The reservations the sync services announced, for conditions over occupancy.
reservations = sa.Table(
    "automation_reservations",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("reservation_id", sa.Text, primary_key=True),
    sa.Column("listing_id", sa.Text, nullable=False),
    sa.Column("check_in", sa.Date, nullable=False),
    sa.Column("check_out", sa.Date, nullable=False),
    sa.Column("cancelled", sa.Boolean, nullable=False),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
)

SCHEDULE_CHANNEL = "automation_schedule"

_AUTOMATION_FIELDS = [f.name for f in fields(Automation)]
_EXECUTION_FIELDS = [f.name for f in fields(Execution)]
_ACTION_FIELDS = [f.name for f in fields(AutomatedAction)]
_NOTIFICATION_FIELDS = [f.name for f in fields(Notification)]


def _to_automation(row: Any) -> Automation:
    values = dict(row._mapping)
    values["kind"] = AutomationType(values["kind"])
    values["overlap"] = OverlapPolicy(values["overlap"])
    return Automation(**{name: values[name] for name in _AUTOMATION_FIELDS})


@dataclass(frozen=True)
class TaskLink:
    """A task an event automation asked for, by its link and key."""

    org_id: str
    link: str
    key: str
    automation_id: str
    execution_id: str
    request_id: str
    due_at: datetime | None
    status: str
    created_at: datetime
    updated_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status == "open"


def _to_execution(row: Any) -> Execution:
    values = dict(row._mapping)
    if values["outcome"] is not None:
        values["outcome"] = RecordedOutcome(values["outcome"])
    values["trigger"] = ExecutionTrigger(values["trigger"])
    if values["run_status"] is not None:
        values["run_status"] = RunStatus(values["run_status"])
    return Execution(**{name: values[name] for name in _EXECUTION_FIELDS})


async def database_now(conn: AsyncConnection) -> datetime:
    """The database's time at the start of the transaction: every replica's
    scheduler reads the same clock, whatever its host's clock says."""
    now: datetime = (await conn.execute(sa.select(sa.func.now()))).scalar_one()
    return now


async def database_clock(conn: AsyncConnection) -> datetime:
    """The database's time now, inside the transaction (for durations)."""
    now: datetime = (await conn.execute(sa.select(sa.func.clock_timestamp()))).scalar_one()
    return now


async def wake_schedulers(conn: AsyncConnection) -> None:
    """Tell every scheduler (on commit) that a schedule changed."""
    await conn.execute(sa.select(sa.func.pg_notify(SCHEDULE_CHANNEL, "")))


async def insert_automation(conn: AsyncConnection, automation: Automation) -> None:
    values = asdict(automation)
    values["kind"] = automation.kind.value
    values["overlap"] = automation.overlap.value
    await conn.execute(OrgScope(automations, automation.org_id).insert(**values))


async def get_automation(
    conn: AsyncConnection, org_id: str, automation_id: str, *, for_update: bool = False
) -> Automation | None:
    query = OrgScope(automations, org_id).select().where(automations.c.id == automation_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return _to_automation(row) if row else None


async def list_automations(
    conn: AsyncConnection, org_id: str, *, is_active: bool | None = None
) -> list[Automation]:
    query = OrgScope(automations, org_id).select()
    if is_active is not None:
        query = query.where(automations.c.is_active == is_active)
    rows = (await conn.execute(query.order_by(automations.c.created_at, automations.c.id))).all()
    return [_to_automation(r) for r in rows]


async def active_event_automations(conn: AsyncConnection, org_id: str) -> list[Automation]:
    query = (
        OrgScope(automations, org_id).select()
        .where(automations.c.is_active, automations.c.kind == AutomationType.EVENT.value)
        .order_by(automations.c.created_at, automations.c.id)
    )
    return [_to_automation(r) for r in (await conn.execute(query)).all()]


async def update_automation(conn: AsyncConnection, automation: Automation) -> None:
    """Save what can change after creation: active or not, the next fire (or check)
    time, and whether its condition held when last checked."""
    await conn.execute(
        OrgScope(automations, automation.org_id)
        .update()
        .where(automations.c.id == automation.id)
        .values(is_active=automation.is_active, next_fire_at=automation.next_fire_at,
                updated_at=automation.updated_at, condition_held=automation.condition_held)
    )


async def claim_due_automations(conn: AsyncConnection, *, limit: int) -> list[Automation]:
    """Active schedules due by the database clock, locked for this transaction.
    Rows another scheduler holds are skipped, not waited for: it is firing them.
    The scheduler works for every org, so this query alone is not org-scoped."""
    query = (
        sa.select(automations)
        .where(
            automations.c.is_active,
            automations.c.kind.in_([AutomationType.SCHEDULED.value, AutomationType.CONDITIONAL.value]),
            automations.c.next_fire_at <= sa.func.now(),
        )
        .order_by(automations.c.next_fire_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_to_automation(r) for r in (await conn.execute(query)).all()]


async def seconds_until_next_fire(conn: AsyncConnection) -> float | None:
    """Seconds from now (database clock) to the earliest active schedule; None if
    nothing is scheduled."""
    query = sa.select(
        sa.func.extract("epoch", sa.func.min(automations.c.next_fire_at) - sa.func.clock_timestamp())
    ).where(automations.c.is_active,
            automations.c.kind.in_([AutomationType.SCHEDULED.value, AutomationType.CONDITIONAL.value]))
    seconds = (await conn.execute(query)).scalar_one_or_none()
    return None if seconds is None else float(seconds)


def _execution_values(execution: Execution) -> dict[str, Any]:
    values = asdict(execution)
    values["outcome"] = execution.outcome.value if execution.outcome else None
    values["trigger"] = execution.trigger.value
    values["run_status"] = execution.run_status.value if execution.run_status else None
    return values


async def insert_execution(conn: AsyncConnection, execution: Execution) -> bool:
    """Record an execution once per (automation, scheduled time), and an event
    firing once per (automation, dedupe key). Returns whether it is new: False means
    that time, or that key, was already fired."""
    statement = (
        OrgScope(executions, execution.org_id).insert(**_execution_values(execution))
        .on_conflict_do_nothing()
        .returning(executions.c.id)
    )
    return (await conn.execute(statement)).first() is not None


async def finish_execution(conn: AsyncConnection, execution: Execution) -> None:
    outcome = execution.outcome.value if execution.outcome else None
    await conn.execute(
        OrgScope(executions, execution.org_id)
        .update()
        .where(executions.c.id == execution.id)
        .values(finished_at=execution.finished_at, outcome=outcome, error=execution.error,
                action_outcomes=execution.action_outcomes,
                run_status=execution.run_status.value if execution.run_status else None)
    )


# A run asked for longer ago than this and never heard of again (its request was
# refused or lost) no longer holds the schedule back.
STALE_REQUEST = "1 day"


async def runs_in_the_way(conn: AsyncConnection, org_id: str, automation_id: str) -> tuple[int, int]:
    """(runs of earlier firings not ended, firings buffered until they end)."""
    scope = OrgScope(executions, org_id)
    open_run = (
        executions.c.run_status.in_([RunStatus.RUNNING.value, RunStatus.WAITING.value])
        | ((executions.c.run_status == RunStatus.REQUESTED.value)
           & (executions.c.started_at > sa.func.now() - sa.text(f"interval '{STALE_REQUEST}'"))))
    query = scope.select(
        sa.func.count().filter(open_run),
        sa.func.count().filter(executions.c.run_status == RunStatus.BUFFERED.value),
    ).where(executions.c.automation_id == automation_id)
    open_runs, buffered = (await conn.execute(query)).one()
    return int(open_runs), int(buffered)


async def execution_by_id(conn: AsyncConnection, org_id: str, execution_id: str) -> Execution | None:
    query = OrgScope(executions, org_id).select().where(executions.c.id == execution_id).with_for_update()
    row = (await conn.execute(query)).first()
    return _to_execution(row) if row else None


# Every automated task step and every run event reads these: built (and compiled) once.
_LOCK_EXECUTION_OF_RUN = (OrgTemplate(executions).select()
                          .where(executions.c.run_id == sa.bindparam("run_id", type_=sa.Text, required=True))
                          .with_for_update())


async def execution_of_run(conn: AsyncConnection, org_id: str, run_id: str) -> Execution | None:
    row = (await conn.execute(_LOCK_EXECUTION_OF_RUN, {OrgTemplate.PARAMETER: org_id, "run_id": run_id})).first()
    return _to_execution(row) if row else None


async def buffered_execution(conn: AsyncConnection, org_id: str, automation_id: str) -> Execution | None:
    query = (OrgScope(executions, org_id).select()
             .where(executions.c.automation_id == automation_id,
                    executions.c.run_status == RunStatus.BUFFERED.value)
             .order_by(executions.c.started_at).limit(1).with_for_update(skip_locked=True))
    row = (await conn.execute(query)).first()
    return _to_execution(row) if row else None


async def set_run(conn: AsyncConnection, execution: Execution) -> None:
    await conn.execute(
        OrgScope(executions, execution.org_id).update().where(executions.c.id == execution.id)
        .values(run_id=execution.run_id, run_status=execution.run_status.value if execution.run_status else None)
    )


def _to_awaited_run(row: Any) -> AwaitedRun:
    return AwaitedRun(org_id=row.org_id, request_id=row.request_id, execution_id=row.execution_id,
                      run_id=row.run_id, status=RunStatus(row.status), reason=row.reason)


async def await_run(conn: AsyncConnection, run: AwaitedRun) -> None:
    """Record that `run.execution_id` waits on the run `run.request_id` asks for."""
    await conn.execute(OrgScope(execution_runs, run.org_id).insert(
        request_id=run.request_id, execution_id=run.execution_id, run_id=run.run_id,
        status=run.status.value, reason=run.reason).on_conflict_do_nothing())


_LOCK_AWAITED_BY_REQUEST = (OrgTemplate(execution_runs).select()
                            .where(execution_runs.c.request_id == sa.bindparam("request_id", type_=sa.Text,
                                                                               required=True))
                            .with_for_update())
_LOCK_AWAITED_BY_RUN = (OrgTemplate(execution_runs).select()
                        .where(execution_runs.c.run_id == sa.bindparam("run_id", type_=sa.Text, required=True))
                        .with_for_update())


async def awaited_run(conn: AsyncConnection, org_id: str, *, request_id: str | None,
                      run_id: str) -> AwaitedRun | None:
    """The awaited run a run event speaks of: by its request (a start names it),
    else by the run id a start recorded."""
    if request_id:
        row = (await conn.execute(_LOCK_AWAITED_BY_REQUEST,
                                  {OrgTemplate.PARAMETER: org_id, "request_id": request_id})).first()
    else:
        row = (await conn.execute(_LOCK_AWAITED_BY_RUN, {OrgTemplate.PARAMETER: org_id, "run_id": run_id})).first()
    return _to_awaited_run(row) if row else None


async def unanswered_runs(conn: AsyncConnection, *, limit: int) -> list[AwaitedRun]:
    """Runs asked for longer ago than STALE_REQUEST that no run has answered (the
    request was refused or lost). Like the schedule claim, this works for every org
    and skips rows another scheduler holds."""
    query = (sa.select(execution_runs)
             .where(execution_runs.c.status == RunStatus.REQUESTED.value,
                    execution_runs.c.requested_at < sa.func.now() - sa.text(f"interval '{STALE_REQUEST}'"))
             .order_by(execution_runs.c.requested_at).limit(limit).with_for_update(skip_locked=True))
    return [_to_awaited_run(row) for row in (await conn.execute(query)).all()]


async def update_awaited_run(conn: AsyncConnection, run: AwaitedRun) -> None:
    await conn.execute(OrgScope(execution_runs, run.org_id).update()
                       .where(execution_runs.c.request_id == run.request_id)
                       .values(run_id=run.run_id, status=run.status.value, reason=run.reason))


async def runs_of_execution(conn: AsyncConnection, org_id: str, execution_id: str) -> list[AwaitedRun]:
    query = (OrgScope(execution_runs, org_id).select().where(execution_runs.c.execution_id == execution_id)
             .order_by(execution_runs.c.request_id))
    return [_to_awaited_run(row) for row in (await conn.execute(query)).all()]


async def active_listing_ids(conn: AsyncConnection, org_id: str) -> list[str]:
    query = (OrgScope(listings, org_id).select(listings.c.listing_id)
             .where(listings.c.active).order_by(listings.c.listing_id))
    return [r.listing_id for r in (await conn.execute(query)).all()]


async def lock_debounce(conn: AsyncConnection, automation_id: str, key: str) -> None:
    """Serialise firings of one automation for one debounce key until commit, so
    two events at once cannot both see "not fired recently"."""
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(
        sa.func.hashtextextended(f"debounce:{automation_id}:{key}", 0))))


async def fired_since(conn: AsyncConnection, org_id: str, automation_id: str, key: str,
                      since: datetime) -> bool:
    """Whether the automation fired for this debounce key at or after `since`."""
    query = OrgScope(executions, org_id).select(executions.c.id).where(
        executions.c.automation_id == automation_id, executions.c.debounce_key == key,
        executions.c.started_at >= since,
    ).limit(1)
    return (await conn.execute(query)).first() is not None


async def recent_executions(
    conn: AsyncConnection, org_id: str, automation_id: str, *, limit: int = 20, fired_only: bool = False
) -> list[Execution]:
    query = (
        OrgScope(executions, org_id)
        .select()
        .where(executions.c.automation_id == automation_id)
        .order_by(executions.c.started_at.desc(), executions.c.id)
        .limit(limit)
    )
    if fired_only:
        query = query.where(executions.c.outcome.is_distinct_from(RecordedOutcome.SKIPPED.value))
    return [_to_execution(r) for r in (await conn.execute(query)).all()]


def _outcome_counts() -> tuple[Any, ...]:
    """(firings, successes, failures, skipped): a skipped execution did not fire, so
    it is neither a run nor a failure."""
    outcome = executions.c.outcome
    return (
        sa.func.count().filter(outcome.is_distinct_from(RecordedOutcome.SKIPPED.value)),
        sa.func.count().filter(outcome == RecordedOutcome.SUCCESS.value),
        sa.func.count().filter(outcome == RecordedOutcome.FAILURE.value),
        sa.func.count().filter(outcome == RecordedOutcome.SKIPPED.value),
    )


async def execution_stats(conn: AsyncConnection, org_id: str, automation_id: str) -> ExecutionStats:
    scope = OrgScope(executions, org_id)
    query = scope.select(*_outcome_counts()).where(executions.c.automation_id == automation_id)
    runs, successes, failures, skipped = (await conn.execute(query)).one()
    windows = []
    for days in STATS_WINDOWS_DAYS:
        recent = executions.c.started_at >= sa.func.now() - sa.func.make_interval(0, 0, 0, days)
        counted = scope.select(*_outcome_counts()).where(executions.c.automation_id == automation_id, recent)
        in_window = (await conn.execute(counted)).one()
        windows.append(WindowStats(days, *in_window))
    last = await recent_executions(conn, org_id, automation_id, limit=1, fired_only=True)
    return ExecutionStats(runs=runs, successes=successes, failures=failures, skipped=skipped,
                          last_run=last[0] if last else None, windows=windows)


def _action_values(action: AutomatedAction) -> dict[str, Any]:
    values = {name: getattr(action, name) for name in _ACTION_FIELDS}  # not asdict: its deep copy
    values["status"] = action.status.value
    return values


# An automated task's action is inserted, read and updated on every task it does:
# built (and compiled) once.
_INSERT_ACTION = (OrgTemplate(automated_actions).insert()
                  .on_conflict_do_nothing(index_elements=[automated_actions.c.org_id, automated_actions.c.task_id])
                  .returning(automated_actions.c.task_id))
_ACTION_PROGRESS = ("status", "awaiting", "answers", "result", "error", "finished_at")
_UPDATE_ACTION = OrgTemplate(automated_actions).update_columns(automated_actions.c.task_id, _ACTION_PROGRESS)
_GET_ACTION = (OrgTemplate(automated_actions).select()
               .where(automated_actions.c.task_id == sa.bindparam("task_id", type_=sa.Text, required=True)))
_LOCK_ACTION = _GET_ACTION.with_for_update()


def _to_action(row: Any) -> AutomatedAction:
    values = dict(row._mapping)
    values["status"] = ActionStatus(values["status"])
    return AutomatedAction(**{name: values[name] for name in _ACTION_FIELDS})


async def insert_action(conn: AsyncConnection, action: AutomatedAction) -> bool:
    """Take a task's action once: the same task assigned again changes nothing.
    Returns whether it is new."""
    return (await conn.execute(_INSERT_ACTION, _action_values(action))).first() is not None


async def get_action(
    conn: AsyncConnection, org_id: str, task_id: str, *, for_update: bool = False
) -> AutomatedAction | None:
    row = (await conn.execute(_LOCK_ACTION if for_update else _GET_ACTION,
                              {OrgTemplate.PARAMETER: org_id, "task_id": task_id})).first()
    return _to_action(row) if row else None


async def update_action(conn: AsyncConnection, action: AutomatedAction) -> None:
    values = {name: getattr(action, name) for name in _ACTION_PROGRESS}
    values["status"] = action.status.value
    await conn.execute(_UPDATE_ACTION, OrgTemplate.update_parameters(action.org_id, action.task_id, values))


async def insert_notification(conn: AsyncConnection, notification: Notification) -> bool:
    """Store a notification once per task. Returns whether it is new."""
    statement = (
        OrgScope(notifications, notification.org_id).insert(**asdict(notification))
        .on_conflict_do_nothing(constraint="notifications_once_per_task")
        .returning(notifications.c.id)
    )
    return (await conn.execute(statement)).first() is not None


async def notifications_for(
    conn: AsyncConnection, org_id: str, user_id: str, role_id: str | None, *, limit: int = 100
) -> list[Notification]:
    """A user's notifications: those left for them and those left for their role."""
    mine: sa.ColumnElement[bool] = notifications.c.user_id == user_id
    if role_id is not None:
        mine = sa.or_(mine, notifications.c.role_id == role_id)
    query = (
        OrgScope(notifications, org_id)
        .select()
        .where(mine)
        .order_by(notifications.c.created_at.desc(), notifications.c.id)
        .limit(limit)
    )
    rows = (await conn.execute(query)).all()
    return [Notification(**{name: r._mapping[name] for name in _NOTIFICATION_FIELDS}) for r in rows]


# --- Task links and listings ---------------------------------------------------------

_LINK_FIELDS = [f.name for f in fields(TaskLink)]


async def get_task_link(conn: AsyncConnection, org_id: str, link: str, key: str) -> TaskLink | None:
    query = (OrgScope(task_links, org_id).select()
             .where(task_links.c.link == link, task_links.c.key == key).with_for_update())
    row = (await conn.execute(query)).first()
    return TaskLink(**{name: row._mapping[name] for name in _LINK_FIELDS}) if row else None


async def open_task_links(conn: AsyncConnection, org_id: str, link: str,
                          keys: list[str] | None = None) -> list[TaskLink]:
    query = (OrgScope(task_links, org_id).select()
             .where(task_links.c.link == link, task_links.c.status == "open")
             .order_by(task_links.c.key).with_for_update())
    if keys is not None:
        query = query.where(task_links.c.key.in_(keys))
    return [TaskLink(**{name: r._mapping[name] for name in _LINK_FIELDS})
            for r in (await conn.execute(query)).all()]


async def save_task_link(conn: AsyncConnection, link: TaskLink) -> None:
    statement = OrgScope(task_links, link.org_id).insert(**asdict(link))
    await conn.execute(statement.on_conflict_do_update(
        index_elements=[task_links.c.org_id, task_links.c.link, task_links.c.key],
        set_={name: statement.excluded[name] for name in ("due_at", "status", "updated_at")},
    ))


async def store_listing(conn: AsyncConnection, org_id: str, values: dict[str, Any]) -> None:
    """Keep the newest state of a listing (a late event changes nothing)."""
    await conn.execute(OrgScope(listings, org_id).upsert_newest(
        [values], key=["listing_id"], version="synced_at"))


async def listing_of(conn: AsyncConnection, org_id: str, listing_id: str) -> dict[str, Any] | None:
    query = OrgScope(listings, org_id).select().where(listings.c.listing_id == listing_id)
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    values = dict(row._mapping)
    values["synced_at"] = values["synced_at"].isoformat()
    return values


async def store_reservation(conn: AsyncConnection, org_id: str, values: dict[str, Any]) -> None:
    """Keep the newest state of a reservation (a late event changes nothing)."""
    await conn.execute(OrgScope(reservations, org_id).upsert_newest(
        [values], key=["reservation_id"], version="as_of"))


async def booked_nights(conn: AsyncConnection, org_id: str, start: date, days: int) -> tuple[int, int]:
    """(nights booked in [start, start + days) on the org's active listings, those listings)."""
    end = start + timedelta(days=days)
    active = sa.select(listings.c.listing_id).where(listings.c.org_id == org_id, listings.c.active)
    first = sa.func.greatest(reservations.c.check_in, start)
    last = sa.func.least(reservations.c.check_out, end)
    nights = (OrgScope(reservations, org_id)
              .select(sa.func.coalesce(sa.func.sum(last - first), 0))
              .where(~reservations.c.cancelled, reservations.c.check_in < end, reservations.c.check_out > start,
                     reservations.c.listing_id.in_(active)))
    count = OrgScope(listings, org_id).select(sa.func.count()).where(listings.c.active)
    return int((await conn.execute(nights)).scalar_one()), int((await conn.execute(count)).scalar_one())
