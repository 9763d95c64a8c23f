"""automation-service tables (SQLAlchemy Core) and the queries on them; every query on
a tenant table goes through an `OrgScope`."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from automation_service.domain import Automation, Execution, QueuedTask
from stayops_kit.tenancy import OrgScope
from stayops_schemas.events.automations import AutomationType, ExecutionOutcome

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
    sa.CheckConstraint("kind IN ('scheduled', 'event', 'conditional')", name="automations_kind"),
)
sa.Index("automations_org_created", automations.c.org_id, automations.c.created_at, automations.c.id)
# What the scheduler and the event matcher will look up: active automations by kind/event.
sa.Index("automations_active_kind", automations.c.kind, automations.c.event_type,
         postgresql_where=automations.c.is_active)

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
    sa.CheckConstraint("outcome IN ('success', 'failure')", name="automation_executions_outcome"),
)
sa.Index("automation_executions_org_automation", executions.c.org_id, executions.c.automation_id,
         executions.c.started_at.desc())

automated_task_queue = sa.Table(
    "automated_task_queue",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("task_id", sa.Text, primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("data", pg.JSONB, nullable=False),
    sa.Column("workflow_run_id", sa.Text),
    sa.Column("workflow_step", sa.Text),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)
# The action registry takes the oldest work first.
sa.Index("automated_task_queue_received", automated_task_queue.c.received_at)

_AUTOMATION_FIELDS = [f.name for f in fields(Automation)]
_EXECUTION_FIELDS = [f.name for f in fields(Execution)]
_QUEUED_FIELDS = [f.name for f in fields(QueuedTask)]


def _pg_insert(scope: OrgScope, values: dict[str, Any]) -> pg.Insert:
    """The scope's INSERT in its PostgreSQL form, which can say ON CONFLICT."""
    scope.insert(**values)  # refuses a row of another org
    return pg.insert(scope.table).values({**values, "org_id": scope.org_id})


def _to_automation(row: Any) -> Automation:
    values = dict(row._mapping)
    values["kind"] = AutomationType(values["kind"])
    return Automation(**{name: values[name] for name in _AUTOMATION_FIELDS})


def _to_execution(row: Any) -> Execution:
    values = dict(row._mapping)
    if values["outcome"] is not None:
        values["outcome"] = ExecutionOutcome(values["outcome"])
    return Execution(**{name: values[name] for name in _EXECUTION_FIELDS})


async def insert_automation(conn: AsyncConnection, automation: Automation) -> None:
    values = asdict(automation)
    values["kind"] = automation.kind.value
    await conn.execute(OrgScope(automations, automation.org_id).insert(**values))


async def get_automation(conn: AsyncConnection, org_id: str, automation_id: str) -> Automation | None:
    query = OrgScope(automations, org_id).select().where(automations.c.id == automation_id)
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


async def insert_execution(conn: AsyncConnection, execution: Execution) -> None:
    values = asdict(execution)
    values["outcome"] = execution.outcome.value if execution.outcome else None
    await conn.execute(OrgScope(executions, execution.org_id).insert(**values))


async def recent_executions(
    conn: AsyncConnection, org_id: str, automation_id: str, *, limit: int = 20
) -> list[Execution]:
    query = (
        OrgScope(executions, org_id)
        .select()
        .where(executions.c.automation_id == automation_id)
        .order_by(executions.c.started_at.desc(), executions.c.id)
        .limit(limit)
    )
    return [_to_execution(r) for r in (await conn.execute(query)).all()]


async def enqueue_task(conn: AsyncConnection, task: QueuedTask) -> bool:
    """Queue the task once: the same task assigned again stays where it is in the
    queue. Returns whether it was newly queued."""
    statement = (
        _pg_insert(OrgScope(automated_task_queue, task.org_id), asdict(task))
        .on_conflict_do_nothing(index_elements=[automated_task_queue.c.org_id, automated_task_queue.c.task_id])
        .returning(automated_task_queue.c.task_id)
    )
    return (await conn.execute(statement)).first() is not None


async def queued_tasks(conn: AsyncConnection, org_id: str) -> list[QueuedTask]:
    query = OrgScope(automated_task_queue, org_id).select().order_by(automated_task_queue.c.received_at)
    return [QueuedTask(**{n: r._mapping[n] for n in _QUEUED_FIELDS}) for r in (await conn.execute(query)).all()]
