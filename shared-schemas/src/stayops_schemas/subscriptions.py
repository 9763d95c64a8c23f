"""Who consumes what: the event types each consumer group applies, as data. The
services' consumers register their handlers for exactly these types (a handler
for an undeclared type, or a declared type without one, fails at start-up), and
the AsyncAPI document says from here which service subscribes to which message."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from stayops_schemas.catalog import CATALOG, CONSUMER_GROUPS
from stayops_schemas.events.sync import Platform

TASK_SERVICE = "task-service"
WORKFLOW_SERVICE = "workflow-service"
AUTOMATION_SERVICE = "automation-service"
AGENT_SERVICE = "agent-service"
SYNC_SIMULATOR = "sync-simulator"
SYNC_HOSTAWAY_SIMULATOR = "sync-hostaway-simulator"


def each_platform(*names: str) -> tuple[str, ...]:
    """`listing.synced` of every sync platform: `airbnb.listing.synced`, `hostaway.listing.synced`."""
    return tuple(f"{platform}.{name}" for platform in Platform for name in names)


RESERVATION_FACTS = ("reservation.created", "reservation.changed", "reservation.cancelled")

# The StayOps facts an event automation may name in `on:` (besides the platforms' facts).
TASK_OUTCOMES = ("stayops.task.completed", "stayops.task.failed", "stayops.task.cancelled")
# The run events a firing's run is followed by.
RUN_EVENTS = (
    "stayops.workflow.run.started",
    "stayops.workflow.run.waiting",
    "stayops.workflow.run.completed",
    "stayops.workflow.run.failed",
    "stayops.workflow.run.cancelled",
)
_NOT_REPLIES = ("stayops.task.", "stayops.workflow.", "org.")


def reply_types() -> tuple[str, ...]:
    """Catalog events that answer a request by its `request_id`: what a workflow's
    `emit_and_await` step may wait for."""
    return tuple(sorted(
        name for name, entry in CATALOG.items()
        if "request_id" in entry.model.model_fields and not name.startswith(_NOT_REPLIES)
    ))


_CONSUMES: dict[str, tuple[str, ...]] = {
    TASK_SERVICE: (
        "org.member.joined", "org.member.updated", "org.member.left", "org.policy.updated",
        "stayops.task.requested", "stayops.task.cancel.requested", "stayops.task.reschedule.requested",
        "stayops.task.reassign.requested",
        "stayops.agent.result.produced", "stayops.agent.paused", "stayops.agent.resumed",
        "stayops.agent.updated", "stayops.automation.action.finished",
    ),
    WORKFLOW_SERVICE: (
        "stayops.workflow.run.requested", "stayops.task.completed", "stayops.task.failed",
        "org.policy.updated", *reply_types(),
    ),
    AUTOMATION_SERVICE: (
        "stayops.task.assigned", "org.policy.updated", *TASK_OUTCOMES, *RUN_EVENTS,
        *each_platform("sync.completed", "sync.failed", "price.updated", "price.update_failed",
                       "listing.synced", *RESERVATION_FACTS, "review.created", "message.received"),
    ),
    AGENT_SERVICE: (
        "org.member.joined", "stayops.task.assigned",
        *each_platform("listing.synced", *RESERVATION_FACTS, "price.updated", "review.created",
                       "market.rates.synced"),
    ),
    # Each sync service's simulator answers the requests addressed to its platform.
    SYNC_SIMULATOR: ("stayops.sync.requested", "stayops.pricing.approved"),
    SYNC_HOSTAWAY_SIMULATOR: ("stayops.sync.requested", "stayops.pricing.approved"),
}

CONSUMED_BY: Mapping[str, frozenset[str]] = MappingProxyType(
    {group: frozenset(types) for group, types in _CONSUMES.items()}
)


def consumed_by(group: str) -> frozenset[str]:
    """The event types a consumer group applies; `KeyError` for a group not declared here."""
    return CONSUMED_BY[group]


def consumers_of(type_: str) -> tuple[str, ...]:
    """The consumer groups that apply an event type, sorted."""
    return tuple(sorted(group for group, types in CONSUMED_BY.items() if type_ in types))


def _check() -> None:
    for group, types in _CONSUMES.items():
        if group not in CONSUMER_GROUPS:
            raise RuntimeError(f"{group} consumes events but is not in catalog.CONSUMER_GROUPS")
        unknown = sorted(set(types) - CATALOG.keys())
        if unknown:
            raise RuntimeError(f"{group} consumes {unknown}, which the event catalog does not have")
        if len(set(types)) != len(types):
            raise RuntimeError(f"{group} lists an event type twice")


_check()
