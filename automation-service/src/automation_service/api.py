"""automation-service REST routes: parse, call a handler, shape the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from automation_service import handlers, store
from automation_service.domain import Automation, Execution
from stayops_kit.api import CurrentCaller, Runtime
from stayops_schemas.events.automations import AutomationType, ExecutionOutcome

router = APIRouter(tags=["automations"])


class AutomationOut(BaseModel):
    id: str
    org_id: str
    name: str
    description: str | None
    kind: AutomationType
    cron: str | None
    timezone: str | None
    event_type: str | None
    condition: dict[str, Any] | None
    action: dict[str, Any]
    is_active: bool
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, automation: Automation) -> AutomationOut:
        return cls.model_validate(automation, from_attributes=True)


class AutomationList(BaseModel):
    items: list[AutomationOut]


class ExecutionOut(BaseModel):
    id: str
    started_at: datetime
    finished_at: datetime | None
    outcome: ExecutionOutcome | None
    error: str | None

    @classmethod
    def of(cls, execution: Execution) -> ExecutionOut:
        return cls.model_validate(execution, from_attributes=True)


class AutomationDetail(AutomationOut):
    recent_executions: list[ExecutionOut]


@router.get("/automations", response_model=AutomationList)
async def list_automations(
    caller: CurrentCaller, runtime: Runtime, is_active: bool | None = None
) -> AutomationList:
    async with runtime.engine.connect() as conn:
        found = await store.list_automations(conn, caller.org_id, is_active=is_active)
    return AutomationList(items=[AutomationOut.of(a) for a in found])


@router.get("/automations/{automation_id}", response_model=AutomationDetail)
async def get_automation(automation_id: str, caller: CurrentCaller, runtime: Runtime) -> AutomationDetail:
    async with runtime.uow.begin() as uow:
        found = await handlers.get_automation(uow, caller, automation_id)
    return AutomationDetail(
        **AutomationOut.of(found.automation).model_dump(),
        recent_executions=[ExecutionOut.of(e) for e in found.recent_executions],
    )
