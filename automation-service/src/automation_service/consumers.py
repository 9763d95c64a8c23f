"""Events automation-service reacts to, each routed to its handler."""

from __future__ import annotations

from functools import partial

from automation_service import handlers
from automation_service.actions import ActionRegistry, action_registry
from stayops_kit.consumer import Subscriptions
from stayops_schemas.events.sync import Platform

# Besides every platform's listing, reservation, review and guest-message facts, the
# StayOps facts an event automation may name in `on:`.
REACTED_TO = ("stayops.task.completed", "stayops.task.failed", "stayops.task.cancelled")
# The run events a firing's run is followed by (event automations see them too).
RUN_EVENTS = ("stayops.workflow.run.started", "stayops.workflow.run.waiting", "stayops.workflow.run.completed",
              "stayops.workflow.run.failed", "stayops.workflow.run.cancelled")


def subscriptions(actions: ActionRegistry | None = None) -> Subscriptions:
    subs = Subscriptions()
    subs.on("stayops.task.assigned")(partial(handlers.task_assigned, actions or action_registry()))
    subs.on("org.policy.updated")(handlers.policy_updated)
    # Facts event automations react to (`on:`), from every platform in canonical form.
    subs.on(*REACTED_TO)(handlers.event_received)
    subs.on(*RUN_EVENTS)(handlers.run_reported)
    for platform in Platform:
        subs.on(f"{platform}.sync.completed", f"{platform}.sync.failed")(handlers.sync_answered)
        subs.on(f"{platform}.price.updated", f"{platform}.price.update_failed")(handlers.price_answered)
        subs.on(f"{platform}.listing.synced")(handlers.listing_synced)
        subs.on(*(f"{platform}.reservation.{name}" for name in ("created", "changed", "cancelled")))(
            handlers.reservation_reported)
        subs.on(f"{platform}.review.created", f"{platform}.message.received")(handlers.event_received)
    return subs
