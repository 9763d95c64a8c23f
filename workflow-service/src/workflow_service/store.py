"""workflow-service tables (SQLAlchemy Core) and the queries on them; every query on a
tenant table goes through an `OrgScope`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from stayops_kit.tenancy import OrgScope, OrgTemplate
from stayops_schemas.events.workflows import RunStatus
from workflow_service.domain import RunLogEntry, WorkflowDefinition, WorkflowRun

metadata = sa.MetaData()

definitions = sa.Table(
    "workflow_definitions",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("document", pg.JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.CheckConstraint("version >= 1", name="workflow_definitions_version_positive"),
)

runs = sa.Table(
    "workflow_runs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("workflow_key", sa.Text, nullable=False),
    sa.Column("workflow_version", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("current_step", sa.Text),
    sa.Column("parameters", pg.JSONB, nullable=False),
    sa.Column("started_by", sa.Text),
    sa.Column("request_id", sa.Text),
    sa.Column("correlation_id", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("definition_org_id", sa.Text, nullable=False),
    sa.Column("state", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("result", pg.JSONB),
    sa.Column("compensated", sa.Boolean),
    sa.Column("failure_reason", sa.Text),
    sa.Column("concurrency_key", sa.Text),
    sa.Column("parent_run_id", sa.Text, sa.ForeignKey("workflow_runs.id", ondelete="SET NULL")),
    # A parallel step's branch: `<step>/<branch>` of the workflow version the run names.
    sa.Column("branch", sa.Text),
    sa.ForeignKeyConstraint(
        ["definition_org_id", "workflow_key", "workflow_version"],
        [definitions.c.org_id, definitions.c.key, definitions.c.version],
        name="workflow_runs_definition_fkey",
    ),
)
sa.Index("workflow_runs_org_started", runs.c.org_id, runs.c.started_at.desc(), runs.c.id)
sa.Index("workflow_runs_org_status", runs.c.org_id, runs.c.status)
sa.Index("workflow_runs_org_key_started", runs.c.org_id, runs.c.workflow_key, runs.c.started_at.desc(), runs.c.id)
sa.Index("workflow_runs_org_started_by", runs.c.org_id, runs.c.started_by, runs.c.started_at.desc())
sa.Index("workflow_runs_parameters", runs.c.parameters, postgresql_using="gin",
         postgresql_ops={"parameters": "jsonb_path_ops"})
sa.Index("workflow_runs_open_key", runs.c.org_id, runs.c.workflow_key, runs.c.concurrency_key, runs.c.started_at,
         postgresql_where=runs.c.status.in_(["queued", "running", "waiting", "paused"]))
sa.Index("workflow_runs_parent", runs.c.org_id, runs.c.parent_run_id,
         postgresql_where=runs.c.parent_run_id.is_not(None))
sa.Index("workflow_runs_request", runs.c.org_id, runs.c.request_id, unique=True,
         postgresql_where=runs.c.request_id.is_not(None))

run_log = sa.Table(
    "run_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("run_id", sa.Text, sa.ForeignKey("workflow_runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)
sa.Index("run_log_org_run_at", run_log.c.org_id, run_log.c.run_id, run_log.c.at, run_log.c.id)

timers = sa.Table(
    "timers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, sa.ForeignKey("workflow_runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("step", sa.Text, nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("fired_at", sa.DateTime(timezone=True)),
)
sa.Index("timers_due", timers.c.due_at, postgresql_where=timers.c.fired_at.is_(None))
sa.Index("timers_org_run", timers.c.org_id, timers.c.run_id)

# The org that owns the built-in definitions every org may run.
BUILTIN_ORG = "stayops-builtin"

_RUN_FIELDS = [f.name for f in fields(WorkflowRun)]
_DEFINITION_FIELDS = [f.name for f in fields(WorkflowDefinition)]


def _to_run(row: Any) -> WorkflowRun:
    values = dict(row._mapping)
    values["status"] = RunStatus(values["status"])
    return WorkflowRun(**{name: values[name] for name in _RUN_FIELDS})


def _to_definition(row: Any) -> WorkflowDefinition:
    values = row._mapping
    return WorkflowDefinition(**{name: values[name] for name in _DEFINITION_FIELDS})


async def insert_definition(conn: AsyncConnection, definition: WorkflowDefinition) -> None:
    await conn.execute(OrgScope(definitions, definition.org_id).insert(**asdict(definition)))


async def ensure_definition(conn: AsyncConnection, definition: WorkflowDefinition) -> None:
    """Insert a definition version unless it is there (built-ins are seeded this way)."""
    await conn.execute(
        pg.insert(definitions).values(**asdict(definition)).on_conflict_do_nothing(
            index_elements=[definitions.c.org_id, definitions.c.key, definitions.c.version])
    )


async def lock_definition_key(conn: AsyncConnection, org_id: str, key: str) -> None:
    """Serialise publishing of one org's key, so two POSTs get versions n+1 and n+2."""
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"{org_id}/{key}"))))


async def latest_version(conn: AsyncConnection, org_id: str, key: str) -> int:
    query = OrgScope(definitions, org_id).select(sa.func.max(definitions.c.version)).where(definitions.c.key == key)
    return int((await conn.execute(query)).scalar() or 0)


async def get_definition(conn: AsyncConnection, org_id: str, key: str,
                         version: int | None = None) -> WorkflowDefinition | None:
    """One version of an org's workflow; the latest when `version` is None."""
    query = OrgScope(definitions, org_id).select().where(definitions.c.key == key)
    if version is not None:
        query = query.where(definitions.c.version == version)
    row = (await conn.execute(query.order_by(definitions.c.version.desc()).limit(1))).first()
    return _to_definition(row) if row else None


async def list_latest_definitions(conn: AsyncConnection, org_id: str) -> list[WorkflowDefinition]:
    """The latest version of each of the org's workflows, by key."""
    query = (
        OrgScope(definitions, org_id)
        .select()
        .ext(pg.distinct_on(definitions.c.key))
        .order_by(definitions.c.key, definitions.c.version.desc())
    )
    return [_to_definition(r) for r in (await conn.execute(query)).all()]


def _run_values(run: WorkflowRun) -> dict[str, Any]:
    values = {name: getattr(run, name) for name in _RUN_FIELDS}  # not asdict: its deep copy of the state
    values["status"] = run.status.value
    values["definition_org_id"] = run.definition_org_id or run.org_id
    return values


# A run's writes and reads on every step, built (and compiled) once: building them
# from their values each time was a tenth of workflow-service's CPU in a saga.
_INSERT_RUN_ONCE = OrgTemplate(runs).insert().on_conflict_do_nothing(
    index_elements=[runs.c.org_id, runs.c.request_id], index_where=runs.c.request_id.is_not(None))
# What a step changes; everything else about a run is fixed when it is inserted.
_RUN_PROGRESS = ("status", "current_step", "state", "updated_at", "result", "compensated", "failure_reason")
_UPDATE_RUN = OrgTemplate(runs).update_columns(runs.c.id, _RUN_PROGRESS)
_GET_RUN = OrgTemplate(runs).select().where(runs.c.id == sa.bindparam("run_id", type_=sa.Text, required=True))
_LOCK_RUN = _GET_RUN.with_for_update()
_LOCK_TOP_LEVEL_RUN = _GET_RUN.where(runs.c.parent_run_id.is_(None)).with_for_update()


async def insert_run(conn: AsyncConnection, run: WorkflowRun) -> None:
    await conn.execute(OrgScope(runs, run.org_id).insert(**_run_values(run)))


async def insert_run_once(conn: AsyncConnection, run: WorkflowRun) -> bool:
    """Insert a run unless the org already has one for its `request_id`; True if inserted."""
    return bool((await conn.execute(_INSERT_RUN_ONCE, _run_values(run))).rowcount)


async def run_by_request(conn: AsyncConnection, org_id: str, request_id: str) -> WorkflowRun | None:
    row = (await conn.execute(OrgScope(runs, org_id).select().where(runs.c.request_id == request_id))).first()
    return _to_run(row) if row else None


async def update_run(conn: AsyncConnection, run: WorkflowRun) -> None:
    """Write a run's progress (the columns in `_RUN_PROGRESS`)."""
    values = {name: getattr(run, name) for name in _RUN_PROGRESS}
    values["status"] = run.status.value
    await conn.execute(_UPDATE_RUN, OrgTemplate.update_parameters(run.org_id, run.id, values))


async def insert_timer(conn: AsyncConnection, *, timer_id: str, run_id: str, org_id: str, step: str,
                       delay: timedelta | None, at: datetime | None) -> datetime:
    """A durable timer due `delay` after the database's now (or at `at`); returns its due time."""
    due = sa.func.now() + delay if delay is not None else sa.literal(at, sa.DateTime(timezone=True))
    query = OrgScope(timers, org_id).insert(id=timer_id, run_id=run_id, step=step, due_at=due).returning(
        timers.c.due_at)
    return (await conn.execute(query)).scalar_one()  # type: ignore[no-any-return]


async def cancel_timers(conn: AsyncConnection, org_id: str, run_id: str) -> None:
    await conn.execute(OrgScope(timers, org_id).delete().where(timers.c.run_id == run_id,
                                                               timers.c.fired_at.is_(None)))


async def drop_timer(conn: AsyncConnection, org_id: str, timer_id: str) -> None:
    """Forget a timer nobody waits for any more (a reply came before the timeout)."""
    await conn.execute(OrgScope(timers, org_id).delete().where(timers.c.id == timer_id, timers.c.fired_at.is_(None)))


async def claim_due_timers(conn: AsyncConnection, limit: int = 50) -> list[Any]:
    """Mark due timers fired, by the database clock; a timer another worker holds is
    skipped, one already fired is never fired again. Returns (id, run_id, org_id, step, due_at)."""
    due = (
        sa.select(timers.c.id, timers.c.due_at)
        .where(timers.c.fired_at.is_(None), timers.c.due_at <= sa.func.now())
        .order_by(timers.c.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    query = (
        timers.update()
        .where(timers.c.id == due.c.id, timers.c.due_at == due.c.due_at, timers.c.fired_at.is_(None))
        .values(fired_at=sa.func.now())
        .returning(timers.c.id, timers.c.run_id, timers.c.org_id, timers.c.step, timers.c.due_at)
    )
    return list((await conn.execute(query)).all())


async def seconds_to_next_timer(conn: AsyncConnection) -> float | None:
    query = sa.select(sa.func.extract("epoch", sa.func.min(timers.c.due_at) - sa.func.now())).where(
        timers.c.fired_at.is_(None))
    value = (await conn.execute(query)).scalar()
    return None if value is None else float(value)


async def get_run(
    conn: AsyncConnection, org_id: str, run_id: str, *, for_update: bool = False
) -> WorkflowRun | None:
    row = (await conn.execute(_LOCK_RUN if for_update else _GET_RUN,
                              {OrgTemplate.PARAMETER: org_id, "run_id": run_id})).first()
    return _to_run(row) if row else None


async def lock_top_level_run(conn: AsyncConnection, org_id: str, run_id: str) -> WorkflowRun | None:
    """The run locked FOR UPDATE if it has no parent run (the lock order puts parents
    first, so a child run is not locked here); None for a child run or no run.
    `parent_run_id` never becomes set after a run is inserted, so a row that matches
    here is a top-level run whatever a concurrent update did."""
    row = (await conn.execute(_LOCK_TOP_LEVEL_RUN, {OrgTemplate.PARAMETER: org_id, "run_id": run_id})).first()
    return _to_run(row) if row else None


def log_row(entry: RunLogEntry) -> dict[str, Any]:
    """A log entry as a `run_log` row, for a unit of work's deferred inserts (the log
    lines of a consumer batch go in one statement at its end)."""
    return asdict(entry)


async def run_log_of(conn: AsyncConnection, org_id: str, run_id: str) -> list[RunLogEntry]:
    query = (
        OrgScope(run_log, org_id)
        .select(run_log.c.run_id, run_log.c.org_id, run_log.c.at, run_log.c.actor, run_log.c.message)
        .where(run_log.c.run_id == run_id)
        .order_by(run_log.c.at, run_log.c.id)
    )
    return [RunLogEntry(**r._mapping) for r in (await conn.execute(query)).all()]


_OPEN = [RunStatus.QUEUED.value, RunStatus.RUNNING.value, RunStatus.WAITING.value, RunStatus.PAUSED.value]


async def lock_concurrency_key(conn: AsyncConnection, org_id: str, workflow_key: str, key: str) -> None:
    """Serialise the starts of runs sharing one concurrency key."""
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(
        sa.func.hashtext(f"run-key/{org_id}/{workflow_key}/{key}"))))


async def open_runs_of_key(conn: AsyncConnection, org_id: str, workflow_key: str, key: str) -> list[WorkflowRun]:
    """The not yet finished runs of a workflow for a concurrency key, oldest first, locked."""
    query = (OrgScope(runs, org_id).select()
             .where(runs.c.workflow_key == workflow_key, runs.c.concurrency_key == key, runs.c.status.in_(_OPEN))
             .order_by(runs.c.started_at, runs.c.id).with_for_update())
    return [_to_run(r) for r in (await conn.execute(query)).all()]


async def next_queued_run(conn: AsyncConnection, org_id: str, workflow_key: str, key: str) -> WorkflowRun | None:
    query = (OrgScope(runs, org_id).select()
             .where(runs.c.workflow_key == workflow_key, runs.c.concurrency_key == key,
                    runs.c.status == RunStatus.QUEUED.value)
             .order_by(runs.c.started_at, runs.c.id).limit(1).with_for_update(skip_locked=True))
    row = (await conn.execute(query)).first()
    return _to_run(row) if row else None


@dataclass(frozen=True)
class RunFilter:
    """What GET /v1/runs filters on; `after` is the (started_at, id) of the last run
    of the previous page (newest first)."""

    limit: int
    workflow_key: str | None = None
    statuses: tuple[RunStatus, ...] = ()
    started_after: datetime | None = None
    started_before: datetime | None = None
    started_by: str | None = None
    parameters: dict[str, Any] | None = None
    listing_id: str | None = None
    after: tuple[datetime, str] | None = None


async def list_runs(conn: AsyncConnection, org_id: str, f: RunFilter) -> list[WorkflowRun]:
    """Up to limit + 1 runs, newest first (so the caller knows whether more follow)."""
    query = OrgScope(runs, org_id).select()
    if f.workflow_key is not None:
        query = query.where(runs.c.workflow_key == f.workflow_key)
    if f.statuses:
        query = query.where(runs.c.status.in_([s.value for s in f.statuses]))
    if f.started_after is not None:
        query = query.where(runs.c.started_at >= f.started_after)
    if f.started_before is not None:
        query = query.where(runs.c.started_at < f.started_before)
    if f.started_by is not None:
        query = query.where(runs.c.started_by == f.started_by)
    if f.parameters:
        query = query.where(runs.c.parameters.contains(f.parameters))
    if f.listing_id is not None:
        # A run for one listing (`listing_id`) or for several (`listing_ids`).
        query = query.where(runs.c.parameters.contains({"listing_ids": [f.listing_id]})
                            | runs.c.parameters.contains({"listing_id": f.listing_id}))
    if f.after is not None:
        query = query.where(sa.tuple_(runs.c.started_at, runs.c.id) < sa.tuple_(
            sa.literal(f.after[0], sa.DateTime(timezone=True)), sa.literal(f.after[1])))
    query = query.order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(f.limit + 1)
    return [_to_run(r) for r in (await conn.execute(query)).all()]


async def children_of(conn: AsyncConnection, org_id: str, run_id: str) -> list[WorkflowRun]:
    query = (OrgScope(runs, org_id).select().where(runs.c.parent_run_id == run_id)
             .order_by(runs.c.started_at, runs.c.id))
    return [_to_run(r) for r in (await conn.execute(query)).all()]
