"""workflow-service REST routes: parse, call a handler, shape the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from stayops_kit.api import CurrentCaller, Runtime
from stayops_schemas.events.workflows import RunStatus
from workflow_service import handlers, store
from workflow_service.domain import RunLogEntry, WorkflowDefinition

router = APIRouter(tags=["workflows"])


class WorkflowOut(BaseModel):
    key: str
    version: int
    name: str
    document: dict[str, Any]
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, definition: WorkflowDefinition) -> WorkflowOut:
        return cls.model_validate(definition, from_attributes=True)


class WorkflowList(BaseModel):
    items: list[WorkflowOut]


class RunLogEntryOut(BaseModel):
    at: datetime
    actor: str
    message: str

    @classmethod
    def of(cls, entry: RunLogEntry) -> RunLogEntryOut:
        return cls.model_validate(entry, from_attributes=True)


class RunOut(BaseModel):
    id: str
    org_id: str
    workflow_key: str
    workflow_version: int
    status: RunStatus
    current_step: str | None
    parameters: dict[str, Any]
    started_by: str | None
    correlation_id: str | None
    started_at: datetime
    updated_at: datetime
    log: list[RunLogEntryOut]

    @classmethod
    def of(cls, found: handlers.RunWithLog) -> RunOut:
        run = found.run
        return cls(
            id=run.id, org_id=run.org_id, workflow_key=run.workflow_key,
            workflow_version=run.workflow_version, status=run.status, current_step=run.current_step,
            parameters=run.parameters, started_by=run.started_by, correlation_id=run.correlation_id,
            started_at=run.started_at, updated_at=run.updated_at,
            log=[RunLogEntryOut.of(e) for e in found.log],
        )


@router.get("/workflows", response_model=WorkflowList)
async def list_workflows(caller: CurrentCaller, runtime: Runtime) -> WorkflowList:
    async with runtime.engine.connect() as conn:
        latest = await store.list_latest_definitions(conn, caller.org_id)
    return WorkflowList(items=[WorkflowOut.of(d) for d in latest])


@router.get("/runs/{run_id}", response_model=RunOut)
async def get_run(run_id: str, caller: CurrentCaller, runtime: Runtime) -> RunOut:
    async with runtime.uow.begin() as uow:
        found = await handlers.get_run(uow, caller, run_id)
    return RunOut.of(found)
