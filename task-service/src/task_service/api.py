"""task-service REST routes: parse, call a handler, shape the answer."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from fastapi import APIRouter, Depends, Header, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from stayops_kit import idempotency, pages
from stayops_kit.api import CorrelationId, CurrentCaller, Offset, Runtime
from stayops_kit.auth import Caller
from stayops_kit.fields import IsoDate, IsoDateQuery, IsoDateTime, IsoDateTimeQuery, IsoDuration
from stayops_kit.permissions import Permission, require
from stayops_kit.problems import code_of, problem_responses, status_for
from stayops_schemas.events.org import UserType
from stayops_schemas.events.tasks import AUTOMATION_ASSIGNEE, DecisionOutcome, Priority, TaskStatus, TaskType
from task_service import handlers, projects, sla, store
from task_service.domain import DONE_STATUSES, Decision, Task, open_blockers

router = APIRouter(tags=["tasks"])

Creator = Annotated[Caller, require(Permission.TASKS_CREATE)]
Actor = Annotated[Caller, require(Permission.TASKS_ACT)]
Decider = Annotated[Caller, require(Permission.DECISIONS_DECIDE)]
Manager = Annotated[Caller, require(Permission.TASKS_MANAGE)]

Label = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[^,\s][^,]*$")]
Labels = Annotated[list[Label], Field(max_length=20)]
Paging = Annotated[int, Query(ge=1, le=200)]

# The system user executes automated tasks only; said in the schema too, so a
# client (and the contract test) knows it before sending.
_AUTOMATION_RUNS_AUTOMATED_TASKS: dict[str, Any] = {
    "if": {"properties": {"assigned_to": {"const": AUTOMATION_ASSIGNEE}}, "required": ["assigned_to"]},
    "then": {"properties": {"task_type": {"const": TaskType.AUTOMATED.value}}},
}




class TaskIn(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    task_type: TaskType
    priority: Priority = Priority.MEDIUM
    description: str | None = Field(default=None, max_length=10_000)
    department_id: str | None = None
    role_id: str | None = None
    assigned_to: str | None = None
    due_at: IsoDateTime | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    parent_task_id: str | None = None
    labels: Labels = Field(default_factory=list)
    required: StrictBool = Field(default=True, description="As a subtask: its parent cannot complete while it is open.")
    project_id: str | None = Field(default=None, min_length=1, max_length=200,
                                   description="A project of the org (404 otherwise).")
    milestone_id: str | None = Field(default=None, min_length=1, max_length=200,
                                     description="A milestone of the project (it places the task in its project).")
    listing_id: str | None = Field(default=None, min_length=1, max_length=200,
                                   description="The listing it is about; default the data's `listing_id`.")

    model_config = ConfigDict(extra="forbid", json_schema_extra=_AUTOMATION_RUNS_AUTOMATED_TASKS)

    @model_validator(mode="after")
    def _automation_runs_automated_tasks(self) -> TaskIn:
        if self.assigned_to == AUTOMATION_ASSIGNEE and self.task_type is not TaskType.AUTOMATED:
            raise ValueError(f"{AUTOMATION_ASSIGNEE!r} is the system user that runs automated tasks; "
                             "assign this task to a person or an AI agent, or make it task_type 'automated'")
        return self


class TaskOut(BaseModel):
    id: str
    org_id: str
    title: str
    description: str | None
    task_type: TaskType
    status: TaskStatus
    priority: Priority
    department_id: str | None
    role_id: str | None
    assigned_to: str | None
    assignee_type: UserType | None
    assignment_rule: str | None
    due_at: datetime | None
    data: dict[str, Any]
    result: dict[str, Any] | None
    status_reason: str | None
    parent_task_id: str | None
    workflow_run_id: str | None
    workflow_step: str | None
    request_id: str | None
    completed_by: str | None = Field(
        description="Who completed, decided or failed the task: a user id, or `automation`.")
    created_by: str
    created_at: datetime
    updated_at: datetime
    labels: list[str]
    required: bool
    version: int = Field(description="Bumped by every change; the ETag header is this number, quoted.")
    progress: Progress | None = Field(
        default=None, description="Its subtasks done (completed or cancelled) of all; null: it has none.")
    project_id: str | None = None
    milestone_id: str | None = None
    listing_id: str | None = None
    reviewers: list[str] = Field(default_factory=list, description="People who may decide it besides its "
                                 "assignee (an escalation that added a reviewer); it is in their inbox too.")
    blocked_by: list[Dependency] | None = Field(
        default=None, description="The tasks it is blocked by (GET of one task and its dependency routes; "
        "null in lists).")
    blocks: list[Dependency] | None = Field(default=None, description="The tasks it blocks (as blocked_by).")
    blocked: bool | None = Field(
        default=None, description="Whether a task it is blocked by is still open: it cannot start or complete.")

    @classmethod
    def of(cls, task: Task, progress: tuple[int, int] | None = None) -> TaskOut:
        out = cls.model_validate(task, from_attributes=True)
        if progress is not None:
            out.progress = Progress(done=progress[0], total=progress[1])
        return out

    def with_dependencies(self, blockers: list[Task], blocked: list[Task]) -> TaskOut:
        self.blocked_by = [Dependency.of(t) for t in blockers]
        self.blocks = [Dependency.of(t) for t in blocked]
        self.blocked = bool(open_blockers(blockers))
        return self


class Dependency(BaseModel):
    task_id: str
    title: str
    status: TaskStatus
    project_id: str | None
    done: bool = Field(description="Completed or cancelled: it no longer holds anything back.")

    @classmethod
    def of(cls, task: Task) -> Dependency:
        return cls(task_id=task.id, title=task.title, status=task.status, project_id=task.project_id,
                   done=task.status in DONE_STATUSES)


class DependencyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    blocked_by: str = Field(min_length=1, max_length=200, description="The task this one waits for (same org).")


class Progress(BaseModel):
    done: int
    total: int


class TaskPatch(BaseModel):
    """The fields to change; a field left out stays as it is, `null` clears it."""

    model_config = ConfigDict(extra="forbid")

    # Title and priority are never cleared: their schema has no null.
    title: str = Field(default=None, min_length=1, max_length=300)  # type: ignore[assignment]
    description: str | None = Field(default=None, max_length=10_000)
    priority: Priority = None  # type: ignore[assignment]
    due_at: IsoDateTime | None = None
    labels: Labels | None = None
    assigned_to: str | None = Field(
        default=None, min_length=1, max_length=200, json_schema_extra={"not": {"const": AUTOMATION_ASSIGNEE}},
        description=f"A person or an AI agent; {AUTOMATION_ASSIGNEE!r} takes automated tasks only as they are "
                    "created.")
    role_id: str | None = Field(default=None, min_length=1, max_length=200)
    department_id: str | None = Field(default=None, min_length=1, max_length=200)
    project_id: str | None = Field(default=None, min_length=1, max_length=200,
                                   description="Moving it to another project leaves its milestone.")
    milestone_id: str | None = Field(default=None, min_length=1, max_length=200,
                                     description="A milestone places the task in the milestone's project.")

    @model_validator(mode="after")
    def _automation_only_at_creation(self) -> TaskPatch:
        if self.assigned_to == AUTOMATION_ASSIGNEE:
            raise ValueError(f"{AUTOMATION_ASSIGNEE!r} takes automated tasks only as they are created")
        return self

    def changes(self) -> dict[str, Any]:
        changes = self.model_dump(exclude_unset=True)
        if "labels" in changes:
            changes["labels"] = tuple(changes["labels"] or ())
        return changes


class HistoryEntry(BaseModel):
    at: datetime
    actor: str
    actor_type: str = Field(description="person, ai_agent, automation (the automation user, or an "
                            "automation of automation-service), workflow, system (task-service's own "
                            "rules), or another service's name")
    action: str
    changes: dict[str, Any] = Field(description="Each changed field as {from, to}.")
    version: int


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=10_000, description="`@user_id` mentions notify that member.")


class CommentOut(BaseModel):
    id: str
    task_id: str
    author: str
    body: str
    mentions: list[str]
    created_at: datetime


class CommentAdded(CommentOut):
    notified: list[str] = Field(description="The mentioned members a notification was sent to.")


class Watchers(BaseModel):
    task_id: str
    watchers: list[str]


class WatcherIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(default=None, min_length=1, max_length=200,
                                description="Who watches; default the caller.")


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    result: dict[str, Any] = Field(default_factory=dict)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2_000)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: DecisionOutcome
    comment: str | None = Field(default=None, max_length=10_000)
    changes: list[Any] | dict[str, Any] | None = None


IdempotencyKey = Annotated[str | None, Header(
    min_length=1, max_length=200, pattern="^[!-~]+$",
    description="Retrying with the same key and body answers the task the first request made (200); "
                "the same key with another body is a 422 (code idempotency-key-reused).")]


IfMatch = Annotated[str | None, Header(
    min_length=1, max_length=200,
    description="The ETag the caller read; a stale one is a 412 (code stale-version). Optional: "
                "without it the change applies to the task as it is.")]


def _answer(task: Task, response: Response, progress: tuple[int, int] | None = None) -> TaskOut:
    response.headers["ETag"] = task.etag
    return TaskOut.of(task, progress)


@router.post("/tasks", status_code=status.HTTP_201_CREATED, response_model=TaskOut,
             responses={200: {"model": TaskOut, "description": "A retry: the task its Idempotency-Key made."},
                        **problem_responses(404)})
async def create_task(body: TaskIn, caller: Creator, runtime: Runtime, response: Response,
                      correlation_id: CorrelationId, idempotency_key: IdempotencyKey = None) -> TaskOut:
    command = handlers.CreateTask(**body.model_dump())
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        if idempotency_key is None:
            task = await handlers.create_task(uow, caller, command)
        else:
            digest = idempotency.fingerprint(body.model_dump(mode="json"))
            task, created = await handlers.create_task_once(uow, caller, command, idempotency_key, digest)
            if not created:
                response.status_code = status.HTTP_200_OK
                async with runtime.engine.connect() as conn:
                    return await _with_dependencies(conn, TaskOut.of(task))
    # A new task has no dependencies yet.
    return TaskOut.of(task).with_dependencies([], [])


def _values_of(kind: type[StrEnum]) -> str:
    one = "|".join(v.value for v in kind)
    return f"^({one})(,({one}))*$"


_IDS = r"^[^,]{1,200}(,[^,]{1,200}){0,49}$"


def _ids(description: str) -> Any:
    return Query(pattern=_IDS, description=description + " Comma-separated; any of them matches.")


def task_filter(
    caller: CurrentCaller,
    status_: Annotated[str | None, Query(alias="status", pattern=_values_of(TaskStatus),
                                         description="e.g. `pending,in_progress`; any of them.")] = None,
    assignee: Annotated[str | None, _ids("User ids; `me` is the caller, `none` a task nobody has.")] = None,
    role: Annotated[str | None, _ids("Role ids.")] = None,
    department: Annotated[str | None, _ids("Department ids.")] = None,
    label: Annotated[str | None, _ids("Labels; a task with any of them.")] = None,
    priority: Annotated[str | None, Query(pattern=_values_of(Priority), description="Any of them.")] = None,
    type_: Annotated[str | None, Query(alias="type", pattern=_values_of(TaskType), description="Any of them.")] = None,
    project: Annotated[str | None, _ids("Project ids; `none`: in no project.")] = None,
    milestone: Annotated[str | None, _ids("Milestone ids.")] = None,
    listing: Annotated[str | None, _ids("Listing ids.")] = None,
    parent: Annotated[str | None, _ids("Parent task ids; `none`: top-level tasks.")] = None,
    workflow_run_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    due_before: Annotated[IsoDateTimeQuery | None, Query(description="Due before this time.")] = None,
    due_after: Annotated[IsoDateTimeQuery | None, Query(description="Due at or after this time.")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200, description=(
        "Full-text search over title, description and comments (PostgreSQL websearch syntax: words, "
        "\"a phrase\", -not, or).") )] = None,
) -> store.TaskFilter:
    """The filters every list view takes."""
    def split(text: str | None, *, me: bool = False, none: bool = False) -> tuple[Any, ...]:
        if text is None:
            return ()
        values: list[str | None] = []
        for value in dict.fromkeys(text.split(",")):
            if me and value == "me":
                values.append(caller.user_id)
            elif none and value == "none":
                values.append(None)
            else:
                values.append(value)
        return tuple(values)

    return store.TaskFilter(
        statuses=split(status_), assignees=split(assignee, me=True, none=True), roles=split(role),
        departments=split(department), labels=split(label), priorities=split(priority), types=split(type_),
        projects=split(project, none=True), milestones=split(milestone), listings=split(listing),
        parents=split(parent, none=True), workflow_run_id=workflow_run_id, due_before=due_before,
        due_after=due_after, q=q,
    )


Filters = Annotated[store.TaskFilter, Depends(task_filter)]
Sort = Literal["created", "-created", "updated", "-updated", "due", "-due", "priority", "-priority"]
Cursor = Annotated[str | None, Query(pattern=pages.CURSOR_PATTERN, description="next_cursor of the page before.")]


class TaskList(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None = Field(description="Pass as `cursor` (with the same filters and sort) for the next "
                                    "page; null on the last one.")


async def _page(conn: Any, caller: Caller, filters: store.TaskFilter, sort: str, limit: int, cursor: str | None,
                extra: Any = ()) -> TaskList:
    after = None
    if cursor is not None:
        keys, last = pages.decode_cursor(cursor, sort, 1)
        after = (keys[0], last)
    items, end = await store.list_page(conn, caller.org_id, filters, sort=sort, limit=limit, after=after,
                                       extra=extra)
    progress = await store.progress_of(conn, caller.org_id, [t.id for t in items])
    return TaskList(items=[TaskOut.of(t, progress.get(t.id)) for t in items],
                    next_cursor=pages.encode_cursor(sort, [end[0]], end[1]) if end else None)


@router.get("/tasks", response_model=TaskList, responses=problem_responses(422))
async def list_tasks(caller: CurrentCaller, runtime: Runtime, filters: Filters, sort: Sort = "-created",
                     limit: Paging = 50, cursor: Cursor = None) -> TaskList:
    """The org's tasks, filtered and sorted (`due`: soonest first, none last; `priority`:
    low to urgent; `-` reverses), a keyset page at a time: tasks added or changed while
    paging never repeat or skip one that was there. No total: GET /v1/tasks/count."""
    async with runtime.engine.connect() as conn:
        return await _page(conn, caller, filters, sort, limit, cursor)


class Count(BaseModel):
    count: int


@router.get("/tasks/count", response_model=Count)
async def count_tasks(caller: CurrentCaller, runtime: Runtime, filters: Filters) -> Count:
    """How many tasks the same filters as GET /v1/tasks match (an exact count)."""
    async with runtime.engine.connect() as conn:
        return Count(count=await store.count_tasks(conn, caller.org_id, filters))


# A status or priority column counts its tasks up to this many (GET /v1/tasks/count is exact).
BOARD_COUNT_CAP = 1_000


class Column(BaseModel):
    value: str | None = Field(description="The column's status, assignee or priority; null: nobody's.")
    count: int = Field(description=f"Its tasks; for a status or priority column at most {BOARD_COUNT_CAP:,} "
                       "(then `count_capped`).")
    count_capped: bool = Field(description=f"More than {BOARD_COUNT_CAP:,} tasks: `count` says at least; "
                               "GET /v1/tasks/count with the column's value counts them all.")
    items: list[TaskOut]
    next_cursor: str | None = Field(description="For GET /v1/tasks with the same filters and sort, and this "
                                    "column's value as its filter.")


class Board(BaseModel):
    group_by: str
    columns: list[Column]


@router.get("/board", response_model=Board, responses=problem_responses(422))
async def board(caller: CurrentCaller, runtime: Runtime, filters: Filters,
                group_by: Literal["status", "assignee", "priority"] = "status", sort: Sort = "-created",
                limit: Annotated[int, Query(ge=1, le=50, description="Tasks per column.")] = 20) -> Board:
    """Kanban columns of the filtered tasks: every status or priority (in their order),
    or each assignee who has some (the fullest 50, and `null` for nobody), each with
    its count and first page."""
    group = store.BOARD_GROUPS[group_by]
    kinds: dict[str, type[StrEnum]] = {"status": TaskStatus, "priority": Priority}
    columns = []
    async with runtime.engine.connect() as conn:
        if group_by in kinds:
            values = [v.value for v in kinds[group_by]]
            found = await store.board_columns(conn, caller.org_id, filters, group_by, values, sort=sort,
                                              limit=limit, cap=BOARD_COUNT_CAP)
            progress = await store.progress_of(conn, caller.org_id,
                                               [t.id for c in found.values() for t in c.items])
            for value in values:
                col = found[value]
                columns.append(Column(
                    value=value, count=min(col.count, BOARD_COUNT_CAP), count_capped=col.count > BOARD_COUNT_CAP,
                    items=[TaskOut.of(t, progress.get(t.id)) for t in col.items],
                    next_cursor=pages.encode_cursor(sort, [col.end[0]], col.end[1]) if col.end else None))
            return Board(group_by=group_by, columns=columns)
        # Assignees: the fullest 50 are known only from exact counts.
        counts = dict(await store.board_counts(conn, caller.org_id, filters, group_by, columns=51))
        for assignee in counts:
            page = await _page(conn, caller, filters, sort, limit, None,
                               extra=[group.is_(None) if assignee is None else group == assignee])
            columns.append(Column(value=assignee, count=counts[assignee], count_capped=False, items=page.items,
                                  next_cursor=page.next_cursor))
    return Board(group_by=group_by, columns=columns)


TimeZone = StrEnum("TimeZone", {name: name for name in sorted(available_timezones())})  # type: ignore[misc]


class Day(BaseModel):
    date: date
    items: list[TaskOut]


class Calendar(BaseModel):
    from_: date = Field(alias="from")
    to: date
    tz: str
    days: list[Day] = Field(description="Each day from `from` to `to` with a task due, in the time zone.")
    truncated: bool = Field(description="More tasks are due than `limit`: the latest are left out.")

    model_config = ConfigDict(populate_by_name=True)


@router.get("/calendar", response_model=Calendar, response_model_by_alias=True, responses=problem_responses(422))
async def calendar(caller: CurrentCaller, runtime: Runtime, filters: Filters,
                   from_: Annotated[IsoDateQuery, Query(alias="from", description="First day (in `tz`).")],
                   to: Annotated[IsoDateQuery, Query(description="Last day, included.")],
                   tz: Annotated[TimeZone, Query(description="The caller's time zone (IANA name).")] = "UTC",  # type: ignore[assignment]
                   limit: Annotated[int, Query(ge=1, le=2_000)] = 500) -> Calendar:
    """The filtered tasks due from `from` to `to` (days in `tz`), by day, soonest first."""
    zone = ZoneInfo(str(tz.value if isinstance(tz, StrEnum) else tz))
    start = datetime.combine(from_, time(), zone)
    end = datetime.combine(min(to, date.max - timedelta(days=1)) + timedelta(days=1), time(), zone)
    found: list[Task] = []
    if start < end:
        async with runtime.engine.connect() as conn:
            found = await store.due_between(conn, caller.org_id, filters, start, end, limit=limit + 1)
    days: dict[date, list[TaskOut]] = {}
    for task in found[:limit]:
        assert task.due_at is not None
        days.setdefault(task.due_at.astimezone(zone).date(), []).append(TaskOut.of(task))
    return Calendar(from_=from_, to=to, tz=zone.key, days=[Day(date=d, items=i) for d, i in days.items()],
                    truncated=len(found) > limit)


TaskIds = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(min_length=1, max_length=500)]


class BulkAssign(BaseModel):
    """Each task to an assignee, a role's or a department's queue (the fields given, as PATCH)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["assign"]
    task_ids: TaskIds
    assigned_to: str | None = Field(default=None, min_length=1, max_length=200,
                                    json_schema_extra={"not": {"const": AUTOMATION_ASSIGNEE}})
    role_id: str | None = Field(default=None, min_length=1, max_length=200)
    department_id: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _automation_only_at_creation(self) -> BulkAssign:
        if self.assigned_to == AUTOMATION_ASSIGNEE:
            raise ValueError(f"{AUTOMATION_ASSIGNEE!r} takes automated tasks only as they are created")
        return self


class BulkLabel(BaseModel):
    """Labels added to and removed from each task (at most 20 on a task)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["label"]
    task_ids: TaskIds
    add: Labels = Field(default_factory=list)
    remove: Labels = Field(default_factory=list)


class BulkMove(BaseModel):
    """Each task to a project and/or milestone (the fields given, as PATCH; null: out of it)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["move"]
    task_ids: TaskIds
    project_id: str | None = Field(default=None, min_length=1, max_length=200)
    milestone_id: str | None = Field(default=None, min_length=1, max_length=200)


class BulkCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["cancel"]
    task_ids: TaskIds
    reason: str = Field(min_length=1, max_length=2_000)


BulkIn = Annotated[BulkAssign | BulkLabel | BulkMove | BulkCancel, Field(discriminator="action")]


class BulkItem(BaseModel):
    task_id: str
    ok: bool
    status: int = Field(description="What the single route would have answered: 200, or the problem's status.")
    code: str | None = Field(description="The problem's code when refused (task-not-found, "
                             "transition-not-allowed, ...).")
    detail: str | None
    version: int | None = Field(description="The task's version after the change.")


class BulkOut(BaseModel):
    action: str
    succeeded: int
    refused: int
    results: list[BulkItem] = Field(description="One per task id, in the order given (repeats once).")


@router.post("/tasks/bulk", response_model=BulkOut)
async def bulk(body: BulkIn, caller: Manager, runtime: Runtime, correlation_id: CorrelationId) -> BulkOut:
    """Assign, label, move or cancel up to 500 tasks: each as its single route (PATCH
    or /cancel) would, with its events and history; a task refused (another org's, a
    finished one) is reported with its problem code and the others still change."""
    params = body.model_dump(exclude_unset=True, exclude={"action", "task_ids"})
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        outcomes = await handlers.bulk(uow, caller, body.action, body.task_ids, params)
    results = [BulkItem(task_id=o.task_id, ok=o.error is None,
                        status=200 if o.error is None else status_for(o.error),
                        code=None if o.error is None else code_of(o.error),
                        detail=None if o.error is None else str(o.error),
                        version=o.task.version if o.task else None) for o in outcomes]
    ok = sum(r.ok for r in results)
    return BulkOut(action=body.action, succeeded=ok, refused=len(results) - ok, results=results)


@router.get("/tasks/{task_id}", response_model=TaskOut)
async def get_task(task_id: str, caller: CurrentCaller, runtime: Runtime, response: Response) -> TaskOut:
    async with runtime.uow.begin() as uow:
        task = await handlers.get_task(uow, caller, task_id)
        progress = (await store.progress_of(uow.conn, caller.org_id, [task.id])).get(task.id)
        out = await _with_dependencies(uow.conn, _answer(task, response, progress))
    return out


async def _with_dependencies(conn: Any, out: TaskOut) -> TaskOut:
    return out.with_dependencies(await store.blockers_of(conn, out.org_id, out.id),
                                 await store.blocked_by_this(conn, out.org_id, out.id))


@router.post("/tasks/{task_id}/dependencies", response_model=TaskOut, responses=problem_responses(422))
async def add_dependency(task_id: str, body: DependencyIn, caller: Manager, runtime: Runtime,
                         response: Response) -> TaskOut:
    """The task is blocked by `blocked_by` (any project of the org) until that task is
    completed or cancelled; a dependency that would close a cycle is a 422
    (`dependency-cycle`, its task ids in `cycle`)."""
    async with runtime.uow.begin() as uow:
        task = await handlers.add_dependency(uow, caller, task_id, body.blocked_by)
        out = await _with_dependencies(uow.conn, _answer(task, response))
    return out


@router.delete("/tasks/{task_id}/dependencies/{blocker_id}", response_model=TaskOut)
async def remove_dependency(task_id: str, blocker_id: str, caller: Manager, runtime: Runtime,
                            response: Response, correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.remove_dependency(uow, caller, task_id, blocker_id)
        out = await _with_dependencies(uow.conn, _answer(task, response))
    return out


@router.patch("/tasks/{task_id}", response_model=TaskOut, responses=problem_responses(409, 412))
async def edit_task(task_id: str, body: TaskPatch, caller: Manager, runtime: Runtime, response: Response,
                    correlation_id: CorrelationId, if_match: IfMatch = None) -> TaskOut:
    changes = body.changes()
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.edit_task(uow, caller, task_id, changes, if_match)
    return _answer(task, response)


@router.post("/tasks/{task_id}/claim", response_model=TaskOut, responses=problem_responses(409))
async def claim_task(task_id: str, caller: Actor, runtime: Runtime, response: Response,
                     correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.claim_task(uow, caller, task_id)
    return _answer(task, response)


@router.post("/tasks/{task_id}/release", response_model=TaskOut, responses=problem_responses(409))
async def release_task(task_id: str, caller: Actor, runtime: Runtime, response: Response,
                       correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.release_task(uow, caller, task_id)
    return _answer(task, response)


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut, responses=problem_responses(409))
async def cancel_task(task_id: str, body: ReasonIn, caller: Manager, runtime: Runtime, response: Response,
                      correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.cancel_task(uow, caller, task_id, body.reason)
    return _answer(task, response)


@router.post("/tasks/{task_id}/reopen", response_model=TaskOut, responses=problem_responses(409))
async def reopen_task(task_id: str, caller: Manager, runtime: Runtime, response: Response,
                      correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.reopen_task(uow, caller, task_id)
    return _answer(task, response)


@router.get("/tasks/{task_id}/history", response_model=list[HistoryEntry])
async def task_history(task_id: str, caller: CurrentCaller, runtime: Runtime, limit: Paging = 100,
                       offset: Offset = 0) -> list[HistoryEntry]:
    """Every change to the task, oldest first: what changed, who (and of what kind), when."""
    async with runtime.uow.begin() as uow:
        await handlers.get_task(uow, caller, task_id)
        rows = await store.history_of(uow.conn, caller.org_id, task_id, limit=limit, offset=offset)
    return [HistoryEntry.model_validate(row) for row in rows]


@router.get("/tasks/{task_id}/subtasks", response_model=list[TaskOut])
async def subtasks(task_id: str, caller: CurrentCaller, runtime: Runtime) -> list[TaskOut]:
    async with runtime.uow.begin() as uow:
        await handlers.get_task(uow, caller, task_id)
        items = await store.subtasks_of(uow.conn, caller.org_id, task_id)
        progress = await store.progress_of(uow.conn, caller.org_id, [t.id for t in items])
    return [TaskOut.of(t, progress.get(t.id)) for t in items]


@router.get("/tasks/{task_id}/comments", response_model=list[CommentOut])
async def comments(task_id: str, caller: CurrentCaller, runtime: Runtime, limit: Paging = 100,
                   offset: Offset = 0) -> list[CommentOut]:
    async with runtime.uow.begin() as uow:
        await handlers.get_task(uow, caller, task_id)
        rows = await store.comments_of(uow.conn, caller.org_id, task_id, limit=limit, offset=offset)
    return [CommentOut.model_validate(row) for row in rows]


@router.post("/tasks/{task_id}/comments", response_model=CommentAdded, status_code=status.HTTP_201_CREATED)
async def add_comment(task_id: str, body: CommentIn, caller: Actor, runtime: Runtime,
                      correlation_id: CorrelationId) -> CommentAdded:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        comment = await handlers.add_comment(uow, caller, task_id, body.body)
    return CommentAdded.model_validate(comment)


@router.get("/tasks/{task_id}/watchers", response_model=Watchers)
async def watchers(task_id: str, caller: CurrentCaller, runtime: Runtime) -> Watchers:
    async with runtime.uow.begin() as uow:
        await handlers.get_task(uow, caller, task_id)
        found = await store.watchers_of(uow.conn, caller.org_id, task_id)
    return Watchers(task_id=task_id, watchers=found)


@router.post("/tasks/{task_id}/watchers", response_model=Watchers)
async def watch(task_id: str, body: WatcherIn, caller: Actor, runtime: Runtime) -> Watchers:
    async with runtime.uow.begin() as uow:
        found = await handlers.watch(uow, caller, task_id, body.user_id or caller.user_id, on=True)
    return Watchers(task_id=task_id, watchers=found)


@router.delete("/tasks/{task_id}/watchers/{user_id}", response_model=Watchers)
async def unwatch(task_id: str, user_id: str, caller: Actor, runtime: Runtime) -> Watchers:
    async with runtime.uow.begin() as uow:
        found = await handlers.watch(uow, caller, task_id, user_id, on=False)
    return Watchers(task_id=task_id, watchers=found)


class InboxTask(TaskOut):
    overdue: bool = Field(description="Open and past its due time.")


class InboxPage(BaseModel):
    items: list[InboxTask]
    next_cursor: str | None = Field(description="Pass as `cursor` (with the same filters) for the next page; "
                                    "null on the last one.")


@router.get("/inbox", response_model=InboxPage, responses=problem_responses(422))
async def inbox(
    caller: CurrentCaller,
    runtime: Runtime,
    status_: Annotated[str | None, Query(alias="status", pattern=_values_of(TaskStatus), description=(
        "Any of them; default the open ones (pending, in_progress, blocked)."))] = None,
    task_type: Annotated[str | None, Query(pattern=_values_of(TaskType), description="Any of them.")] = None,
    priority: Annotated[str | None, Query(pattern=_values_of(Priority), description="Any of them.")] = None,
    limit: Paging = 50,
    cursor: Cursor = None,
) -> InboxPage:
    """Tasks assigned to the caller, and tasks of the caller's role or department
    nobody has yet ("unassigned in my team"): the overdue first, then the due
    soonest, then those with no due time. Keyset pages (`next_cursor`): tasks added
    or changed while paging never repeat or skip one that was there. No total."""
    after = None
    if cursor is not None:
        keys, last = pages.decode_cursor(cursor, "inbox", 1)
        after = (keys[0], last)

    def split(text: str | None) -> tuple[str, ...]:
        return tuple(dict.fromkeys(text.split(","))) if text else ()

    async with runtime.engine.connect() as conn:
        items, end = await store.inbox(
            conn, caller.org_id, user_id=caller.user_id, role_id=caller.role_id,
            department_id=caller.department_id, statuses=split(status_), types=split(task_type),
            priorities=split(priority), limit=limit, after=after,
        )
    now = datetime.now(UTC)
    return InboxPage(
        items=[InboxTask(**TaskOut.of(t).model_dump(), overdue=t.is_open and t.due_at is not None and t.due_at < now)
               for t in items],
        next_cursor=pages.encode_cursor("inbox", [end[0]], end[1]) if end else None)


@router.post("/tasks/{task_id}/start", response_model=TaskOut, responses=problem_responses(409))
async def start_task(task_id: str, caller: Actor, runtime: Runtime,
                     correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.start_task(uow, caller, task_id)
    return TaskOut.of(task)


@router.post("/tasks/{task_id}/complete", response_model=TaskOut, responses=problem_responses(409))
async def complete_task(task_id: str, body: CompleteIn, caller: Actor, runtime: Runtime,
                        correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.complete_task(uow, caller, task_id, body.result)
    return TaskOut.of(task)


@router.post("/tasks/{task_id}/fail", response_model=TaskOut, responses=problem_responses(409))
async def fail_task(task_id: str, body: ReasonIn, caller: Actor, runtime: Runtime,
                    correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.fail_task(uow, caller, task_id, body.reason)
    return TaskOut.of(task)


@router.post("/tasks/{task_id}/block", response_model=TaskOut, responses=problem_responses(409))
async def block_task(task_id: str, body: ReasonIn, caller: Actor, runtime: Runtime,
                     correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.block_task(uow, caller, task_id, body.reason)
    return TaskOut.of(task)


@router.post("/tasks/{task_id}/decision", response_model=TaskOut, responses=problem_responses(409))
async def decide_task(task_id: str, body: DecisionIn, caller: Decider, runtime: Runtime,
                      correlation_id: CorrelationId) -> TaskOut:
    decision = Decision.of(body.outcome, body.comment, body.changes)
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.decide_task(uow, caller, task_id, decision)
    return TaskOut.of(task)


# -- SLA policies ----------------------------------------------------------------------

Id = Annotated[str, Field(min_length=1, max_length=200)]
MAX_SLA_DELAY = timedelta(days=90)


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: IsoDuration = Field(description="Overdue by this much (ISO 8601, e.g. PT4H), more than zero and at "
                               f"most {MAX_SLA_DELAY.days} days.", examples=["PT4H"])

    @model_validator(mode="after")
    def _in_range(self) -> _Step:
        if not timedelta(0) < self.after <= MAX_SLA_DELAY:
            raise ValueError(f"an escalation step's `after` is more than zero and at most {MAX_SLA_DELAY.days} days")
        return self


class NotifyStep(_Step):
    """Notify the task's assignee, or the lead of its role (from `leads`)."""

    action: Literal["notify_assignee", "notify_lead"]


class ReassignToUser(_Step):
    """Reassign the task to this user."""

    action: Literal["reassign"]
    user_id: Id


class ReassignToRole(_Step):
    """Reassign the task to this role: its member by the assignment rule, else its queue."""

    action: Literal["reassign"]
    role_id: Id


# One step of the overdue escalation, `after` the due time; a reassign names a user or a role.
EscalationStepIn = NotifyStep | ReassignToUser | ReassignToRole


class SlaPolicyIn(BaseModel):
    """Due reminders and the overdue escalation of the tasks it covers (those with a
    due time): each reminder `remind_before` the due time, one at it, then each
    escalation step in turn."""

    model_config = ConfigDict(extra="forbid")

    remind_before: list[IsoDuration] = Field(default_factory=list, max_length=5, examples=[["PT1H"]], description=(
        "Remind the assignee this long before the due time (each more than zero, at most 90 days, distinct)."))
    remind_at_due: StrictBool = Field(default=True, description="Remind the assignee at the due time.")
    escalation: list[EscalationStepIn] = Field(default_factory=list, max_length=10,
                                               description="By `after`, strictly increasing.")
    leads: dict[Id, Id] = Field(default_factory=dict, max_length=200,
                                description="Each role's lead (role id -> user id), for notify_lead.")

    @model_validator(mode="after")
    def _consistent(self) -> SlaPolicyIn:
        if any(not timedelta(0) < d <= MAX_SLA_DELAY for d in self.remind_before):
            raise ValueError(f"each `remind_before` is more than zero and at most {MAX_SLA_DELAY.days} days")
        if len(set(self.remind_before)) != len(self.remind_before):
            raise ValueError("`remind_before` repeats a duration")
        afters = [step.after for step in self.escalation]
        if afters != sorted(set(afters)):
            raise ValueError("escalation steps come in order of `after`, each later than the one before")
        if any(step.action == "notify_lead" for step in self.escalation) and not self.leads:
            raise ValueError("a notify_lead step needs `leads` (each role's lead)")
        return self

    def policy(self) -> sla.SlaPolicy:
        return sla.SlaPolicy(
            remind_before=tuple(self.remind_before), remind_at_due=self.remind_at_due,
            escalation=tuple(sla.EscalationStep(after=s.after, action=s.action, user_id=getattr(s, "user_id", None),
                                                role_id=getattr(s, "role_id", None)) for s in self.escalation),
            leads=dict(self.leads))

    @classmethod
    def of(cls, policy: dict[str, Any] | None) -> SlaPolicyIn | None:
        if policy is None:
            return None
        steps = [{k: v for k, v in step.items() if v is not None} for step in policy.get("escalation", ())]
        return cls.model_validate({**policy, "escalation": steps})


class SlaPolicyOut(BaseModel):
    org_id: str
    policy: SlaPolicyIn | None = Field(description="null: the org has none (no reminders, no escalation).")
    updated_by: str | None
    updated_at: datetime | None
    rearmed: int | None = Field(default=None, description="On PUT and DELETE: the open tasks whose due timer "
                                "now follows it.")


def _sla_out(org_id: str, row: dict[str, Any] | None, rearmed: int | None = None) -> SlaPolicyOut:
    if row is None:
        return SlaPolicyOut(org_id=org_id, policy=None, updated_by=None, updated_at=None, rearmed=rearmed)
    return SlaPolicyOut(org_id=org_id, policy=SlaPolicyIn.of(row["policy"]), updated_by=row["updated_by"],
                        updated_at=row["updated_at"], rearmed=rearmed)


@router.get("/sla-policy", response_model=SlaPolicyOut)
async def get_sla_policy(caller: CurrentCaller, runtime: Runtime) -> SlaPolicyOut:
    """The org's SLA policy (a project may have its own: its `sla_policy`)."""
    async with runtime.engine.connect() as conn:
        return _sla_out(caller.org_id, await store.org_sla_policy(conn, caller.org_id))


@router.put("/sla-policy", response_model=SlaPolicyOut, responses=problem_responses(422))
async def put_sla_policy(body: SlaPolicyIn, caller: Manager, runtime: Runtime) -> SlaPolicyOut:
    """Set the org's SLA policy: every open task with a due time that follows it (in
    no project with a policy of its own) has its due timer at the policy's next stage
    from now on (stages fired already are not fired again)."""
    async with runtime.uow.begin() as uow:
        policy = body.policy()
        await store.put_org_sla_policy(uow.conn, caller.org_id, policy, caller.user_id, uow.clock.now())
        rearmed = await store.rearm_scope(uow.conn, caller.org_id, policy)
        row = await store.org_sla_policy(uow.conn, caller.org_id)
    return _sla_out(caller.org_id, row, rearmed)


@router.delete("/sla-policy", response_model=SlaPolicyOut)
async def delete_sla_policy(caller: Manager, runtime: Runtime) -> SlaPolicyOut:
    """No SLA policy for the org: the due timers of the tasks that followed it go."""
    async with runtime.uow.begin() as uow:
        await store.delete_org_sla_policy(uow.conn, caller.org_id)
        rearmed = await store.rearm_scope(uow.conn, caller.org_id, None)
    return _sla_out(caller.org_id, None, rearmed)


# -- projects and milestones ------------------------------------------------------------

ProjectStatus = Literal["active", "done", "archived"]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class RollupOut(BaseModel):
    done: int = Field(description="Tasks completed or cancelled.")
    total: int
    open: int
    expected_finish: datetime | None = Field(description=(
        "The later of the latest due time of the open tasks and now + open tasks times the median time a "
        "completed task (of the project) took from created to completed; null when nothing is open, or no "
        "open task has a due time and none was completed yet."))

    @classmethod
    def of(cls, rollup: projects.Rollup | None) -> RollupOut:
        if rollup is None:
            return cls(done=0, total=0, open=0, expected_finish=None)
        return cls(done=rollup.done, total=rollup.total, open=rollup.open, expected_finish=rollup.expected_finish)


MilestoneStatus = Literal["active", "done", "cancelled"]


class MilestoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    target_date: IsoDate | None = None
    status: MilestoneStatus = "active"


class MilestonePatch(BaseModel):
    """The fields to change; left out stays, `null` clears the target date (name and status never)."""

    model_config = ConfigDict(extra="forbid")

    name: Name = None  # type: ignore[assignment]
    target_date: IsoDate | None = None
    status: MilestoneStatus = None  # type: ignore[assignment]


class MilestoneOut(BaseModel):
    id: str
    project_id: str
    name: str
    target_date: date | None
    status: MilestoneStatus
    created_at: datetime
    updated_at: datetime | None
    progress: RollupOut


class ProjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: str | None = Field(default=None, max_length=10_000)
    owner_user_id: str | None = Field(default=None, min_length=1, max_length=200)
    listing_id: str | None = Field(default=None, min_length=1, max_length=200,
                                   description="The listing it is about; null: the portfolio.")
    status: ProjectStatus = "active"
    start_date: IsoDate | None = None
    target_date: IsoDate | None = None
    sla_policy: SlaPolicyIn | None = Field(default=None, description="Its own SLA policy; null: the org's.")


class ProjectPatch(BaseModel):
    """The fields to change; left out stays, `null` clears (name and status never)."""

    model_config = ConfigDict(extra="forbid")

    name: Name = None  # type: ignore[assignment]
    description: str | None = Field(default=None, max_length=10_000)
    owner_user_id: str | None = Field(default=None, min_length=1, max_length=200)
    listing_id: str | None = Field(default=None, min_length=1, max_length=200)
    status: ProjectStatus = None  # type: ignore[assignment]
    start_date: IsoDate | None = None
    target_date: IsoDate | None = None
    sla_policy: SlaPolicyIn | None = Field(default=None, description=(
        "Its own SLA policy (its open tasks' due timers follow it from now on); null: the org's."))


class ProjectOut(BaseModel):
    id: str
    org_id: str
    name: str
    description: str | None
    owner_user_id: str | None
    listing_id: str | None
    scope: Literal["listing", "portfolio"]
    status: ProjectStatus
    start_date: date | None
    target_date: date | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    sla_policy: SlaPolicyIn | None = Field(default=None, description="Its own SLA policy; null: the org's.")
    progress: RollupOut
    milestones: list[MilestoneOut] | None = Field(default=None, description="On GET of one project.")


class ProjectPage(BaseModel):
    items: list[ProjectOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")


class Timeline(BaseModel):
    project: ProjectOut
    milestones: list[TimelineMilestone] = Field(description="By target date (none last).")
    unscheduled: list[TaskOut] = Field(description="The project's tasks in no milestone, by due date.")
    truncated: bool = Field(description="More tasks than `limit`: the latest due are left out.")


class TimelineMilestone(MilestoneOut):
    tasks: list[TaskOut] = Field(description="By due date (none last), then creation.")


async def _project_out(conn: Any, project: dict[str, Any], *, with_milestones: bool = False) -> ProjectOut:
    now = datetime.now(UTC)
    total, per = projects.rollups(await store.project_rollup(conn, project["org_id"], project["id"]), now)
    out = ProjectOut(**{**project, "sla_policy": SlaPolicyIn.of(project.get("sla_policy"))},
                     scope="listing" if project["listing_id"] else "portfolio", progress=RollupOut.of(total))
    if with_milestones:
        out.milestones = [MilestoneOut(**m, progress=RollupOut.of(per.get(m["id"])))
                          for m in await store.milestones_of(conn, project["org_id"], project["id"])]
    return out


@router.post("/projects", status_code=status.HTTP_201_CREATED, response_model=ProjectOut)
async def create_project(body: ProjectIn, caller: Manager, runtime: Runtime) -> ProjectOut:
    async with runtime.uow.begin() as uow:
        fields = body.model_dump(exclude={"sla_policy"})
        fields["sla_policy"] = body.sla_policy.policy().as_json() if body.sla_policy else None
        project = await projects.create_project(uow, caller, fields)
        return await _project_out(uow.conn, project, with_milestones=True)


@router.get("/projects", response_model=ProjectPage)
async def list_projects(
    caller: CurrentCaller, runtime: Runtime,
    status_: Annotated[list[ProjectStatus] | None, Query(alias="status", description="Any of them.")] = None,
    listing: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Paging = 50,
    cursor: Annotated[str | None, Query(pattern=pages.CURSOR_PATTERN, description="next_cursor of the page before.")
                      ] = None,
) -> ProjectPage:
    """The org's projects, oldest first, with their roll-ups."""
    after = None
    if cursor is not None:
        keys, last = pages.decode_cursor(cursor, "projects", 1)
        after = (keys[0], last)
    async with runtime.engine.connect() as conn:
        found = await store.list_projects(conn, caller.org_id, status=status_ or [], listing_id=listing,
                                          limit=limit, after=after)
        items = [await _project_out(conn, p) for p in found[:limit]]
    more = len(found) > limit
    return ProjectPage(items=items, next_cursor=pages.encode_cursor(
        "projects", [found[limit - 1]["created_at"]], found[limit - 1]["id"]) if more else None)


@router.get("/projects/{project_id}", response_model=ProjectOut)
async def get_project(project_id: str, caller: CurrentCaller, runtime: Runtime) -> ProjectOut:
    async with runtime.uow.begin() as uow:
        project = await projects.get_project(uow, caller, project_id)
        return await _project_out(uow.conn, project, with_milestones=True)


@router.patch("/projects/{project_id}", response_model=ProjectOut)
async def edit_project(project_id: str, body: ProjectPatch, caller: Manager, runtime: Runtime) -> ProjectOut:
    async with runtime.uow.begin() as uow:
        changes = body.model_dump(exclude_unset=True, exclude={"sla_policy"})
        policy = body.sla_policy.policy() if body.sla_policy else None
        if "sla_policy" in body.model_fields_set:
            changes["sla_policy"] = policy.as_json() if policy else None
        project = await projects.edit_project(uow, caller, project_id, changes)
        if "sla_policy" in body.model_fields_set:
            followed = policy or await store.effective_sla_policy(uow.conn, caller.org_id, None)
            await store.rearm_scope(uow.conn, caller.org_id, followed, project_id=project_id)
        return await _project_out(uow.conn, project, with_milestones=True)


@router.post("/projects/{project_id}/milestones", status_code=status.HTTP_201_CREATED, response_model=MilestoneOut)
async def add_milestone(project_id: str, body: MilestoneIn, caller: Manager, runtime: Runtime) -> MilestoneOut:
    async with runtime.uow.begin() as uow:
        milestone = await projects.add_milestone(uow, caller, project_id, body.model_dump())
    return MilestoneOut(**milestone, progress=RollupOut.of(None))


@router.patch("/projects/{project_id}/milestones/{milestone_id}", response_model=MilestoneOut,
              responses=problem_responses(404))
async def edit_milestone(project_id: str, milestone_id: str, body: MilestonePatch, caller: Manager,
                         runtime: Runtime) -> MilestoneOut:
    """Rename a milestone, move or clear its target date, or mark it done or cancelled."""
    async with runtime.uow.begin() as uow:
        milestone = await projects.edit_milestone(uow, caller, project_id, milestone_id,
                                                  body.model_dump(exclude_unset=True))
        _, per = projects.rollups(await store.project_rollup(uow.conn, caller.org_id, project_id), datetime.now(UTC))
    return MilestoneOut(**milestone, progress=RollupOut.of(per.get(milestone_id)))


@router.get("/projects/{project_id}/milestones", response_model=list[MilestoneOut])
async def milestones(project_id: str, caller: CurrentCaller, runtime: Runtime) -> list[MilestoneOut]:
    async with runtime.uow.begin() as uow:
        project = await projects.get_project(uow, caller, project_id)
        return (await _project_out(uow.conn, project, with_milestones=True)).milestones or []


@router.get("/projects/{project_id}/timeline", response_model=Timeline)
async def timeline(project_id: str, caller: CurrentCaller, runtime: Runtime,
                   limit: Annotated[int, Query(ge=1, le=2_000)] = 500) -> Timeline:
    """The project's milestones by target date, each with its tasks by due date, and
    the tasks in no milestone."""
    async with runtime.uow.begin() as uow:
        project = await _project_out(uow.conn, await projects.get_project(uow, caller, project_id),
                                     with_milestones=True)
        found = await store.project_tasks(uow.conn, caller.org_id, project_id, limit=limit + 1)
    listed = [TaskOut.of(t) for t in found[:limit]]
    return Timeline(
        project=project,
        milestones=[TimelineMilestone(**m.model_dump(), tasks=[t for t in listed if t.milestone_id == m.id])
                    for m in project.milestones or []],
        unscheduled=[t for t in listed if t.milestone_id is None],
        truncated=len(found) > limit,
    )
