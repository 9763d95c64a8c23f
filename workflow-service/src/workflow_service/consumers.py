"""Events workflow-service reacts to, each routed to its handler; the types are the
ones `stayops_schemas.subscriptions` declares for workflow-service."""

from __future__ import annotations

from stayops_kit.consumer import Subscriptions
from stayops_schemas.subscriptions import WORKFLOW_SERVICE
from workflow_service import handlers
from workflow_service.definitions import reply_types


def subscriptions() -> Subscriptions:
    subs = Subscriptions(WORKFLOW_SERVICE)
    subs.on("stayops.workflow.run.requested")(handlers.run_requested)
    subs.on("stayops.task.completed")(handlers.task_completed)
    subs.on("stayops.task.failed")(handlers.task_failed)
    subs.on("org.policy.updated")(handlers.policy_updated)
    subs.on(*reply_types())(handlers.reply_received)
    return subs.complete()
