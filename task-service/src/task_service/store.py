"""task-service tables (SQLAlchemy Core) and the queries on them; every query on a
tenant table goes through an `OrgScope`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from stayops_kit.tenancy import OrgScope
from stayops_schemas.events.agents import Autonomy
from stayops_schemas.events.org import UserType
from stayops_schemas.events.tasks import Priority, TaskStatus, TaskType
from task_service.domain import OPEN_STATUSES, AgentStanding, Candidate, Task

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
    sa.Column("assignee_type", sa.Text),
    sa.Column("assignment_rule", sa.Text),
    sa.Column("due_at", sa.DateTime(timezone=True)),
    sa.Column("data", pg.JSONB, nullable=False),
    sa.Column("result", pg.JSONB),
    sa.Column("status_reason", sa.Text),
    sa.Column("parent_task_id", sa.Text),
    sa.Column("workflow_run_id", sa.Text),
    sa.Column("workflow_step", sa.Text),
    sa.Column("request_id", sa.Text),
    sa.Column("completed_by", sa.Text),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("tasks_org_created", tasks.c.org_id, tasks.c.created_at.desc(), tasks.c.id)
sa.Index("tasks_org_assignee_status", tasks.c.org_id, tasks.c.assigned_to, tasks.c.status)
sa.Index("tasks_org_role_status", tasks.c.org_id, tasks.c.role_id, tasks.c.status)
sa.Index("tasks_request", tasks.c.org_id, tasks.c.request_id, unique=True,
         postgresql_where=tasks.c.request_id.is_not(None))
sa.Index("tasks_org_run", tasks.c.org_id, tasks.c.workflow_run_id,
         postgresql_where=tasks.c.workflow_run_id.is_not(None))

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
sa.Index("directory_members_role_active", members.c.org_id, members.c.role_id, members.c.user_id,
         postgresql_where=members.c.active)

# Each AI agent's standing as agent-service last announced it (the newest wins).
agent_standing = sa.Table(
    "agent_standing",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("skills", pg.JSONB, nullable=False),
    sa.Column("autonomy", sa.Text, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("org_paused", sa.Boolean, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)

_TASK_FIELDS = [f.name for f in fields(Task)]


def _to_task(row: Any) -> Task:
    values = dict(row._mapping)
    values["task_type"] = TaskType(values["task_type"])
    values["status"] = TaskStatus(values["status"])
    values["priority"] = Priority(values["priority"])
    if values["assignee_type"] is not None:
        values["assignee_type"] = UserType(values["assignee_type"])
    return Task(**{name: values[name] for name in _TASK_FIELDS})


async def insert_task(conn: AsyncConnection, task: Task) -> bool:
    """Insert a new task; False when a task of the org already answers its request
    id (a repeated request), in which case nothing is written."""
    scope = OrgScope(tasks, task.org_id)
    if task.request_id is None:
        await conn.execute(scope.insert(**asdict(task)))
        return True
    # The request-id clash is decided by the unique index, not by a read before the
    # insert, so two deliveries racing each other still create one task.
    statement = (
        pg.insert(tasks)
        .values({**asdict(task), "org_id": scope.org_id})
        .on_conflict_do_nothing(
            index_elements=[tasks.c.org_id, tasks.c.request_id],
            index_where=tasks.c.request_id.is_not(None),
        )
        .returning(tasks.c.id)
    )
    return (await conn.execute(statement)).first() is not None


async def update_task(conn: AsyncConnection, task: Task) -> None:
    """Write the fields a task's life changes: status, assignee, result, reason, who
    finished it, due time."""
    scope = OrgScope(tasks, task.org_id)
    await conn.execute(
        scope.update()
        .where(tasks.c.id == task.id)
        .values(
            status=task.status.value,
            assigned_to=task.assigned_to,
            assignee_type=task.assignee_type.value if task.assignee_type else None,
            assignment_rule=task.assignment_rule,
            result=task.result,
            status_reason=task.status_reason,
            completed_by=task.completed_by,
            due_at=task.due_at,
            updated_at=task.updated_at,
        )
    )


async def get_task(
    conn: AsyncConnection, org_id: str, task_id: str, *, for_update: bool = False
) -> Task | None:
    query = OrgScope(tasks, org_id).select().where(tasks.c.id == task_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return _to_task(row) if row else None


async def lock_open_tasks_of(conn: AsyncConnection, org_id: str, user_id: str) -> list[Task]:
    rows = (
        await conn.execute(
            OrgScope(tasks, org_id)
            .select()
            .where(tasks.c.assigned_to == user_id, tasks.c.status.in_([s.value for s in OPEN_STATUSES]))
            .order_by(tasks.c.created_at, tasks.c.id)
            .with_for_update()
        )
    ).all()
    return [_to_task(r) for r in rows]


async def lock_queued_role_tasks(conn: AsyncConnection, org_id: str, role_id: str) -> list[Task]:
    """Open tasks waiting in a role's queue (no assignee yet), oldest first, locked."""
    rows = (
        await conn.execute(
            OrgScope(tasks, org_id)
            .select()
            .where(tasks.c.role_id == role_id, tasks.c.assigned_to.is_(None),
                   tasks.c.status.in_([s.value for s in OPEN_STATUSES]))
            .order_by(tasks.c.created_at, tasks.c.id)
            .with_for_update()
        )
    ).all()
    return [_to_task(r) for r in rows]


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
    workflow_run_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Task], int]:
    scope = OrgScope(tasks, org_id)
    conditions = []
    if workflow_run_id is not None:
        conditions.append(tasks.c.workflow_run_id == workflow_run_id)
    if status is not None:
        conditions.append(tasks.c.status == status.value)
    if task_type is not None:
        conditions.append(tasks.c.task_type == task_type.value)
    if assigned_to is not None:
        conditions.append(tasks.c.assigned_to == assigned_to)
    if role_id is not None:
        conditions.append(tasks.c.role_id == role_id)
    return await _page(conn, scope.select().where(*conditions), limit, offset)


async def upsert_member(conn: AsyncConnection, values: dict[str, Any], *, joined: bool) -> None:
    """Record a membership as it now stands. Only a join moves `joined_at`: an update
    keeps the membership's age, which the assignment rule ranks by."""
    statement = pg.insert(members).values(**values, active=True)
    kept = {"org_id", "user_id"} | (set() if joined else {"joined_at"})
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[members.c.org_id, members.c.user_id],
            set_={k: statement.excluded[k] for k in (*values, "active") if k not in kept},
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


async def lock_role_candidates(conn: AsyncConnection, org_id: str, role_id: str) -> list[Candidate]:
    """The active members of a role with their open-task counts. Their directory rows
    stay locked until the transaction ends, so two tasks assigned to one role at the
    same moment see each other's count."""
    scope = OrgScope(members, org_id)
    locked = (
        await conn.execute(
            scope.select(members.c.user_id, members.c.user_type, members.c.joined_at)
            .where(members.c.role_id == role_id, members.c.active)
            .order_by(members.c.user_id)
            .with_for_update()
        )
    ).all()
    if not locked:
        return []
    open_counts = dict(
        (
            await conn.execute(
                OrgScope(tasks, org_id)
                .select(tasks.c.assigned_to, sa.func.count())
                .where(
                    tasks.c.assigned_to.in_([row.user_id for row in locked]),
                    tasks.c.status.in_([s.value for s in OPEN_STATUSES]),
                )
                .group_by(tasks.c.assigned_to)
            )
        ).all()
    )
    # Read after the members' locks: a kill switch applied meanwhile is seen.
    standings = await standings_of(conn, org_id, [row.user_id for row in locked
                                                  if row.user_type == UserType.AI_AGENT.value])
    return [
        Candidate(
            user_id=row.user_id,
            user_type=UserType(row.user_type),
            joined_at=row.joined_at,
            open_tasks=int(open_counts.get(row.user_id, 0)),
            standing=standings.get(row.user_id),
        )
        for row in locked
    ]


async def standings_of(conn: AsyncConnection, org_id: str, user_ids: Sequence[str]) -> dict[str, AgentStanding]:
    if not user_ids:
        return {}
    rows = (await conn.execute(
        OrgScope(agent_standing, org_id).select().where(agent_standing.c.user_id.in_(list(user_ids)))
    )).all()
    return {row.user_id: AgentStanding(skills=frozenset(row.skills), autonomy=Autonomy(row.autonomy),
                                       paused=row.paused, org_paused=row.org_paused) for row in rows}


async def save_standing(conn: AsyncConnection, org_id: str, user_id: str, standing: AgentStanding,
                        changed_at: datetime) -> bool:
    """Keep the agent's standing unless a newer one is kept; whether this one was."""
    statement = OrgScope(agent_standing, org_id).upsert_newest(
        [{"user_id": user_id, "skills": sorted(standing.skills), "autonomy": standing.autonomy.value,
          "paused": standing.paused, "org_paused": standing.org_paused, "changed_at": changed_at}],
        key=["user_id"], version="changed_at",
    ).returning(agent_standing.c.user_id)
    return (await conn.execute(statement)).first() is not None


async def lock_member_and_role(conn: AsyncConnection, org_id: str, user_id: str) -> None:
    """Hold the directory rows of a member and of everyone in its role, in user id
    order as the assignment rule takes them (`lock_role_candidates`), so a change to
    the member and an assignment to its role happen one after the other."""
    role = sa.select(members.c.role_id).where(members.c.org_id == org_id, members.c.user_id == user_id)
    await conn.execute(
        OrgScope(members, org_id).select(members.c.user_id)
        .where(sa.or_(members.c.user_id == user_id, members.c.role_id == role.scalar_subquery()))
        .order_by(members.c.user_id)
        .with_for_update()
    )


async def member_type(conn: AsyncConnection, org_id: str, user_id: str) -> UserType | None:
    """Whether an active member is a person or an AI agent; None if not in the directory."""
    found = (
        await conn.execute(
            OrgScope(members, org_id)
            .select(members.c.user_type)
            .where(members.c.user_id == user_id, members.c.active)
        )
    ).scalar_one_or_none()
    return UserType(found) if found is not None else None


async def inbox(
    conn: AsyncConnection,
    org_id: str,
    *,
    user_id: str,
    role_id: str | None,
    status: TaskStatus | None = None,
    task_type: TaskType | None = None,
    priority: Priority | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Task], int]:
    """Tasks assigned to the user, or waiting unassigned in the user's role."""
    mine: sa.ColumnElement[bool] = tasks.c.assigned_to == user_id
    if role_id is not None:
        mine = sa.or_(mine, sa.and_(tasks.c.role_id == role_id, tasks.c.assigned_to.is_(None)))
    conditions = [mine]
    if status is not None:
        conditions.append(tasks.c.status == status.value)
    if task_type is not None:
        conditions.append(tasks.c.task_type == task_type.value)
    if priority is not None:
        conditions.append(tasks.c.priority == priority.value)
    return await _page(conn, OrgScope(tasks, org_id).select().where(*conditions), limit, offset)


async def _page(conn: AsyncConnection, query: sa.Select[Any], limit: int, offset: int) -> tuple[list[Task], int]:
    total = (
        await conn.execute(sa.select(sa.func.count()).select_from(query.subquery()))
    ).scalar_one()
    rows = (
        await conn.execute(
            query.order_by(tasks.c.created_at.desc(), tasks.c.id).limit(limit).offset(offset)
        )
    ).all()
    return [_to_task(r) for r in rows], int(total)
