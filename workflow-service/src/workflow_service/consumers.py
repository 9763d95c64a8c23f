"""Events workflow-service reacts to, each routed to its handler."""

from __future__ import annotations

from stayops_kit.consumer import Subscriptions
from stayops_schemas.catalog import CATALOG
from workflow_service import handlers

# Request-shaped events that are not replies an `emit_and_await` step could wait for.
_NOT_REPLIES = ("stayops.task.", "stayops.workflow.", "org.")


def reply_types() -> list[str]:
    """Catalog events that answer a request by its `request_id`."""
    return sorted(
        name for name, entry in CATALOG.items()
        if "request_id" in entry.model.model_fields and not name.startswith(_NOT_REPLIES)
    )


def subscriptions() -> Subscriptions:
    subs = Subscriptions()
    subs.on("stayops.workflow.run.requested")(handlers.run_requested)
    subs.on("stayops.task.completed")(handlers.task_completed)
    subs.on("stayops.task.failed")(handlers.task_failed)
    subs.on(*reply_types())(handlers.reply_received)
    return subs
