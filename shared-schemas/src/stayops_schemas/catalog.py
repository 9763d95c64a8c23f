"""The event catalog: every event type StayOps produces or consumes, its payload
model and its topic, and the declared list of topics the stack provisions."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from pydantic import ValidationError

from stayops_schemas.envelope import Envelope
from stayops_schemas.errors import InvalidPayload, UnknownEventType
from stayops_schemas.events import agents, automations, org, sync, tasks, workflows
from stayops_schemas.events.base import Payload
from stayops_schemas.events.sync import Platform


@dataclass(frozen=True)
class EventType:
    """One entry of the catalog. A breaking payload change is a new `version`."""

    type: str
    topic: str
    # `builtins.type`: inside the class body `type` is the field above.
    model: builtins.type[Payload]
    version: int = 1

    @property
    def dataschema(self) -> str:
        """The CloudEvents `dataschema` of this type: the `$id` of its JSON Schema."""
        return f"urn:stayops:schema:{self.type}:v{self.version}"

    @property
    def schema_file(self) -> str:
        """The JSON Schema's file name in `shared-schemas/schemas/`."""
        return f"{self.type}.v{self.version}.json"

    def envelope(
        self,
        payload: Payload,
        *,
        id: str,
        source: str,
        partitionkey: str,
        time: datetime,
        correlationid: str | None = None,
        causationid: str | None = None,
        subject: str | None = None,
        traceparent: str | None = None,
    ) -> Envelope:
        """Wrap a payload of this type in an envelope: `orgid` is the payload's
        `org_id`, `dataschema` this type's, the data the payload in JSON form."""
        if not isinstance(payload, self.model):
            raise TypeError(f"{self.type} carries {self.model.__name__}, not {type(payload).__name__}")
        data = payload.model_dump(mode="json")
        return Envelope(
            id=id,
            type=self.type,
            source=source,
            orgid=str(data["org_id"]),
            partitionkey=partitionkey,
            data=data,
            time=time,
            correlationid=correlationid,
            causationid=causationid,
            dataschema=self.dataschema,
            subject=subject,
            traceparent=traceparent,
        )


@dataclass(frozen=True)
class Topic:
    """A Kafka topic the stack provisions at start-up."""

    name: str
    partitions: int


TASKS = "stayops.tasks"
WORKFLOWS = "stayops.workflows"
AUTOMATIONS = "stayops.automations"
AGENTS = "stayops.agents"
ORG_DIRECTORY = "org.directory"
SYNC_AIRBNB = "sync.airbnb"
SYNC_HOSTAWAY = "sync.hostaway"

TOPICS: tuple[Topic, ...] = (
    Topic(TASKS, 6),
    Topic(WORKFLOWS, 6),
    Topic(AUTOMATIONS, 3),
    Topic(AGENTS, 3),
    Topic(ORG_DIRECTORY, 3),
    Topic(SYNC_AIRBNB, 6),
    Topic(SYNC_HOSTAWAY, 3),
)

# Every consumer group has a dead-letter topic named `<group>.dlq`.
CONSUMER_GROUPS: tuple[str, ...] = (
    "task-service",
    "workflow-service",
    "automation-service",
    "agent-service",
    "sync-simulator",
    "sync-hostaway-simulator",
)


def dead_letter_topic(group: str) -> str:
    return f"{group}.dlq"


def replay_topic(group: str) -> str:
    """Where `stayops replay` re-delivers records to one consumer group: only that
    group reads it, so no other group sees a replayed record."""
    return f"{group}.replay"


def all_topics() -> tuple[Topic, ...]:
    """The topics to provision before any consumer starts, dead-letter and replay topics
    included (one partition each: a replay keeps the order it is sent in)."""
    return (TOPICS + tuple(Topic(dead_letter_topic(group), 1) for group in CONSUMER_GROUPS)
            + tuple(Topic(replay_topic(group), 1) for group in CONSUMER_GROUPS))


_SYNC_EVENTS: tuple[tuple[str, type[Payload]], ...] = (
    ("listing.synced", sync.ListingSynced),
    ("reservation.created", sync.ReservationCreated),
    ("reservation.changed", sync.ReservationChanged),
    ("reservation.cancelled", sync.ReservationCancelled),
    ("review.created", sync.ReviewCreated),
    ("message.received", sync.MessageReceived),
    ("price.updated", sync.PriceUpdated),
    ("price.update_failed", sync.PriceUpdateFailed),
    ("sync.completed", sync.SyncCompleted),
    ("sync.failed", sync.SyncFailed),
    ("market.rates.synced", sync.MarketRatesSynced),
)

# Each sync service publishes the same payloads under its own prefix on its own topic.
SYNC_TOPICS: Mapping[Platform, str] = MappingProxyType(
    {Platform.AIRBNB: SYNC_AIRBNB, Platform.HOSTAWAY: SYNC_HOSTAWAY}
)


def _sync_entries(platform: Platform) -> tuple[EventType, ...]:
    return tuple(
        EventType(f"{platform}.{name}", SYNC_TOPICS[platform], model) for name, model in _SYNC_EVENTS
    )


_ENTRIES: tuple[EventType, ...] = (
    EventType("stayops.task.requested", TASKS, tasks.TaskRequested),
    EventType("stayops.task.created", TASKS, tasks.TaskCreated),
    EventType("stayops.task.assigned", TASKS, tasks.TaskAssigned),
    EventType("stayops.task.started", TASKS, tasks.TaskStarted),
    EventType("stayops.task.completed", TASKS, tasks.TaskCompleted),
    EventType("stayops.task.failed", TASKS, tasks.TaskFailed),
    EventType("stayops.task.blocked", TASKS, tasks.TaskBlocked),
    EventType("stayops.task.unblocked", TASKS, tasks.TaskUnblocked),
    EventType("stayops.task.cancelled", TASKS, tasks.TaskCancelled),
    EventType("stayops.task.rescheduled", TASKS, tasks.TaskRescheduled),
    EventType("stayops.task.cancel.requested", TASKS, tasks.TaskCancelRequested),
    EventType("stayops.task.reschedule.requested", TASKS, tasks.TaskRescheduleRequested),
    EventType("stayops.task.reassign.requested", TASKS, tasks.TaskReassignRequested),
    EventType("stayops.workflow.run.requested", WORKFLOWS, workflows.WorkflowRunRequested),
    EventType("stayops.workflow.run.started", WORKFLOWS, workflows.WorkflowRunStarted),
    EventType("stayops.workflow.run.waiting", WORKFLOWS, workflows.WorkflowRunWaiting),
    EventType("stayops.workflow.run.completed", WORKFLOWS, workflows.WorkflowRunCompleted),
    EventType("stayops.workflow.run.failed", WORKFLOWS, workflows.WorkflowRunFailed),
    EventType("stayops.workflow.run.cancelled", WORKFLOWS, workflows.WorkflowRunCancelled),
    EventType("stayops.automation.triggered", AUTOMATIONS, automations.AutomationTriggered),
    EventType("stayops.automation.executed", AUTOMATIONS, automations.AutomationExecuted),
    EventType("stayops.automation.action.finished", AUTOMATIONS, automations.ActionFinished),
    EventType("stayops.sync.requested", AUTOMATIONS, automations.SyncRequested),
    EventType("stayops.pricing.approved", AUTOMATIONS, automations.PricingApproved),
    EventType("stayops.agent.result.produced", AGENTS, agents.AgentResultProduced),
    EventType("stayops.agent.paused", AGENTS, agents.AgentPaused),
    EventType("stayops.agent.resumed", AGENTS, agents.AgentResumed),
    EventType("stayops.agent.updated", AGENTS, agents.AgentUpdated),
    EventType("org.member.joined", ORG_DIRECTORY, org.MemberJoined),
    EventType("org.member.updated", ORG_DIRECTORY, org.MemberUpdated),
    EventType("org.member.left", ORG_DIRECTORY, org.MemberLeft),
    EventType("org.policy.updated", ORG_DIRECTORY, org.OrgPolicyUpdated),
    *_sync_entries(Platform.AIRBNB),
    *_sync_entries(Platform.HOSTAWAY),
)


def _index(entries: tuple[EventType, ...]) -> Mapping[str, EventType]:
    by_type = {entry.type: entry for entry in entries}
    if len(by_type) != len(entries):
        raise RuntimeError("the event catalog lists an event type twice")
    return MappingProxyType(by_type)


CATALOG: Mapping[str, EventType] = _index(_ENTRIES)


def event_type(type_: str) -> EventType:
    """The catalog entry of an event type; `UnknownEventType` if there is none."""
    try:
        return CATALOG[type_]
    except KeyError:
        raise UnknownEventType(f"'{type_}' is not in the event catalog (stayops_schemas.catalog)") from None


def sync_event_type(platform: Platform | str, name: str) -> EventType:
    """The entry of a sync service's event, e.g. `sync_event_type("hostaway",
    "reservation.created")` is `hostaway.reservation.created` on `sync.hostaway`."""
    try:
        prefix = Platform(platform)
    except ValueError:
        raise UnknownEventType(
            f"'{platform}' is not a sync platform; use one of {[str(p) for p in Platform]}"
        ) from None
    return event_type(f"{prefix}.{name}")


def parse_payload(envelope: Envelope) -> Payload:
    """Validate an envelope's data against its type's model."""
    entry = event_type(envelope.type)
    if envelope.dataschema is not None and envelope.dataschema != entry.dataschema:
        raise InvalidPayload(
            f"{envelope.type} says its data follows {envelope.dataschema}, but this catalog "
            f"knows {entry.dataschema}: upgrade stayops-schemas or publish that version"
        )
    try:
        return entry.model.model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidPayload(f"{envelope.type} payload does not match its schema: {exc}") from exc
