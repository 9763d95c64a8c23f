"""Events automation-service reacts to, each routed to its handler."""

from __future__ import annotations

from automation_service import handlers
from stayops_kit.consumer import Subscriptions


def subscriptions() -> Subscriptions:
    subs = Subscriptions()
    subs.on("stayops.task.assigned")(handlers.task_assigned)
    return subs
