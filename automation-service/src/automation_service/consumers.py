"""Events automation-service reacts to, each routed to its handler."""

from __future__ import annotations

from functools import partial

from automation_service import handlers
from automation_service.actions import ActionRegistry, action_registry
from stayops_kit.consumer import Subscriptions
from stayops_schemas.events.sync import Platform


def subscriptions(actions: ActionRegistry | None = None) -> Subscriptions:
    subs = Subscriptions()
    subs.on("stayops.task.assigned")(partial(handlers.task_assigned, actions or action_registry()))
    subs.on("org.policy.updated")(handlers.policy_updated)
    for platform in Platform:
        subs.on(f"{platform}.sync.completed", f"{platform}.sync.failed")(handlers.sync_answered)
        subs.on(f"{platform}.price.updated", f"{platform}.price.update_failed")(handlers.price_answered)
    return subs
