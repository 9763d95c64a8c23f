"""One function per command or event: load, decide, save, announce — all in the
caller's unit of work."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stayops_kit.auth import Caller
from stayops_kit.consumer import EventContext
from stayops_kit.outbox import UnitOfWork
from stayops_schemas.events.org import MemberJoined, MemberLeft, MemberUpdated
from stayops_schemas.events.tasks import Priority, TaskCreated, TaskStatus, TaskType
from task_service import store
from task_service.domain import ParentTaskInvalid, Task, TaskNotFound


@dataclass(frozen=True)
class CreateTask:
    title: str
    task_type: TaskType
    priority: Priority = Priority.MEDIUM
    description: str | None = None
    department_id: str | None = None
    role_id: str | None = None
    assigned_to: str | None = None
    due_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    parent_task_id: str | None = None


async def create_task(uow: UnitOfWork, caller: Caller, command: CreateTask) -> Task:
    if command.parent_task_id is not None:
        parent = await store.get_task(uow.conn, caller.org_id, command.parent_task_id)
        if parent is None:
            raise ParentTaskInvalid(
                f"parent task {command.parent_task_id} does not exist in your organisation"
            )
    now = uow.clock.now()
    task = Task(
        id=uow.ids(),
        org_id=caller.org_id,
        title=command.title,
        task_type=command.task_type,
        status=TaskStatus.PENDING,
        priority=command.priority,
        created_by=caller.user_id,
        created_at=now,
        updated_at=now,
        description=command.description,
        department_id=command.department_id,
        role_id=command.role_id,
        assigned_to=command.assigned_to,
        due_at=command.due_at,
        data=command.data,
        parent_task_id=command.parent_task_id,
    )
    await store.insert_task(uow.conn, task)
    await uow.announce(
        "stayops.task.created", task_created(task), org_id=task.org_id, key=task.id
    )
    return task


def task_created(task: Task) -> TaskCreated:
    return TaskCreated(
        task_id=task.id,
        org_id=task.org_id,
        title=task.title,
        task_type=task.task_type,
        status=task.status,
        priority=task.priority,
        description=task.description,
        department_id=task.department_id,
        role_id=task.role_id,
        assigned_to=task.assigned_to,
        due_at=task.due_at,
        data=task.data,
        parent_task_id=task.parent_task_id,
        workflow_run_id=task.workflow_run_id,
        workflow_step=task.workflow_step,
        created_by=task.created_by,
        request_id=task.request_id,
    )


async def get_task(uow: UnitOfWork, caller: Caller, task_id: str) -> Task:
    task = await store.get_task(uow.conn, caller.org_id, task_id)
    if task is None:
        raise TaskNotFound(task_id)
    return task


async def member_joined(ctx: EventContext, event: MemberJoined) -> None:
    await store.upsert_member(
        ctx.uow.conn,
        {**_membership(event), "joined_at": event.joined_at},
    )


async def member_updated(ctx: EventContext, event: MemberUpdated) -> None:
    await store.upsert_member(
        ctx.uow.conn,
        {**_membership(event), "joined_at": event.updated_at},
    )


async def member_left(ctx: EventContext, event: MemberLeft) -> None:
    await store.deactivate_member(ctx.uow.conn, event.org_id, event.user_id)


def _membership(event: MemberJoined | MemberUpdated) -> dict[str, Any]:
    return {
        "org_id": event.org_id,
        "user_id": event.user_id,
        "user_type": event.user_type.value,
        "display_name": event.display_name,
        "role_id": event.role_id,
        "role_name": event.role_name,
        "department_id": event.department_id,
        "department_name": event.department_name,
    }
