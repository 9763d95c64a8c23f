"""agent-service REST routes: parse, call a handler, shape the answer."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field

from agent_service import handlers, store
from agent_service.domain import Activity, AgentProfile, Autonomy, StoredResult
from agent_service.preview import PREVIEW_EXAMPLE, PreviewRequest, PreviewResponse, preview_prices
from stayops_kit.api import CurrentCaller, Runtime
from stayops_kit.auth import Caller
from stayops_kit.fields import ExactNumbers
from stayops_kit.permissions import Permission, require

router = APIRouter(tags=["agents"])


class AgentOut(BaseModel):
    org_id: str
    user_id: str
    display_name: str
    role_id: str
    skills: list[str]
    autonomy: Autonomy
    confidence_threshold: Decimal
    created_at: datetime
    paused_at: datetime | None = None

    @classmethod
    def of(cls, profile: AgentProfile) -> AgentOut:
        return cls.model_validate(profile, from_attributes=True)


class AgentList(BaseModel):
    items: list[AgentOut]


class ActivityOut(BaseModel):
    """One line of an agent's log; a decision on a task also says what it was based
    on (`inputs`), why (`explanation`) and how sure the agent was (`confidence`)."""

    id: str
    at: datetime
    kind: str
    task_id: str | None
    summary: str
    inputs: dict[str, Any] | None = None
    explanation: str | None = None
    confidence: float | None = None
    details: dict[str, Any]

    @classmethod
    def of(cls, entry: Activity) -> ActivityOut:
        return cls(
            id=entry.id, at=entry.at, kind=entry.kind, task_id=entry.task_id, summary=entry.summary,
            inputs=entry.details.get("inputs"), explanation=entry.details.get("explanation"),
            confidence=entry.details.get("confidence"), details=entry.details,
        )


class ActivityList(BaseModel):
    items: list[ActivityOut]


@router.get("/agents", response_model=AgentList)
async def list_agents(caller: CurrentCaller, runtime: Runtime) -> AgentList:
    async with runtime.engine.connect() as conn:
        found = await store.list_profiles(conn, caller.org_id)
    return AgentList(items=[AgentOut.of(p) for p in found])


@router.get("/agents/{user_id}/activity", response_model=ActivityList)
async def agent_activity(
    user_id: str,
    caller: CurrentCaller,
    runtime: Runtime,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ActivityList:
    async with runtime.uow.begin() as uow:
        found = await handlers.agent_activity(uow, caller, user_id, limit=limit)
    return ActivityList(items=[ActivityOut.of(a) for a in found])


class ScorecardWindowOut(BaseModel):
    weeks: int
    first: str
    last: str
    decisions: int
    nights_sold: int
    picked_up: int
    realised_revenue: Decimal
    forecast_revenue: Decimal
    realised_occupancy: float
    forecast_occupancy: float
    revenue_vs_forecast_pct: float
    beat_forecast: int


class ScorecardOut(BaseModel):
    """How the nights the agent repriced did: realised against forecast."""

    agent_user_id: str
    as_of: str
    windows: list[ScorecardWindowOut]


@router.get("/agents/{user_id}/scorecard", response_model=ScorecardOut)
async def agent_scorecard(user_id: str, caller: CurrentCaller, runtime: Runtime) -> ScorecardOut:
    async with runtime.uow.begin() as uow:
        found = await handlers.agent_scorecard(uow, caller, user_id)
    return ScorecardOut.model_validate(found)


@router.post("/pricing/preview", response_model=PreviewResponse, tags=["pricing"])
async def pricing_preview(
    body: Annotated[PreviewRequest, Body(openapi_examples={"lisbon": {
        "summary": "A listing with two bookings, an orphan night and a festival",
        "value": PREVIEW_EXAMPLE}})],
    caller: CurrentCaller,
    runtime: Runtime,
) -> PreviewResponse:
    """What pricing v2 would do for the listing, calendar and market given: nightly
    prices, minimum stays and the factors behind them. Nothing is read from or
    written to any store: no task, no activity, no forecast."""
    return preview_prices(body, now=runtime.clock.now())


Manager = Annotated[Caller, require(Permission.AGENTS_MANAGE)]


class AgentChange(ExactNumbers):
    """What an owner may change on an agent; a field left out stays as it is."""

    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [
        {"autonomy": "act_within_limits", "confidence_threshold": 0.8, "skills": ["pricing"]}]}}

    autonomy: Autonomy | None = None
    confidence_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Below this confidence a person reviews the agent's proposal.")
    skills: list[str] | None = None


@router.patch("/agents/{user_id}", response_model=AgentOut)
async def update_agent(user_id: str, body: AgentChange, caller: Manager, runtime: Runtime) -> AgentOut:
    async with runtime.uow.begin() as uow:
        changed = await handlers.update_agent(
            uow, caller, user_id, autonomy=body.autonomy,
            confidence_threshold=None if body.confidence_threshold is None
            else Decimal(str(body.confidence_threshold)),
            skills=tuple(body.skills) if body.skills is not None else None)
    return AgentOut.of(changed)


@router.post("/agents/{user_id}/pause", response_model=AgentOut)
async def pause_agent(user_id: str, caller: Manager, runtime: Runtime) -> AgentOut:
    """The agent's kill switch: it takes no work until resumed."""
    async with runtime.uow.begin() as uow:
        return AgentOut.of(await handlers.pause_agent(uow, caller, user_id, paused=True))


@router.post("/agents/{user_id}/resume", response_model=AgentOut)
async def resume_agent(user_id: str, caller: Manager, runtime: Runtime) -> AgentOut:
    async with runtime.uow.begin() as uow:
        return AgentOut.of(await handlers.pause_agent(uow, caller, user_id, paused=False))


@router.post("/org/agents/pause", response_model=AgentList)
async def pause_org_agents(caller: Manager, runtime: Runtime) -> AgentList:
    """The org's kill switch: none of its agents takes work until resumed. (Under
    /org, not /agents/pause, which would read as the agent named "pause".)"""
    async with runtime.uow.begin() as uow:
        return AgentList(items=[AgentOut.of(a) for a in await handlers.pause_org_agents(uow, caller, paused=True)])


@router.post("/org/agents/resume", response_model=AgentList)
async def resume_org_agents(caller: Manager, runtime: Runtime) -> AgentList:
    async with runtime.uow.begin() as uow:
        return AgentList(items=[AgentOut.of(a) for a in await handlers.pause_org_agents(uow, caller, paused=False)])


class StoredResultOut(BaseModel):
    """A result stored because it was too big for its event (claim check). `digest`
    is the sha256 of the whole result's canonical JSON; with `listing_id` the
    result holds only that listing's nights (`page_of`), and the digest is still
    the whole's."""

    id: str
    kind: str
    task_id: str
    size: int
    digest: str
    summary: dict[str, Any]
    created_at: datetime
    page_of: str | None = None
    result: dict[str, Any]

    @classmethod
    def of(cls, found: StoredResult, listing_id: str | None) -> StoredResultOut:
        result = found.result if listing_id is None else found.of_listing(listing_id)
        return cls(id=found.id, kind=found.kind, task_id=found.task_id, size=found.size, digest=found.digest,
                   summary=found.summary, created_at=found.created_at, result=result, page_of=listing_id)


ListingFilter = Annotated[str | None, Query(min_length=1, description="Only this listing's nights.")]


@router.get("/results/{result_id}", response_model=StoredResultOut, tags=["results"])
async def get_result(result_id: str, caller: CurrentCaller, runtime: Runtime,
                     listing_id: ListingFilter = None) -> StoredResultOut:
    """A stored result of the caller's org (another org's is a 404)."""
    async with runtime.uow.begin() as uow:
        found = await handlers.stored_result(uow, caller.org_id, result_id)
    return StoredResultOut.of(found, listing_id)


internal_router = APIRouter(tags=["internal"])


@internal_router.get("/results/{org_id}/{result_id}", response_model=StoredResultOut)
async def get_result_for_service(org_id: str, result_id: str, runtime: Runtime,
                                 listing_id: ListingFilter = None) -> StoredResultOut:
    """The same, for another service (with the service API key), which names the org
    the event that carried the ref came from."""
    async with runtime.uow.begin() as uow:
        found = await handlers.stored_result(uow, org_id, result_id)
    return StoredResultOut.of(found, listing_id)
