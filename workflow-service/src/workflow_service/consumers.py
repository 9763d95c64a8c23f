"""Events workflow-service reacts to, each routed to its handler."""

from __future__ import annotations

from stayops_kit.consumer import Subscriptions
from workflow_service import handlers


def subscriptions() -> Subscriptions:
    subs = Subscriptions()
    subs.on("stayops.task.completed")(handlers.task_completed)
    subs.on("stayops.task.failed")(handlers.task_failed)
    return subs
