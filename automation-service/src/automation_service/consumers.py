"""Events automation-service reacts to, each routed to its handler; the types are the
ones `stayops_schemas.subscriptions` declares for automation-service."""

from __future__ import annotations

from functools import partial

from automation_service import handlers
from automation_service.actions import ActionRegistry, action_registry
from stayops_kit.consumer import Subscriptions
from stayops_schemas.subscriptions import (
    AUTOMATION_SERVICE,
    RESERVATION_FACTS,
    RUN_EVENTS,
    TASK_OUTCOMES,
    each_platform,
)

# Besides every platform's listing, reservation, review and guest-message facts, the
# StayOps facts an event automation may name in `on:`.
REACTED_TO = TASK_OUTCOMES
__all__ = ["REACTED_TO", "RUN_EVENTS", "subscriptions"]


def subscriptions(actions: ActionRegistry | None = None) -> Subscriptions:
    subs = Subscriptions(AUTOMATION_SERVICE)
    subs.on("stayops.task.assigned")(partial(handlers.task_assigned, actions or action_registry()))
    subs.on("org.policy.updated")(handlers.policy_updated)
    # Facts event automations react to (`on:`), from every platform in canonical form.
    subs.on(*REACTED_TO)(handlers.task_outcome)
    subs.on(*RUN_EVENTS)(handlers.run_reported)
    subs.on(*each_platform("sync.completed", "sync.failed"))(handlers.sync_answered)
    subs.on(*each_platform("price.updated", "price.update_failed"))(handlers.price_answered)
    subs.on(*each_platform("listing.synced"))(handlers.listing_synced)
    subs.on(*each_platform(*RESERVATION_FACTS))(handlers.reservation_reported)
    subs.on(*each_platform("review.created", "message.received"))(handlers.event_received)
    return subs.complete()
