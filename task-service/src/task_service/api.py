"""task-service REST routes: parse, call a handler, shape the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from stayops_kit.api import CorrelationId, CurrentCaller, Runtime
from stayops_schemas.events.org import UserType
from stayops_schemas.events.tasks import DecisionOutcome, Priority, TaskStatus, TaskType
from task_service import handlers, store
from task_service.domain import Decision, Task

router = APIRouter(tags=["tasks"])


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    task_type: TaskType
    priority: Priority = Priority.MEDIUM
    description: str | None = Field(default=None, max_length=10_000)
    department_id: str | None = None
    role_id: str | None = None
    assigned_to: str | None = None
    due_at: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    parent_task_id: str | None = None


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


@router.post("/tasks", status_code=status.HTTP_201_CREATED, response_model=TaskOut)
async def create_task(body: TaskIn, caller: CurrentCaller, runtime: Runtime,
                      correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.create_task(uow, caller, handlers.CreateTask(**body.model_dump()))
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
    offset: Annotated[int, Query(ge=0)] = 0,
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
    offset: Annotated[int, Query(ge=0)] = 0,
) -> TaskPage:
    """Tasks assigned to the caller, and tasks of the caller's role nobody has yet."""
    async with runtime.engine.connect() as conn:
        items, total = await store.inbox(
            conn, caller.org_id, user_id=caller.user_id, role_id=caller.role_id, status=status_,
            task_type=task_type, priority=priority, limit=limit, offset=offset,
        )
    return TaskPage(items=[TaskOut.of(t) for t in items], total=total, limit=limit, offset=offset)


@router.post("/tasks/{task_id}/start", response_model=TaskOut)
async def start_task(task_id: str, caller: CurrentCaller, runtime: Runtime,
                     correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.start_task(uow, caller, task_id)
    return TaskOut.of(task)


@router.post("/tasks/{task_id}/complete", response_model=TaskOut)
async def complete_task(task_id: str, body: CompleteIn, caller: CurrentCaller, runtime: Runtime,
                        correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.complete_task(uow, caller, task_id, body.result)
    return TaskOut.of(task)


@router.post("/tasks/{task_id}/fail", response_model=TaskOut)
async def fail_task(task_id: str, body: ReasonIn, caller: CurrentCaller, runtime: Runtime,
                    correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.fail_task(uow, caller, task_id, body.reason)
    return TaskOut.of(task)


@router.post("/tasks/{task_id}/block", response_model=TaskOut)
async def block_task(task_id: str, body: ReasonIn, caller: CurrentCaller, runtime: Runtime,
                     correlation_id: CorrelationId) -> TaskOut:
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.block_task(uow, caller, task_id, body.reason)
    return TaskOut.of(task)


@router.post("/tasks/{task_id}/decision", response_model=TaskOut)
async def decide_task(task_id: str, body: DecisionIn, caller: CurrentCaller, runtime: Runtime,
                      correlation_id: CorrelationId) -> TaskOut:
    decision = Decision.of(body.outcome, body.comment, body.changes)
    async with runtime.uow.begin(correlation_id=correlation_id) as uow:
        task = await handlers.decide_task(uow, caller, task_id, decision)
    return TaskOut.of(task)
