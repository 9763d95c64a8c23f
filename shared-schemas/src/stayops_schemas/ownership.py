"""Who may publish what: each event type's owning sources, and the commands a
workflow definition may emit. A fact is announced only by the service that owns
it (`stayops.task.completed` by task-service, `airbnb.price.updated` by
sync-airbnb); a command (`*.requested`) by the services entitled to ask. Consumers
check every event against this table and dead-letter a forgery."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from stayops_schemas.catalog import CATALOG
from stayops_schemas.envelope import Envelope
from stayops_schemas.errors import SchemaError

TASK_SERVICE = "/task-service"
WORKFLOW_SERVICE = "/workflow-service"
AUTOMATION_SERVICE = "/automation-service"
AGENT_SERVICE = "/agent-service"
ORG_SERVICE = "urn:stayops:org-service"
SYNC_AIRBNB = "/sync-airbnb"
SYNC_HOSTAWAY = "/sync-hostaway"

# Commands a workflow definition's `emit_and_await` step may send. Everything else
# (facts owned by another service, approvals, task events) is refused at publish time.
WORKFLOW_COMMANDS: frozenset[str] = frozenset({"stayops.sync.requested"})

_BY_PREFIX: tuple[tuple[str, frozenset[str]], ...] = (
    ("stayops.task.", frozenset({TASK_SERVICE})),
    ("stayops.workflow.", frozenset({WORKFLOW_SERVICE})),
    ("stayops.automation.", frozenset({AUTOMATION_SERVICE})),
    ("stayops.pricing.", frozenset({AUTOMATION_SERVICE})),
    ("stayops.agent.", frozenset({AGENT_SERVICE})),
    ("org.", frozenset({ORG_SERVICE})),
    ("airbnb.", frozenset({SYNC_AIRBNB})),
    ("hostaway.", frozenset({SYNC_HOSTAWAY})),
)

# Commands that more than one service may send.
_COMMANDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "stayops.task.requested": frozenset({WORKFLOW_SERVICE, AGENT_SERVICE, AUTOMATION_SERVICE}),
    "stayops.task.cancel.requested": frozenset({AUTOMATION_SERVICE, WORKFLOW_SERVICE}),
    "stayops.task.reschedule.requested": frozenset({AUTOMATION_SERVICE}),
    "stayops.task.reassign.requested": frozenset({WORKFLOW_SERVICE}),
    "stayops.workflow.run.requested": frozenset({AUTOMATION_SERVICE}),
    "stayops.sync.requested": frozenset({AUTOMATION_SERVICE, WORKFLOW_SERVICE}),
})


def _owners_of(type_: str) -> frozenset[str]:
    if type_ in _COMMANDS:
        return _COMMANDS[type_]
    for prefix, sources in _BY_PREFIX:
        if type_.startswith(prefix):
            return sources
    raise RuntimeError(f"{type_} has no owner in stayops_schemas.ownership")


OWNERS: Mapping[str, frozenset[str]] = MappingProxyType({t: _owners_of(t) for t in CATALOG})


class ForgedSource(SchemaError):
    """An event whose `source` does not own its type: it is dead-lettered, never applied."""


def owner_of(type_: str) -> str:
    """The source that owns a type (the first, for a command several may send)."""
    return sorted(OWNERS[type_])[0]


def check_source(envelope: Envelope) -> None:
    """Refuse an event whose source may not publish its type."""
    owners = OWNERS.get(envelope.type)
    if owners is not None and envelope.source not in owners:
        raise ForgedSource(
            f"{envelope.type} is published only by {', '.join(sorted(owners))}, "
            f"not by {envelope.source!r}: refused as a forgery"
        )
