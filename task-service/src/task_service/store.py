"""task-service tables (SQLAlchemy Core) and the queries on them; every query on a
tenant table goes through an `OrgScope`."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from stayops_kit import pages
from stayops_kit.outbox import UnitOfWork
from stayops_kit.tenancy import OrgScope, OrgTemplate
from stayops_schemas.events.agents import Autonomy
from stayops_schemas.events.org import UserType
from stayops_schemas.events.tasks import Priority, TaskStatus, TaskType
from task_service import sla
from task_service.domain import (
    DONE_STATUSES,
    OPEN_STATUSES,
    Actor,
    AgentStanding,
    Candidate,
    Task,
    changed_fields,
)
from task_service.sla import SlaPolicy

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
    sa.Column("labels", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("required", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("project_id", sa.Text),
    sa.Column("milestone_id", sa.Text),
    sa.Column("listing_id", sa.Text),
    # People who may decide the task besides its assignee (an escalation that adds one).
    sa.Column("reviewers", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    # Title (weight A), description (B) and comments, for `q` (migration 0010).
    sa.Column("search", pg.TSVECTOR),
    sa.Column("priority_rank", sa.SmallInteger, sa.Computed(
        "CASE priority WHEN 'low' THEN 1 WHEN 'medium' THEN 2 WHEN 'high' THEN 3 ELSE 4 END", persisted=True)),
)
# Sorted by a due date, a task with none comes last.
due_key = sa.func.coalesce(tasks.c.due_at, sa.text("'infinity'::timestamptz"))
sa.Index("tasks_org_parent", tasks.c.org_id, tasks.c.parent_task_id,
         postgresql_where=tasks.c.parent_task_id.is_not(None))
sa.Index("tasks_org_department_status", tasks.c.org_id, tasks.c.department_id, tasks.c.status,
         postgresql_where=tasks.c.assigned_to.is_(None))
sa.Index("tasks_labels", tasks.c.labels, postgresql_using="gin")
sa.Index("tasks_reviewers", tasks.c.reviewers, postgresql_using="gin")
sa.Index("tasks_org_created", tasks.c.org_id, tasks.c.created_at, tasks.c.id)
sa.Index("tasks_org_updated", tasks.c.org_id, tasks.c.updated_at, tasks.c.id)
sa.Index("tasks_org_priority", tasks.c.org_id, tasks.c.priority_rank, tasks.c.id)
sa.Index("tasks_org_project", tasks.c.org_id, tasks.c.project_id, tasks.c.milestone_id,
         postgresql_where=tasks.c.project_id.is_not(None))
sa.Index("tasks_org_listing", tasks.c.org_id, tasks.c.listing_id, postgresql_where=tasks.c.listing_id.is_not(None))
sa.Index("tasks_search", tasks.c.search, postgresql_using="gin")
sa.Index("tasks_org_assignee_status", tasks.c.org_id, tasks.c.assigned_to, tasks.c.status)
sa.Index("tasks_org_role_status", tasks.c.org_id, tasks.c.role_id, tasks.c.status)
sa.Index("tasks_request", tasks.c.org_id, tasks.c.request_id, unique=True,
         postgresql_where=tasks.c.request_id.is_not(None))
sa.Index("tasks_org_run", tasks.c.org_id, tasks.c.workflow_run_id,
         postgresql_where=tasks.c.workflow_run_id.is_not(None))
# The inbox (migration 0011): open tasks by due date, per assignee, and the unassigned
# ones per role and per department queue; each branch of the inbox reads one in order.
_OPEN = tasks.c.status.in_(["pending", "in_progress", "blocked"])
sa.Index("tasks_inbox_assignee", tasks.c.org_id, tasks.c.assigned_to, due_key, tasks.c.id, postgresql_where=_OPEN)
sa.Index("tasks_inbox_role", tasks.c.org_id, tasks.c.role_id, due_key, tasks.c.id,
         postgresql_where=sa.and_(_OPEN, tasks.c.assigned_to.is_(None)))
sa.Index("tasks_inbox_department", tasks.c.org_id, tasks.c.department_id, due_key, tasks.c.id,
         postgresql_where=sa.and_(_OPEN, tasks.c.assigned_to.is_(None)))
# A person's calendar (`assignee=` and a due range); the board's columns by status.
sa.Index("tasks_org_assignee_due", tasks.c.org_id, tasks.c.assigned_to, due_key, tasks.c.id)
sa.Index("tasks_org_status_created", tasks.c.org_id, tasks.c.status, tasks.c.created_at, tasks.c.id)

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

# Every change to a task, with who made it and when, written in the change's transaction.
history = sa.Table(
    "task_history",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("task_id", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("actor_type", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("changes", pg.JSONB, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)
sa.Index("task_history_task", history.c.org_id, history.c.task_id, history.c.id)

comments = sa.Table(
    "task_comments",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("task_id", sa.Text, nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("mentions", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("task_comments_task", comments.c.org_id, comments.c.task_id, comments.c.created_at, comments.c.id)

watchers = sa.Table(
    "task_watchers",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("task_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("owner_user_id", sa.Text),
    sa.Column("listing_id", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("start_date", sa.Date),
    sa.Column("target_date", sa.Date),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The project's own SLA policy (`sla.SlaPolicy.as_json`); null: the org's.
    sa.Column("sla_policy", pg.JSONB),
)
sa.Index("projects_org_created", projects.c.org_id, projects.c.created_at, projects.c.id)

milestones = sa.Table(
    "milestones",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("target_date", sa.Date),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="active"),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
sa.Index("milestones_project", milestones.c.org_id, milestones.c.project_id, milestones.c.target_date)

# `task_id` is blocked by `blocker_id` (both of the org; any projects).
dependencies = sa.Table(
    "task_dependencies",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("task_id", sa.Text, primary_key=True),
    sa.Column("blocker_id", sa.Text, primary_key=True),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("task_dependencies_blocker", dependencies.c.org_id, dependencies.c.blocker_id)

# Each org's SLA policy (`sla.SlaPolicy.as_json`); a project may have its own.
sla_policies = sa.Table(
    "sla_policies",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("policy", pg.JSONB, nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# One durable timer per open task with a due time and an SLA policy: the next stage
# (reminder, due, escalation step) fires at `fire_at`; `last_offset` is the offset
# from `due_at` of the stage fired last. Moving the due time re-arms it from the
# first stage; finishing the task deletes it.
due_timers = sa.Table(
    "task_due_timers",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("task_id", sa.Text, primary_key=True),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_offset", sa.Interval),
    sa.Column("fire_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("armed_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("task_due_timers_fire", due_timers.c.fire_at)

_TASK_FIELDS = [f.name for f in fields(Task)]
# What a task's answer needs (not its search vector).
TASK_COLUMNS = [c for c in tasks.c if c.name not in {"search", "priority_rank"}]


def _search_of(title: Any, description: Any) -> Any:
    """Title and description as a text-search vector, the title weighing more."""
    def vector(text: Any, weight: str) -> Any:
        return sa.func.setweight(sa.func.to_tsvector("english", sa.func.coalesce(text, "")),
                                 sa.literal_column(f"'{weight}'"))
    return vector(title, "A").op("||")(vector(description, "B"))


# Enum members by value: a dict lookup per field instead of the Enum call (a list
# view reads up to 2,000 rows; measured, the row conversion was most of its time).
_TYPES = {m.value: m for m in TaskType}
_STATUSES = {m.value: m for m in TaskStatus}
_PRIORITIES = {m.value: m for m in Priority}
_USER_TYPES = {m.value: m for m in UserType}


def _to_task(row: Any) -> Task:
    mapping = row._mapping  # read by name: dict(row._mapping) builds the row's keys view each time
    values = {name: mapping[name] for name in _TASK_FIELDS}
    values["task_type"] = _TYPES[values["task_type"]]
    values["status"] = _STATUSES[values["status"]]
    values["priority"] = _PRIORITIES[values["priority"]]
    if values["assignee_type"] is not None:
        values["assignee_type"] = _USER_TYPES[values["assignee_type"]]
    values["labels"] = tuple(values["labels"] or ())
    values["reviewers"] = tuple(values["reviewers"] or ())
    return Task(**values)


def _to_tasks(rows: Sequence[Any]) -> list[Task]:
    """Many rows of one result as tasks, for the list views (up to 2,000 rows): the
    fields' positions are found once, each row read by position, and each task made
    without the frozen dataclass's per-field `object.__setattr__` — measured, that
    conversion was most of a 500-task calendar's time (the query took 1 ms)."""
    if not rows:
        return []
    fields_at = operator.itemgetter(*[list(rows[0]._fields).index(name) for name in _TASK_FIELDS])
    found = []
    new = object.__new__
    for row in rows:
        values = dict(zip(_TASK_FIELDS, fields_at(row), strict=True))
        values["task_type"] = _TYPES[values["task_type"]]
        values["status"] = _STATUSES[values["status"]]
        values["priority"] = _PRIORITIES[values["priority"]]
        if values["assignee_type"] is not None:
            values["assignee_type"] = _USER_TYPES[values["assignee_type"]]
        values["labels"] = tuple(values["labels"] or ())
        values["reviewers"] = tuple(values["reviewers"] or ())
        task = new(Task)
        task.__dict__.update(values)  # every field of Task, as its __init__ would set them
        found.append(task)
    return found


# The writes of every task's life, built (and compiled) once: building an INSERT or
# UPDATE of twenty-odd columns from their values each time cost more CPU than
# PostgreSQL spent running it (measured, a fifth of task-service's time in a saga).
_SEARCH = _search_of(sa.bindparam("search_title", type_=sa.Text), sa.bindparam("search_description", type_=sa.Text))
_INSERT_TASK = OrgTemplate(tasks).insert(search=_SEARCH)
_INSERT_REQUESTED_TASK = _INSERT_TASK.on_conflict_do_nothing(
    index_elements=[tasks.c.org_id, tasks.c.request_id],
    index_where=tasks.c.request_id.is_not(None),
).returning(tasks.c.id)
_UPDATED_COLUMNS = ("project_id", "milestone_id", "title", "description", "priority", "role_id",
                    "department_id", "labels", "reviewers", "version", "status", "assigned_to",
                    "assignee_type", "assignment_rule", "result", "status_reason", "completed_by",
                    "due_at", "updated_at")
_UPDATE_TASK = OrgTemplate(tasks).update_columns(tasks.c.id, _UPDATED_COLUMNS)
# A changed title or description: the search vector again, with the task's comments.
_COMMENTS_SAID = (sa.select(sa.func.string_agg(comments.c.body, " "))
                  .where(comments.c.org_id == tasks.c.org_id, comments.c.task_id == tasks.c.id)
                  .scalar_subquery())
_UPDATE_TASK_AND_SEARCH = _UPDATE_TASK.values(
    search=_SEARCH.op("||")(sa.func.to_tsvector("english", sa.func.coalesce(_COMMENTS_SAID, ""))))
_GET_TASK = OrgTemplate(tasks).select().where(tasks.c.id == sa.bindparam("task_id", type_=sa.Text, required=True))
_LOCK_TASK = _GET_TASK.with_for_update()


def _row(task: Task) -> dict[str, Any]:
    """The task as its INSERT's parameters."""
    return {**asdict(task), "labels": list(task.labels), "reviewers": list(task.reviewers),
            "search_title": task.title, "search_description": task.description}


async def insert_task(uow: UnitOfWork, task: Task, by: Actor) -> bool:
    """Insert a new task and its first history entry; False when a task of the org
    already answers its request id (a repeated request), in which case nothing is written."""
    conn = uow.conn
    if task.request_id is None:
        await conn.execute(_INSERT_TASK, _row(task))
        _record(uow, None, task, by)
        await sync_due_timer(conn, None, task)
        return True
    # The request-id clash is decided by the unique index, not by a read before the
    # insert, so two deliveries racing each other still create one task.
    inserted = (await conn.execute(_INSERT_REQUESTED_TASK, _row(task))).first() is not None
    if inserted:
        _record(uow, None, task, by)
        await sync_due_timer(conn, None, task)
    return inserted


async def update_task(uow: UnitOfWork, task: Task, by: Actor, *, before: Task | None = None) -> Task:
    """Write what a change made of the task, one version on, and the history entry
    saying what changed, who changed it and when (in the same transaction). The
    caller holds the task's row lock. Answers the task as written. `before`: the row
    as the caller read it under that lock in this transaction, unchanged since (it
    is not read again); otherwise it is read here."""
    conn = uow.conn
    if before is None:
        before = await get_task(conn, task.org_id, task.id)
    task = replace(task, version=(before.version if before else task.version) + 1)
    values = {name: getattr(task, name) for name in _UPDATED_COLUMNS}
    values.update(labels=list(task.labels), reviewers=list(task.reviewers), priority=task.priority.value,
                  status=task.status.value, assignee_type=task.assignee_type.value if task.assignee_type else None)
    retitled = before is None or (before.title, before.description) != (task.title, task.description)
    search = {"search_title": task.title, "search_description": task.description} if retitled else {}
    await conn.execute(_UPDATE_TASK_AND_SEARCH if retitled else _UPDATE_TASK,
                       OrgTemplate.update_parameters(task.org_id, task.id, values, **search))
    _record(uow, before, task, by)
    await sync_due_timer(conn, before, task)
    return task


def _record(uow: UnitOfWork, before: Task | None, after: Task, by: Actor) -> None:
    _history(uow, after, by, changed_fields(before, after), after.updated_at, after.version)


def _history(uow: UnitOfWork, task: Task, by: Actor, changes: dict[str, Any], at: datetime, version: int) -> None:
    """A history entry, inserted at the end of the transaction with the others (one
    statement for a consumer batch's entries, in the order they were made). Nothing
    reads a task's history in the transaction that writes it."""
    uow.defer_insert(history, {
        "org_id": task.org_id, "task_id": task.id, "at": at, "actor": by.id, "actor_type": by.type,
        "action": by.action, "changes": changes, "version": version})


async def history_of(conn: AsyncConnection, org_id: str, task_id: str, *, limit: int, offset: int
                     ) -> list[dict[str, Any]]:
    rows = (await conn.execute(
        OrgScope(history, org_id).select().where(history.c.task_id == task_id)
        .order_by(history.c.id).limit(limit).offset(offset))).all()
    return [dict(r._mapping) for r in rows]


async def subtasks_of(conn: AsyncConnection, org_id: str, parent_id: str) -> list[Task]:
    rows = (await conn.execute(
        OrgScope(tasks, org_id).select().where(tasks.c.parent_task_id == parent_id)
        .order_by(tasks.c.created_at, tasks.c.id))).all()
    return [_to_task(r) for r in rows]


async def progress_of(conn: AsyncConnection, org_id: str, parent_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """For each parent among these: (subtasks done, subtasks in all); cancelled ones count as done."""
    if not parent_ids:
        return {}
    done = sa.func.count().filter(tasks.c.status.in_([s.value for s in DONE_STATUSES]))
    rows = (await conn.execute(
        OrgScope(tasks, org_id).select(tasks.c.parent_task_id, done, sa.func.count())
        .where(tasks.c.parent_task_id.in_(list(parent_ids))).group_by(tasks.c.parent_task_id))).all()
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


async def add_comment(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """A comment, and its words added to its task's search vector."""
    await conn.execute(OrgScope(comments, values["org_id"]).insert(
        **{k: v for k, v in values.items() if k != "org_id"}))
    await conn.execute(OrgScope(tasks, values["org_id"]).update().where(tasks.c.id == values["task_id"]).values(
        search=sa.func.coalesce(tasks.c.search, sa.text("''::tsvector")).op("||")(
            sa.func.to_tsvector("english", values["body"]))))


async def comments_of(conn: AsyncConnection, org_id: str, task_id: str, *, limit: int, offset: int
                      ) -> list[dict[str, Any]]:
    rows = (await conn.execute(
        OrgScope(comments, org_id).select().where(comments.c.task_id == task_id)
        .order_by(comments.c.created_at, comments.c.id).limit(limit).offset(offset))).all()
    return [dict(r._mapping) for r in rows]


async def add_watcher(conn: AsyncConnection, org_id: str, task_id: str, user_id: str, at: datetime) -> bool:
    statement = (pg.insert(watchers).values(org_id=org_id, task_id=task_id, user_id=user_id, added_at=at)
                 .on_conflict_do_nothing().returning(watchers.c.user_id))
    return (await conn.execute(statement)).first() is not None


async def remove_watcher(conn: AsyncConnection, org_id: str, task_id: str, user_id: str) -> bool:
    result = await conn.execute(OrgScope(watchers, org_id).delete()
                                .where(watchers.c.task_id == task_id, watchers.c.user_id == user_id))
    return bool(result.rowcount)


async def watchers_of(conn: AsyncConnection, org_id: str, task_id: str) -> list[str]:
    rows = (await conn.execute(OrgScope(watchers, org_id).select(watchers.c.user_id)
                               .where(watchers.c.task_id == task_id).order_by(watchers.c.user_id))).all()
    return [r.user_id for r in rows]


async def get_task(
    conn: AsyncConnection, org_id: str, task_id: str, *, for_update: bool = False
) -> Task | None:
    row = (await conn.execute(_LOCK_TASK if for_update else _GET_TASK,
                              {OrgTemplate.PARAMETER: org_id, "task_id": task_id})).first()
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
    department_id: str | None = None,
    statuses: Sequence[str] = (),
    types: Sequence[str] = (),
    priorities: Sequence[str] = (),
    limit: int = 50,
    after: tuple[Any, str] | None = None,
) -> tuple[list[Task], tuple[Any, str] | None]:
    """A keyset page of the tasks assigned to the user or naming them a reviewer, or waiting unassigned in the
    user's team: their role's queue, or their department's (a department task that
    names no role, or a role nobody of the department holds, is seen by the
    department's members). Open tasks unless `statuses` say otherwise; by due time,
    so the overdue come first, then the due soonest, then those with no due time
    (then by id). Each of the three sources is read in that order from its own index
    (`tasks_inbox_*`) and merged: no count, no sort of the whole team's work. Returns
    the page and the position of its last task if there are more (None: the last page)."""
    await custom_plans(conn)
    statement = _inbox_statement(role_id is not None, department_id is not None, bool(types), bool(priorities),
                                 after is not None)
    parameters: dict[str, Any] = {OrgTemplate.PARAMETER: org_id, "user_id": user_id, "user_ids": [user_id],
                                  "role_id": role_id, "department_id": department_id,
                                  "statuses": list(statuses or [s.value for s in OPEN_STATUSES]),
                                  "types": list(types), "priorities": list(priorities), "limit": limit + 1}
    if after is not None:
        parameters["after_key"], parameters["after_id"] = after
    rows = (await conn.execute(statement, parameters)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return _to_tasks(rows), ((rows[-1].sort_key, rows[-1].id) if more and rows else None)


@functools.lru_cache(maxsize=32)
def _inbox_statement(role: bool, department: bool, types: bool, priorities: bool, after: bool) -> sa.Select[Any]:
    """The inbox's statement for one shape of the request, built once: its values are
    parameters. Building the union of three or four selects of every task column took
    most of the inbox's time (~5 ms of Python against 0.3 ms in PostgreSQL)."""
    conditions: list[sa.ColumnElement[bool]] = [tasks.c.status.in_(sa.bindparam("statuses", expanding=True))]
    if types:
        conditions.append(tasks.c.task_type.in_(sa.bindparam("types", expanding=True)))
    if priorities:
        conditions.append(tasks.c.priority.in_(sa.bindparam("priorities", expanding=True)))
    if after:
        conditions.append(sa.tuple_(due_key, tasks.c.id) > sa.tuple_(
            sa.bindparam("after_key", type_=tasks.c.due_at.type), sa.bindparam("after_id", type_=sa.Text)))
    user = sa.bindparam("user_id", type_=sa.Text)
    sources: list[sa.ColumnElement[bool]] = [
        tasks.c.assigned_to == user,
        # a reviewer an escalation added (rare: the GIN index `tasks_reviewers` finds them)
        sa.and_(tasks.c.reviewers.contains(sa.bindparam("user_ids", type_=pg.ARRAY(sa.Text))),
                tasks.c.assigned_to.is_distinct_from(user)),
    ]
    role_id = sa.bindparam("role_id", type_=sa.Text)
    if role:
        sources.append(sa.and_(tasks.c.assigned_to.is_(None), tasks.c.role_id == role_id))
    if department:
        queue = sa.and_(tasks.c.assigned_to.is_(None),
                        tasks.c.department_id == sa.bindparam("department_id", type_=sa.Text))
        if role:  # the role's queue is read above
            queue = sa.and_(queue, tasks.c.role_id.is_distinct_from(role_id))
        sources.append(queue)
    limit = sa.bindparam("limit", type_=sa.Integer)
    branches = [OrgTemplate(tasks).select(*TASK_COLUMNS, due_key.label("sort_key"))
                .where(source, *conditions).order_by(due_key, tasks.c.id).limit(limit)
                for source in sources]
    merged = sa.union_all(*branches).subquery("inbox")
    return sa.select(merged).order_by(merged.c.sort_key, merged.c.id).limit(limit)


# -- dependencies -------------------------------------------------------------------

async def lock_dependencies(conn: AsyncConnection, org_id: str) -> None:
    """One change to an org's dependency graph at a time (until the transaction ends),
    so two dependencies added at once cannot close a cycle neither saw."""
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext("task_dependencies:" + org_id))))


_CYCLE = sa.text("""
WITH RECURSIVE walk(task_id, path) AS (
    SELECT d.blocker_id, ARRAY[d.task_id, d.blocker_id]
      FROM task_dependencies d WHERE d.org_id = :org AND d.task_id = :start
    UNION ALL
    SELECT d.blocker_id, w.path || d.blocker_id
      FROM walk w JOIN task_dependencies d ON d.org_id = :org AND d.task_id = w.task_id
     WHERE NOT d.blocker_id = ANY(w.path)
)
SELECT path FROM walk WHERE task_id = :goal LIMIT 1
""")


async def find_cycle(conn: AsyncConnection, org_id: str, task_id: str, blocker_id: str) -> list[str] | None:
    """The cycle `task_id` blocked by `blocker_id` would close, as task ids from the
    task back to itself (each blocked by the next); None: it closes none."""
    if task_id == blocker_id:
        return [task_id, task_id]
    path = (await conn.execute(_CYCLE, {"org": org_id, "start": blocker_id, "goal": task_id})).scalar_one_or_none()
    return None if path is None else [task_id, *path]


async def add_dependency(conn: AsyncConnection, org_id: str, task_id: str, blocker_id: str, by: str,
                         at: datetime) -> bool:
    statement = (pg.insert(dependencies)
                 .values(org_id=org_id, task_id=task_id, blocker_id=blocker_id, created_by=by, created_at=at)
                 .on_conflict_do_nothing().returning(dependencies.c.task_id))
    return (await conn.execute(statement)).first() is not None


async def remove_dependency(conn: AsyncConnection, org_id: str, task_id: str, blocker_id: str) -> bool:
    result = await conn.execute(OrgScope(dependencies, org_id).delete().where(
        dependencies.c.task_id == task_id, dependencies.c.blocker_id == blocker_id))
    return bool(result.rowcount)


async def blockers_of(conn: AsyncConnection, org_id: str, task_id: str) -> list[Task]:
    """The tasks this task is blocked by."""
    rows = (await conn.execute(
        sa.select(*TASK_COLUMNS).join(dependencies, sa.and_(
            dependencies.c.org_id == tasks.c.org_id, dependencies.c.blocker_id == tasks.c.id))
        .where(dependencies.c.org_id == org_id, dependencies.c.task_id == task_id)
        .order_by(dependencies.c.created_at, tasks.c.id))).all()
    return [_to_task(r) for r in rows]


# Every completion asks which tasks it blocked: built (and compiled) once.
_BLOCKED_BY = (sa.select(*TASK_COLUMNS)
               .join(dependencies, sa.and_(dependencies.c.org_id == tasks.c.org_id,
                                           dependencies.c.task_id == tasks.c.id))
               .where(OrgTemplate(dependencies).where,
                      dependencies.c.blocker_id == sa.bindparam("blocker_id", type_=sa.Text, required=True))
               .order_by(tasks.c.id))
_LOCK_BLOCKED_BY = _BLOCKED_BY.with_for_update(of=tasks)


async def blocked_by_this(conn: AsyncConnection, org_id: str, blocker_id: str, *, lock: bool = False) -> list[Task]:
    """The tasks this task blocks (locked, with `lock`)."""
    rows = (await conn.execute(_LOCK_BLOCKED_BY if lock else _BLOCKED_BY,
                               {OrgTemplate.PARAMETER: org_id, "blocker_id": blocker_id})).all()
    return [_to_task(r) for r in rows]


def note(uow: UnitOfWork, task: Task, by: Actor, changes: dict[str, Any], at: datetime) -> None:
    """A history entry for something that happened to the task without changing its
    fields (a dependency added or removed, the task unblocked)."""
    _history(uow, task, by, changes, at, task.version)


# -- projects and milestones ----------------------------------------------------------

async def insert_project(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(OrgScope(projects, values["org_id"]).insert(**values))


async def get_project(conn: AsyncConnection, org_id: str, project_id: str, *, for_update: bool = False
                      ) -> dict[str, Any] | None:
    query = OrgScope(projects, org_id).select().where(projects.c.id == project_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return dict(row._mapping) if row else None


async def update_project(conn: AsyncConnection, org_id: str, project_id: str, values: dict[str, Any]) -> None:
    await conn.execute(OrgScope(projects, org_id).update().where(projects.c.id == project_id).values(**values))


async def list_projects(conn: AsyncConnection, org_id: str, *, status: Sequence[str], listing_id: str | None,
                        limit: int, after: tuple[datetime, str] | None) -> list[dict[str, Any]]:
    query = OrgScope(projects, org_id).select()
    if status:
        query = query.where(projects.c.status.in_(list(status)))
    if listing_id is not None:
        query = query.where(projects.c.listing_id == listing_id)
    if after is not None:
        query = query.where(pages.after([projects.c.created_at, projects.c.id], after, descending=False))
    rows = (await conn.execute(query.order_by(projects.c.created_at, projects.c.id).limit(limit + 1))).all()
    return [dict(r._mapping) for r in rows]


async def insert_milestone(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(OrgScope(milestones, values["org_id"]).insert(**values))


async def get_milestone(conn: AsyncConnection, org_id: str, milestone_id: str, *, for_update: bool = False
                        ) -> dict[str, Any] | None:
    query = OrgScope(milestones, org_id).select().where(milestones.c.id == milestone_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return dict(row._mapping) if row else None


async def update_milestone(conn: AsyncConnection, org_id: str, milestone_id: str, values: dict[str, Any]) -> None:
    await conn.execute(OrgScope(milestones, org_id).update().where(milestones.c.id == milestone_id).values(**values))


async def milestones_of(conn: AsyncConnection, org_id: str, project_id: str) -> list[dict[str, Any]]:
    rows = (await conn.execute(
        OrgScope(milestones, org_id).select().where(milestones.c.project_id == project_id)
        .order_by(milestones.c.target_date.asc().nulls_last(), milestones.c.created_at, milestones.c.id))).all()
    return [dict(r._mapping) for r in rows]


async def project_rollup(conn: AsyncConnection, org_id: str, project_id: str) -> dict[str | None, dict[str, Any]]:
    """Per milestone (None: the tasks in no milestone) of the project: tasks done
    (completed or cancelled), in all, open, the latest due time of the open ones, and
    the median time a completed one took (created to completed), in seconds."""
    done_values = [s.value for s in DONE_STATUSES]
    open_values = [s.value for s in OPEN_STATUSES]
    completed = tasks.c.status == TaskStatus.COMPLETED.value
    took = sa.func.extract("epoch", tasks.c.updated_at - tasks.c.created_at)
    rows = (await conn.execute(
        OrgScope(tasks, org_id).select(
            tasks.c.milestone_id,
            sa.func.count().filter(tasks.c.status.in_(done_values)).label("done"),
            sa.func.count().label("total"),
            sa.func.count().filter(tasks.c.status.in_(open_values)).label("open"),
            sa.func.max(tasks.c.due_at).filter(tasks.c.status.in_(open_values)).label("latest_due"),
            sa.func.percentile_cont(0.5).within_group(took).filter(completed).label("median_s"),
            sa.func.array_agg(took).filter(completed).label("durations"),
        ).where(tasks.c.project_id == project_id).group_by(tasks.c.milestone_id))).all()
    return {row.milestone_id: dict(row._mapping) for row in rows}


async def project_tasks(conn: AsyncConnection, org_id: str, project_id: str, *, limit: int) -> list[Task]:
    rows = (await conn.execute(
        OrgScope(tasks, org_id).select(*TASK_COLUMNS).where(tasks.c.project_id == project_id)
        .order_by(due_key, tasks.c.created_at, tasks.c.id).limit(limit))).all()
    return [_to_task(r) for r in rows]


# -- list views: one filter language, keyset pages, counts, board, calendar -------------

@dataclass(frozen=True)
class TaskFilter:
    """What a list view shows; each tuple matches any of its values (empty: no filter).
    `None` among assignees, parents or projects matches a task with none."""

    statuses: tuple[str, ...] = ()
    assignees: tuple[str | None, ...] = ()
    roles: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    projects: tuple[str | None, ...] = ()
    milestones: tuple[str, ...] = ()
    listings: tuple[str, ...] = ()
    parents: tuple[str | None, ...] = ()
    workflow_run_id: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    q: str | None = None


def _any_of(column: Any, values: Sequence[Any]) -> sa.ColumnElement[bool]:
    named = [v for v in values if v is not None]
    either = []
    if named:
        either.append(column.in_(named))
    if len(named) < len(values):
        either.append(column.is_(None))
    return sa.or_(*either)


def filter_conditions(f: TaskFilter) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    for column, values in ((tasks.c.status, f.statuses), (tasks.c.assigned_to, f.assignees),
                           (tasks.c.role_id, f.roles), (tasks.c.department_id, f.departments),
                           (tasks.c.priority, f.priorities), (tasks.c.task_type, f.types),
                           (tasks.c.project_id, f.projects), (tasks.c.milestone_id, f.milestones),
                           (tasks.c.listing_id, f.listings), (tasks.c.parent_task_id, f.parents)):
        if values:
            conditions.append(_any_of(column, values))
    if f.labels:
        conditions.append(tasks.c.labels.overlap(sa.cast(list(f.labels), pg.ARRAY(sa.Text))))
    if f.workflow_run_id is not None:
        conditions.append(tasks.c.workflow_run_id == f.workflow_run_id)
    if f.due_before is not None:
        conditions.append(tasks.c.due_at < f.due_before)
    if f.due_after is not None:
        conditions.append(tasks.c.due_at >= f.due_after)
    if f.q:
        conditions.append(tasks.c.search.op("@@")(sa.func.websearch_to_tsquery("english", f.q)))
    return conditions


# Each sort's key (before the id, which breaks ties): `-key` reads it backwards.
SORT_KEYS: dict[str, Any] = {
    "created": tasks.c.created_at,
    "updated": tasks.c.updated_at,
    "due": due_key,
    "priority": tasks.c.priority_rank,
}


async def custom_plans(conn: AsyncConnection) -> None:
    """Plan this transaction's statements for their values. asyncpg prepares each
    statement, and after five runs PostgreSQL may switch to a generic plan that cannot
    see where a cursor's position or an org falls: measured on a million tasks, the
    50th page by cursor took 175 ms with it and 4 ms planned for its values."""
    await conn.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))


async def list_page(conn: AsyncConnection, org_id: str, f: TaskFilter, *, sort: str, limit: int,
                    after: tuple[Any, str] | None = None, extra: Sequence[sa.ColumnElement[bool]] = ()
                    ) -> tuple[list[Task], Any | None]:
    """One keyset page: up to `limit` tasks after the position `after` (key, id) in
    the sort, and the position of the last one if there are more (None: the last page)."""
    await custom_plans(conn)
    descending = sort.startswith("-")
    key = SORT_KEYS[sort.lstrip("-")].label("sort_key")
    query = OrgScope(tasks, org_id).select(*TASK_COLUMNS, key).where(*filter_conditions(f), *extra)
    if after is not None:
        query = query.where(pages.after([SORT_KEYS[sort.lstrip("-")], tasks.c.id], after, descending=descending))
    order = [SORT_KEYS[sort.lstrip("-")], tasks.c.id]
    query = query.order_by(*(c.desc() if descending else c.asc() for c in order)).limit(limit + 1)
    rows = (await conn.execute(query)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return _to_tasks(rows), ((rows[-1].sort_key, rows[-1].id) if more and rows else None)


async def count_tasks(conn: AsyncConnection, org_id: str, f: TaskFilter) -> int:
    query = OrgScope(tasks, org_id).select(sa.func.count()).where(*filter_conditions(f))
    return int((await conn.execute(query)).scalar_one())


BOARD_GROUPS: dict[str, Any] = {"status": tasks.c.status, "assignee": tasks.c.assigned_to,
                                "priority": tasks.c.priority}


async def board_counts(conn: AsyncConnection, org_id: str, f: TaskFilter, group_by: str, *, columns: int
                       ) -> list[tuple[str | None, int]]:
    """The board's columns: each value of the grouped field among the filtered tasks
    and how many have it, the fullest first (at most `columns`)."""
    group = BOARD_GROUPS[group_by]
    rows = (await conn.execute(
        OrgScope(tasks, org_id).select(group, sa.func.count().label("n")).where(*filter_conditions(f))
        .group_by(group).order_by(sa.desc("n"), group.asc().nulls_last()).limit(columns))).all()
    return [(row[0], int(row.n)) for row in rows]


@dataclass(frozen=True)
class BoardColumn:
    count: int  # at most the cap + 1: more than the cap when it is cap + 1
    items: list[Task]
    end: tuple[Any, str] | None


async def board_columns(conn: AsyncConnection, org_id: str, f: TaskFilter, group_by: str, values: Sequence[Any],
                        *, sort: str, limit: int, cap: int) -> dict[Any, BoardColumn]:
    """Each column of a board whose values are known (statuses, priorities), in one
    statement: per value a count of its tasks up to `cap` + 1 (one index range read
    stopping there, not a count of the org) and, LATERAL, its first page in the sort."""
    await custom_plans(conn)
    group = BOARD_GROUPS[group_by]
    named = [v for v in values if v is not None]
    # The values as one array parameter (unnest), not a VALUES list: SQLAlchemy does not
    # cache the compiled form of a statement with VALUES data, and compiling this one
    # each time was a third of the board's time.
    column = (sa.func.unnest(sa.literal(named, pg.ARRAY(sa.Text)))
              .table_valued(sa.column("value", sa.Text), name="board_values").render_derived())
    conditions = filter_conditions(f)
    capped = (OrgScope(tasks, org_id).select(sa.literal(1).label("one"))
              .where(group == column.c.value, *conditions).limit(cap + 1).correlate(column).subquery("capped"))
    # LATERAL, not a scalar subquery in the select list: once per column, not per row of its page.
    counted = sa.select(sa.func.count().label("n")).select_from(capped).lateral("counted")
    descending = sort.startswith("-")
    key = SORT_KEYS[sort.lstrip("-")]
    order = [key, tasks.c.id]
    page = (OrgScope(tasks, org_id).select(*TASK_COLUMNS, key.label("sort_key"))
            .where(group == column.c.value, *conditions)
            .order_by(*(c.desc() if descending else c.asc() for c in order)).limit(limit + 1)
            .lateral("page"))
    rows = (await conn.execute(
        sa.select(column.c.value.label("column_value"), counted.c.n.label("column_count"), page)
        .select_from(column.join(counted, sa.true()).outerjoin(page, sa.true()))
        .order_by(column.c.value, *(page.c[c.name].desc() if descending else page.c[c.name].asc()
                                    for c in (page.c.sort_key, page.c.id))))).all()
    found: dict[Any, list[Any]] = {v: [] for v in named}
    counts: dict[Any, int] = {v: 0 for v in named}
    for row in rows:
        counts[row.column_value] = int(row.column_count)
        if row.id is not None:
            found[row.column_value].append(row)
    columns = {}
    for value in named:
        got = found[value]
        more = len(got) > limit
        got = got[:limit]
        columns[value] = BoardColumn(counts[value], _to_tasks(got),
                                     (got[-1].sort_key, got[-1].id) if more and got else None)
    return columns


async def due_between(conn: AsyncConnection, org_id: str, f: TaskFilter, start: datetime, end: datetime, *,
                      limit: int) -> list[Task]:
    """Tasks due in [start, end), soonest first (the due-date index serves it)."""
    await custom_plans(conn)
    rows = (await conn.execute(
        OrgScope(tasks, org_id).select(*TASK_COLUMNS)
        .where(due_key >= start, due_key < end, *filter_conditions(f))
        .order_by(due_key, tasks.c.id).limit(limit))).all()
    return _to_tasks(rows)


async def lock_tasks(conn: AsyncConnection, org_id: str, task_ids: Sequence[str]) -> None:
    """Lock these tasks of the org in id order (a bulk action takes them as any other would)."""
    await conn.execute(OrgScope(tasks, org_id).select(tasks.c.id).where(tasks.c.id.in_(list(task_ids)))
                       .order_by(tasks.c.id).with_for_update())


# -- SLA policies and due timers -------------------------------------------------------

TIMER_CHANNEL = "task_due_timers"


async def org_sla_policy(conn: AsyncConnection, org_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(OrgScope(sla_policies, org_id).select())).first()
    return dict(row._mapping) if row else None


async def put_org_sla_policy(conn: AsyncConnection, org_id: str, policy: SlaPolicy, by: str, at: datetime) -> None:
    statement = pg.insert(sla_policies).values(org_id=org_id, policy=policy.as_json(), updated_by=by, updated_at=at)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=[sla_policies.c.org_id],
        set_={"policy": statement.excluded.policy, "updated_by": by, "updated_at": at}))


async def delete_org_sla_policy(conn: AsyncConnection, org_id: str) -> bool:
    return bool((await conn.execute(OrgScope(sla_policies, org_id).delete())).rowcount)


async def effective_sla_policy(conn: AsyncConnection, org_id: str, project_id: str | None) -> SlaPolicy | None:
    """The policy a task follows: its project's own, else its org's, else none."""
    if project_id is not None:
        own = (await conn.execute(OrgScope(projects, org_id).select(projects.c.sla_policy)
                                  .where(projects.c.id == project_id))).scalar_one_or_none()
        if own is not None:
            return SlaPolicy.of_json(own)
    row = await org_sla_policy(conn, org_id)
    return SlaPolicy.of_json(row["policy"]) if row else None


async def wake_timers(conn: AsyncConnection) -> None:
    """Tell the timer loops (on commit) that a timer was armed: it may be sooner than
    the one they sleep until."""
    await conn.execute(sa.select(sa.func.pg_notify(TIMER_CHANNEL, "")))


async def sync_due_timer(conn: AsyncConnection, before: Task | None, after: Task) -> None:
    """Keep the task's due timer as the task now stands: armed from the first stage
    for an open task whose due time is new or moved (or that was reopened, or moved to
    another project), gone for a finished task or one without a due time."""
    key = (after.due_at, after.is_open, after.project_id)
    if before is not None and (before.due_at, before.is_open, before.project_id) == key:
        return
    scope = OrgScope(due_timers, after.org_id)
    due_at = after.due_at
    if not after.is_open or due_at is None or not sla.covered(due_at):
        # Only an open task with a due time is ever given a timer, here or by
        # `rearm_scope`: a task that was not one has none to drop (an automated task
        # completing, once per saga step, is spared the statement).
        if before is not None and before.is_open and before.due_at is not None:
            await conn.execute(scope.delete().where(due_timers.c.task_id == after.id))
        return
    policy = await effective_sla_policy(conn, after.org_id, after.project_id)
    first = policy.next_stage(None) if policy else None
    if policy is None or first is None:
        await conn.execute(scope.delete().where(due_timers.c.task_id == after.id))
        return
    same_due = before is not None and before.due_at == after.due_at
    statement = pg.insert(due_timers).values(org_id=after.org_id, task_id=after.id, due_at=after.due_at,
                                             last_offset=None, fire_at=first.at(due_at),
                                             armed_at=sa.func.now())
    # Reopened or moved to another project with the same due time: the stages fired
    # already are not fired again (the next one after them is armed).
    kept: dict[str, Any] = {"fire_at": statement.excluded.fire_at, "armed_at": statement.excluded.armed_at}
    if not same_due:
        kept.update(due_at=statement.excluded.due_at, last_offset=None)
    await conn.execute(statement.on_conflict_do_update(index_elements=[due_timers.c.org_id, due_timers.c.task_id],
                                                       set_=kept))
    if same_due:
        await _rearm_after_last(conn, after.org_id, after.id, policy)
    await wake_timers(conn)


async def _rearm_after_last(conn: AsyncConnection, org_id: str, task_id: str, policy: SlaPolicy) -> None:
    row = (await conn.execute(OrgScope(due_timers, org_id).select().where(due_timers.c.task_id == task_id))).first()
    if row is None:
        return
    following = policy.next_stage(row.last_offset)
    scope = OrgScope(due_timers, org_id)
    if following is None:
        await conn.execute(scope.delete().where(due_timers.c.task_id == task_id))
    else:
        await conn.execute(scope.update().where(due_timers.c.task_id == task_id)
                           .values(fire_at=following.at(row.due_at)))


async def rearm_scope(conn: AsyncConnection, org_id: str, policy: SlaPolicy | None, *,
                      project_id: str | None = None) -> int:
    """After a policy change: every open task with a due time that follows it (a
    project's tasks, or the org's tasks in no project with a policy of its own) gets
    its timer at the policy's next stage after the one it fired last; a task with no
    timer yet, at the first stage. No policy: their timers go. Returns how many tasks."""
    in_scope = [tasks.c.org_id == org_id, _OPEN, tasks.c.due_at >= sla.HORIZON[0], tasks.c.due_at < sla.HORIZON[1]]
    if project_id is not None:
        in_scope.append(tasks.c.project_id == project_id)
    else:
        own = sa.select(projects.c.id).where(projects.c.org_id == org_id, projects.c.sla_policy.is_not(None))
        in_scope.append(sa.or_(tasks.c.project_id.is_(None), tasks.c.project_id.not_in(own)))
    scoped = sa.select(tasks.c.id).where(*in_scope)
    offsets = [s.offset for s in policy.stages()] if policy else []
    if not offsets:
        result = await conn.execute(OrgScope(due_timers, org_id).delete().where(due_timers.c.task_id.in_(scoped)))
        return int(result.rowcount)
    statement = pg.insert(due_timers).from_select(
        ["org_id", "task_id", "due_at", "last_offset", "fire_at", "armed_at"],
        sa.select(tasks.c.org_id, tasks.c.id, tasks.c.due_at, sa.null(), tasks.c.due_at + offsets[0],
                  sa.func.now()).where(*in_scope))
    following = sa.text(
        "coalesce(task_due_timers.due_at + (SELECT min(o) FROM unnest(CAST(:offsets AS interval[])) AS o "
        "WHERE task_due_timers.last_offset IS NULL OR o > task_due_timers.last_offset), now())"
    ).bindparams(sa.bindparam("offsets", offsets, type_=pg.ARRAY(sa.Interval)))
    # No stage left after the last fired: due now, so the loop sees there is nothing to fire and drops it.
    upsert = statement.on_conflict_do_update(
        index_elements=[due_timers.c.org_id, due_timers.c.task_id],
        set_={"fire_at": following})
    result = await conn.execute(upsert)
    await wake_timers(conn)
    return int(result.rowcount)


@dataclass(frozen=True)
class DueTimer:
    org_id: str
    task_id: str
    due_at: datetime
    last_offset: Any
    fire_at: datetime


async def claim_due_timers(conn: AsyncConnection, limit: int = 20) -> list[tuple[DueTimer, Task]]:
    """Due timers (by the database clock) with their tasks, both locked for this
    transaction; a timer or task another transaction holds is skipped (never waited
    for, so a timer pass cannot deadlock with an edit), and looked at again next pass."""
    rows = (await conn.execute(
        sa.select(*due_timers.c, *[c.label(f"t_{c.name}") for c in TASK_COLUMNS])
        .join(tasks, sa.and_(tasks.c.org_id == due_timers.c.org_id, tasks.c.id == due_timers.c.task_id))
        .where(due_timers.c.fire_at <= sa.func.now())
        .order_by(due_timers.c.fire_at)
        .limit(limit)
        .with_for_update(of=[due_timers, tasks], skip_locked=True))).all()
    found = []
    for row in rows:
        values = row._mapping
        timer = DueTimer(**{k: values[k] for k in ("org_id", "task_id", "due_at", "last_offset", "fire_at")})
        found.append((timer, _to_task(_Prefixed(values))))
    return found


class _Prefixed:
    """A joined row's task columns (`t_<name>`) as a task row."""

    def __init__(self, values: Any) -> None:
        self._mapping = {c.name: values[f"t_{c.name}"] for c in TASK_COLUMNS}


async def timer_fired(conn: AsyncConnection, timer: DueTimer, offset: Any, next_fire_at: datetime | None) -> None:
    """The stage at `offset` fired (or was skipped): arm the next one, or drop the timer."""
    scope = OrgScope(due_timers, timer.org_id)
    if next_fire_at is None:
        await conn.execute(scope.delete().where(due_timers.c.task_id == timer.task_id))
    else:
        await conn.execute(scope.update().where(due_timers.c.task_id == timer.task_id)
                           .values(last_offset=offset, fire_at=next_fire_at))


async def drop_timer(conn: AsyncConnection, org_id: str, task_id: str) -> None:
    await conn.execute(OrgScope(due_timers, org_id).delete().where(due_timers.c.task_id == task_id))


async def seconds_to_next_timer(conn: AsyncConnection) -> float | None:
    value = (await conn.execute(sa.select(sa.func.extract(
        "epoch", sa.func.min(due_timers.c.fire_at) - sa.func.now())))).scalar()
    return None if value is None else float(value)


async def timer_of(conn: AsyncConnection, org_id: str, task_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(OrgScope(due_timers, org_id).select().where(due_timers.c.task_id == task_id))).first()
    return dict(row._mapping) if row else None
