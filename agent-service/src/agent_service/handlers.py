"""One function per query or event: load, decide, save — all in the caller's unit
of work."""

from __future__ import annotations

import logging

from agent_service import store
from agent_service.domain import (
    Activity,
    AgentNotFound,
    default_profile,
    joined_activity,
    listing_from,
    platform_of,
    reservation_from,
)
from stayops_kit.auth import Caller
from stayops_kit.consumer import EventContext
from stayops_kit.outbox import UnitOfWork
from stayops_schemas.events.org import MemberJoined, UserType
from stayops_schemas.events.sync import (
    ListingSynced,
    ReservationCancelled,
    ReservationChanged,
    ReservationCreated,
)

log = logging.getLogger(__name__)


async def agent_activity(uow: UnitOfWork, caller: Caller, user_id: str, *, limit: int) -> list[Activity]:
    if await store.get_profile(uow.conn, caller.org_id, user_id) is None:
        raise AgentNotFound(user_id)
    return await store.activity_of(uow.conn, caller.org_id, user_id, limit=limit)


async def member_joined(ctx: EventContext, event: MemberJoined) -> None:
    """An AI agent that joins gets its role's default profile, unless it has one."""
    if event.user_type is not UserType.AI_AGENT:
        return
    profile = default_profile(
        org_id=event.org_id,
        user_id=event.user_id,
        display_name=event.display_name,
        role_id=event.role_id,
        created_at=ctx.uow.clock.now(),
    )
    if await store.insert_profile_if_missing(ctx.uow.conn, profile):
        await store.append_activity(ctx.uow.conn, joined_activity(profile, event.role_name, id=ctx.uow.ids()))
    else:
        log.debug("agent %s of org %s already has a profile", event.user_id, event.org_id)


async def listing_synced(ctx: EventContext, event: ListingSynced) -> None:
    await store.upsert_listing(ctx.uow.conn, listing_from(event, platform_of(ctx.envelope.type)))


async def reservation_reported(
    ctx: EventContext, event: ReservationCreated | ReservationChanged | ReservationCancelled
) -> None:
    reservation = reservation_from(event, platform_of(ctx.envelope.type), as_of=ctx.envelope.time)
    await store.upsert_reservation(ctx.uow.conn, reservation)
