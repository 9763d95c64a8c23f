"""Events agent-service reacts to, each routed to its handler; the types are the
ones `stayops_schemas.subscriptions` declares for agent-service."""

from __future__ import annotations

from agent_service import handlers
from stayops_kit.consumer import Subscriptions
from stayops_schemas.subscriptions import AGENT_SERVICE, RESERVATION_FACTS, each_platform


def subscriptions() -> Subscriptions:
    subs = Subscriptions(AGENT_SERVICE)
    subs.on("org.member.joined")(handlers.member_joined)
    # Every platform's sync data feeds the read model; the handlers keep the platform.
    subs.on(*each_platform("listing.synced"))(handlers.listing_synced)
    subs.on(*each_platform(*RESERVATION_FACTS))(handlers.reservation_reported)
    subs.on(*each_platform("price.updated"))(handlers.prices_updated)
    subs.on(*each_platform("review.created"))(handlers.review_created)
    subs.on(*each_platform("market.rates.synced"))(handlers.market_rates_synced)
    subs.on("stayops.task.assigned")(handlers.task_assigned)
    return subs.complete()
