"""task-service REST routes: parse, call a handler, shape the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stayops_kit import idempotency
from stayops_kit.api import CorrelationId, CurrentCaller, Offset, Runtime
from stayops_kit.auth import Caller
from stayops_kit.fields import IsoDateTime
from stayops_kit.permissions import Permission, require
from stayops_kit.problems import problem_responses
from stayops_schemas.events.org import UserType
from stayops_schemas.events.tasks import AUTOMATION_ASSIGNEE, DecisionOutcome, Priority, TaskStatus, TaskType
from task_service import handlers, store
from task_service.domain import Decision, Task

router = APIRouter(tags=["tasks"])

Creator = Annotated[Caller, require(Permission.TASKS_CREATE)]
Actor = Annotated[Caller, require(Permission.TASKS_ACT)]
Decider = Annotated[Caller, require(Permission.DECISIONS_DECIDE)]

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

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        return cls.model_validate(task, from_attributes=True)


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


class TaskPage(BaseModel):
    items: list[TaskOut]
    total: int
    limit: int
    offset: int


IdempotencyKey = Annotated[str | None, Header(
    min_length=1, max_length=200, pattern="^[!-~]+$",
    description="Retrying with the same key and body answers the task the first request made (200); "
                "the same key with another body is a 422 (code idempotency-key-reused).")]


@router.post("/tasks", status_code=status.HTTP_201_CREATED, response_model=TaskOut,
             responses={200: {"model": TaskOut, "description": "A retry: the task its Idempotency-Key made."}})
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
    return TaskOut.of(task)


@router.get("/tasks", response_model=TaskPage)
async def list_tasks(
    caller: CurrentCaller,
    runtime: Runtime,
    status_: Annotated[TaskStatus | None, Query(alias="status")] = None,
    task_type: TaskType | None = None,
    assigned_to: str | None = None,
    role_id: str | None = None,
    workflow_run_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> TaskPage:
    async with runtime.engine.connect() as conn:
        items, total = await store.list_tasks(
            conn, caller.org_id, status=status_, task_type=task_type, assigned_to=assigned_to,
            role_id=role_id, workflow_run_id=workflow_run_id, limit=limit, offset=offset,
        )
    return TaskPage(items=[TaskOut.of(t) for t in items], total=total, limit=limit, offset=offset)


@router.get("/tasks/{task_id}", response_model=TaskOut)
async def get_task(task_id: str, caller: CurrentCaller, runtime: Runtime) -> TaskOut:
    async with runtime.uow.begin() as uow:
        task = await handlers.get_task(uow, caller, task_id)
    return TaskOut.of(task)


@router.get("/inbox", response_model=TaskPage)
async def inbox(
    caller: CurrentCaller,
    runtime: Runtime,
    status_: Annotated[TaskStatus | None, Query(alias="status")] = None,
    task_type: TaskType | None = None,
    priority: Priority | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> TaskPage:
    """Tasks assigned to the caller, and tasks of the caller's role nobody has yet."""
    async with runtime.engine.connect() as conn:
        items, total = await store.inbox(
            conn, caller.org_id, user_id=caller.user_id, role_id=caller.role_id, status=status_,
            task_type=task_type, priority=priority, limit=limit, offset=offset,
        )
    return TaskPage(items=[TaskOut.of(t) for t in items], total=total, limit=limit, offset=offset)


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
