"""Events agent-service reacts to, each routed to its handler."""

from __future__ import annotations

from agent_service import handlers
from stayops_kit.consumer import Subscriptions
from stayops_schemas.events.sync import Platform


def subscriptions() -> Subscriptions:
    subs = Subscriptions()
    subs.on("org.member.joined")(handlers.member_joined)
    # Every platform's sync data feeds the read model; the handlers keep the platform.
    for platform in Platform:
        subs.on(f"{platform}.listing.synced")(handlers.listing_synced)
        subs.on(
            f"{platform}.reservation.created",
            f"{platform}.reservation.changed",
            f"{platform}.reservation.cancelled",
        )(handlers.reservation_reported)
        subs.on(f"{platform}.price.updated")(handlers.prices_updated)
        subs.on(f"{platform}.review.created")(handlers.review_created)
        subs.on(f"{platform}.market.rates.synced")(handlers.market_rates_synced)
    subs.on("stayops.task.assigned")(handlers.task_assigned)
    return subs
