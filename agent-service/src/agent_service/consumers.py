"""Events agent-service reacts to, each routed to its handler."""

from __future__ import annotations

from agent_service import handlers
from stayops_kit.consumer import Subscriptions


def subscriptions() -> Subscriptions:
    subs = Subscriptions()
    subs.on("org.member.joined")(handlers.member_joined)
    subs.on("airbnb.listing.synced")(handlers.listing_synced)
    subs.on(
        "airbnb.reservation.created",
        "airbnb.reservation.changed",
        "airbnb.reservation.cancelled",
    )(handlers.reservation_reported)
    subs.on("airbnb.price.updated")(handlers.prices_updated)
    subs.on("airbnb.review.created")(handlers.review_created)
    subs.on("airbnb.market.rates.synced")(handlers.market_rates_synced)
    subs.on("stayops.task.assigned")(handlers.task_assigned)
    return subs
