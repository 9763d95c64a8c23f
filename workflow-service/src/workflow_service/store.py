"""workflow-service tables (SQLAlchemy Core) and the queries on them; every query on a
tenant table goes through an `OrgScope`."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from stayops_kit.tenancy import OrgScope
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
    sa.ForeignKeyConstraint(
        ["org_id", "workflow_key", "workflow_version"],
        [definitions.c.org_id, definitions.c.key, definitions.c.version],
        name="workflow_runs_definition_fkey",
    ),
)
sa.Index("workflow_runs_org_started", runs.c.org_id, runs.c.started_at.desc(), runs.c.id)
sa.Index("workflow_runs_org_status", runs.c.org_id, runs.c.status)
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


async def list_latest_definitions(conn: AsyncConnection, org_id: str) -> list[WorkflowDefinition]:
    """The latest version of each of the org's workflows, by key."""
    query = (
        OrgScope(definitions, org_id)
        .select()
        .ext(pg.distinct_on(definitions.c.key))
        .order_by(definitions.c.key, definitions.c.version.desc())
    )
    return [_to_definition(r) for r in (await conn.execute(query)).all()]


async def insert_run(conn: AsyncConnection, run: WorkflowRun) -> None:
    values = asdict(run)
    values["status"] = run.status.value
    await conn.execute(OrgScope(runs, run.org_id).insert(**values))


async def get_run(
    conn: AsyncConnection, org_id: str, run_id: str, *, for_update: bool = False
) -> WorkflowRun | None:
    query = OrgScope(runs, org_id).select().where(runs.c.id == run_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return _to_run(row) if row else None


async def append_log(conn: AsyncConnection, entry: RunLogEntry) -> None:
    await conn.execute(OrgScope(run_log, entry.org_id).insert(**asdict(entry)))


async def run_log_of(conn: AsyncConnection, org_id: str, run_id: str) -> list[RunLogEntry]:
    query = (
        OrgScope(run_log, org_id)
        .select(run_log.c.run_id, run_log.c.org_id, run_log.c.at, run_log.c.actor, run_log.c.message)
        .where(run_log.c.run_id == run_id)
        .order_by(run_log.c.at, run_log.c.id)
    )
    return [RunLogEntry(**r._mapping) for r in (await conn.execute(query)).all()]
