"""task-service tables (SQLAlchemy Core) and the queries on them; every query on a
tenant table goes through an `OrgScope`."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from stayops_kit.tenancy import OrgScope
from stayops_schemas.events.tasks import Priority, TaskStatus, TaskType
from task_service.domain import Task

metadata = sa.MetaData()

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("task_type", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("priority", sa.Text, nullable=False),
    sa.Column("department_id", sa.Text),
    sa.Column("role_id", sa.Text),
    sa.Column("assigned_to", sa.Text),
    sa.Column("due_at", sa.DateTime(timezone=True)),
    sa.Column("data", pg.JSONB, nullable=False),
    sa.Column("result", pg.JSONB),
    sa.Column("parent_task_id", sa.Text),
    sa.Column("workflow_run_id", sa.Text),
    sa.Column("workflow_step", sa.Text),
    sa.Column("request_id", sa.Text),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("tasks_org_created", tasks.c.org_id, tasks.c.created_at.desc(), tasks.c.id)
sa.Index("tasks_org_assignee_status", tasks.c.org_id, tasks.c.assigned_to, tasks.c.status)
sa.Index("tasks_org_role_status", tasks.c.org_id, tasks.c.role_id, tasks.c.status)
sa.Index("tasks_request", tasks.c.org_id, tasks.c.request_id, unique=True,
         postgresql_where=tasks.c.request_id.is_not(None))

members = sa.Table(
    "directory_members",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("user_type", sa.Text, nullable=False),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("role_id", sa.Text, nullable=False),
    sa.Column("role_name", sa.Text, nullable=False),
    sa.Column("department_id", sa.Text),
    sa.Column("department_name", sa.Text),
    sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)
sa.Index("directory_members_role", members.c.org_id, members.c.role_id)

_TASK_FIELDS = [f.name for f in fields(Task)]


def _to_task(row: Any) -> Task:
    values = dict(row._mapping)
    values["task_type"] = TaskType(values["task_type"])
    values["status"] = TaskStatus(values["status"])
    values["priority"] = Priority(values["priority"])
    return Task(**{name: values[name] for name in _TASK_FIELDS})


async def insert_task(conn: AsyncConnection, task: Task) -> None:
    values = asdict(task)
    await conn.execute(OrgScope(tasks, task.org_id).insert(**values))


async def get_task(
    conn: AsyncConnection, org_id: str, task_id: str, *, for_update: bool = False
) -> Task | None:
    query = OrgScope(tasks, org_id).select().where(tasks.c.id == task_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return _to_task(row) if row else None


async def find_by_request(conn: AsyncConnection, org_id: str, request_id: str) -> Task | None:
    row = (
        await conn.execute(OrgScope(tasks, org_id).select().where(tasks.c.request_id == request_id))
    ).first()
    return _to_task(row) if row else None


async def list_tasks(
    conn: AsyncConnection,
    org_id: str,
    *,
    status: TaskStatus | None = None,
    task_type: TaskType | None = None,
    assigned_to: str | None = None,
    role_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Task], int]:
    scope = OrgScope(tasks, org_id)
    conditions = []
    if status is not None:
        conditions.append(tasks.c.status == status.value)
    if task_type is not None:
        conditions.append(tasks.c.task_type == task_type.value)
    if assigned_to is not None:
        conditions.append(tasks.c.assigned_to == assigned_to)
    if role_id is not None:
        conditions.append(tasks.c.role_id == role_id)
    query = scope.select().where(*conditions)
    total = (
        await conn.execute(sa.select(sa.func.count()).select_from(query.subquery()))
    ).scalar_one()
    rows = (
        await conn.execute(
            query.order_by(tasks.c.created_at.desc(), tasks.c.id).limit(limit).offset(offset)
        )
    ).all()
    return [_to_task(r) for r in rows], int(total)


async def upsert_member(conn: AsyncConnection, values: dict[str, Any]) -> None:
    statement = pg.insert(members).values(**values, active=True)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[members.c.org_id, members.c.user_id],
            set_={k: statement.excluded[k] for k in (*values, "active") if k not in ("org_id", "user_id")},
        )
    )


async def deactivate_member(conn: AsyncConnection, org_id: str, user_id: str) -> None:
    scope = OrgScope(members, org_id)
    await conn.execute(scope.update().where(members.c.user_id == user_id).values(active=False))


async def list_members(conn: AsyncConnection, org_id: str) -> list[dict[str, Any]]:
    rows = (
        await conn.execute(
            OrgScope(members, org_id).select().where(members.c.active).order_by(members.c.joined_at)
        )
    ).all()
    return [dict(r._mapping) for r in rows]
