"""The event catalog: every type has a topic the stack provisions, a payload model
that accepts what its producer sends and refuses what it must not."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from stayops_schemas import (
    CATALOG,
    CONSUMER_GROUPS,
    TOPICS,
    Envelope,
    EventType,
    InvalidPayload,
    Payload,
    PricingApproved,
    TaskCompleted,
    TaskCreated,
    UnknownEventType,
    all_topics,
    event_type,
    from_kafka,
    parse_payload,
    sync_event_type,
    to_kafka,
)
from stayops_schemas.events import agents, automations, org, sync, tasks, workflows

NOW = "2025-06-01T09:00:00Z"
RESERVATION = {
    "reservation_id": "res-1",
    "listing_id": "lst-1",
    "org_id": "org-1",
    "status": "confirmed",
    "check_in": "2025-07-01",
    "check_out": "2025-07-04",
    "guests": 2,
    "nightly_rate": "120.00",
    "total": "360.00",
    "currency": "EUR",
    "booked_at": NOW,
}
MEMBER = {
    "org_id": "org-1",
    "user_id": "usr-ai-rev",
    "user_type": "ai_agent",
    "display_name": "AI Revenue Manager",
    "role_id": "role-rev",
    "role_name": "Revenue Manager",
    "department_id": "dep-rev",
    "department_name": "Revenue Management",
}
AGENT_GOVERNANCE = {
    "agent_user_id": "usr-ai-rev",
    "org_id": "org-1",
    "role_id": "revenue-manager",
    "skills": ["pricing"],
    "autonomy": "suggest",
    "confidence_threshold": 0.7,
    "paused": False,
    "org_paused": False,
    "changed_at": NOW,
    "changed_by": "usr-owner",
}
RUN = {
    "run_id": "run-1",
    "org_id": "org-1",
    "workflow_key": "dynamic-pricing",
    "workflow_version": 3,
    "step": "analyse",
}
TASK = {"task_id": "task-1", "org_id": "org-1", "workflow_run_id": "run-1", "workflow_step": "analyse"}

# What a producer of each payload model sends, in JSON form.
EXAMPLES: dict[type[Payload], dict[str, Any]] = {
    tasks.TaskRequested: {
        "request_id": "req-1",
        "org_id": "org-1",
        "title": "Analyse prices",
        "task_type": "analysis",
        "role_id": "role-rev",
        "workflow_run_id": "run-1",
        "workflow_step": "analyse",
        "requested_by": "workflow-service",
    },
    tasks.TaskCreated: {
        "task_id": "task-1",
        "org_id": "org-1",
        "title": "Analyse prices",
        "task_type": "analysis",
        "status": "pending",
        "priority": "high",
        "created_by": "workflow-service",
        "request_id": "req-1",
    },
    tasks.TaskAssigned: {
        **TASK,
        "task_type": "analysis",
        "title": "Analyse prices",
        "assigned_to": "usr-ai-rev",
        "assignee_type": "ai_agent",
        "role_id": "role-rev",
        "rule": "role:role-rev -> only member",
    },
    tasks.TaskStarted: {**TASK, "started_by": "usr-ai-rev"},
    tasks.TaskCompleted: {
        **TASK,
        "task_type": "decision",
        "completed_by": "usr-owner",
        "outcome": "approved",
        "changes": {"lst-1": {"2025-07-01": "140"}},
    },
    tasks.TaskFailed: {**TASK, "reason": "market data unavailable"},
    tasks.TaskBlocked: {**TASK, "reason": "waiting for owner input"},
    tasks.TaskUnblocked: {**TASK, "blocker_ids": ["t-0"], "released_by": "t-0", "unblocked_by": "u-1"},
    tasks.TaskCancelled: {**TASK, "reason": "reservation cancelled", "cancelled_by": "automation"},
    tasks.TaskRescheduled: {**TASK, "due_at": "2025-04-05T10:00:00Z"},
    tasks.TaskCancelRequested: {"request_id": "req-1", "org_id": "org-1", "reason": "reservation cancelled",
                                "requested_by": "automation-a1"},
    tasks.TaskRescheduleRequested: {"request_id": "req-1", "org_id": "org-1",
                                    "due_at": "2025-04-05T10:00:00Z", "requested_by": "automation-a1"},
    tasks.TaskReassignRequested: {"request_id": "run-1:decision:1", "org_id": "org-1", "role_id": "owner",
                                  "reason": "not decided within P1D: escalated to role owner",
                                  "requested_by": "workflow-service"},
    workflows.WorkflowRunRequested: {
        "request_id": "req-2",
        "org_id": "org-1",
        "workflow_key": "dynamic-pricing",
        "parameters": {"threshold": 0.1},
        "requested_by": "aut-weekly",
    },
    workflows.WorkflowRunStarted: {**RUN, "status": "running", "request_id": "req-2"},
    workflows.WorkflowRunWaiting: {**RUN, "waiting_for": "timer", "wake_at": NOW},
    workflows.WorkflowRunCompleted: {**RUN, "result": {"revenue": "1200.00"}},
    workflows.WorkflowRunFailed: {**RUN, "reason": "price update refused", "compensated": True},
    workflows.WorkflowRunCancelled: {**RUN, "cancelled_by": "usr-owner"},
    automations.AutomationTriggered: {
        "automation_id": "aut-weekly",
        "execution_id": "exe-1",
        "org_id": "org-1",
        "automation_type": "scheduled",
        "triggered_at": NOW,
        "scheduled_for": NOW,
    },
    automations.AutomationExecuted: {
        "automation_id": "aut-weekly",
        "execution_id": "exe-1",
        "org_id": "org-1",
        "outcome": "failure",
        "duration_ms": 42,
        "error": "workflow unknown",
    },
    automations.ActionFinished: {
        "org_id": "org-1",
        "task_id": "tsk-1",
        "action": "publish_prices",
        "outcome": "failure",
        "error": "listing lst-1 refused the price",
    },
    automations.SyncRequested: {
        "org_id": "org-1",
        "request_id": "req-3",
        "platform": "airbnb",
        "listing_ids": ["lst-1"],
        "requested_by": "automation-service",
    },
    automations.PricingApproved: {
        "org_id": "org-1",
        "request_id": "req-4",
        "platform": "airbnb",
        "listing_ids": ["lst-1"],
        "prices": [{"listing_id": "lst-1", "date": "2025-07-01", "price": "140.00", "currency": "EUR"}],
        "approved_by": "rule:max_change_10pct",
        "workflow_run_id": "run-1",
    },
    agents.AgentResultProduced: {
        "agent_user_id": "usr-ai-rev",
        "org_id": "org-1",
        "task_id": "task-1",
        "skill": "dynamic_pricing",
        "summary": "Raise weekend prices by 8 %",
        "confidence": 0.82,
        "result": {"recommendations": []},
    },
    agents.AgentPaused: {**AGENT_GOVERNANCE, "paused": True, "switch": "agent"},
    agents.AgentResumed: {**AGENT_GOVERNANCE, "switch": "org"},
    agents.AgentUpdated: {**AGENT_GOVERNANCE, "changed_by": None},
    org.MemberJoined: {**MEMBER, "joined_at": NOW},
    org.MemberUpdated: {**MEMBER, "updated_at": NOW},
    org.MemberLeft: {"org_id": "org-1", "user_id": "usr-1", "left_at": NOW},
    org.OrgPolicyUpdated: {
        "org_id": "org-1",
        "ai_agents_may_decide": False,
        "pricing": {"approval_threshold_pct": 10, "max_change_pct": 30, "floor": "20.00"},
        "listings": {"lst-1": {"currency": "EUR", "ceiling": "900.00"}},
        "updated_at": NOW,
    },
    sync.ListingSynced: {
        "listing_id": "lst-1",
        "org_id": "org-1",
        "title": "Loft by the sea",
        "city": "Lisbon",
        "capacity": 4,
        "base_price": "120.00",
        "min_price": "90.00",
        "max_price": "250.00",
        "currency": "EUR",
        "synced_at": NOW,
    },
    sync.ReservationCreated: RESERVATION,
    sync.ReservationChanged: {**RESERVATION, "guests": 3},
    sync.ReservationCancelled: {**RESERVATION, "status": "cancelled", "cancelled_at": NOW},
    sync.ReviewCreated: {
        "review_id": "rev-1",
        "listing_id": "lst-1",
        "org_id": "org-1",
        "rating": 2,
        "text": "Noisy",
        "submitted_at": NOW,
    },
    sync.MessageReceived: {
        "message_id": "msg-1",
        "thread_id": "thr-1",
        "listing_id": "lst-1",
        "org_id": "org-1",
        "reservation_id": "res-1",
        "text": "What is the wifi password?",
        "received_at": NOW,
    },
    sync.PriceUpdated: {
        "request_id": "req-4",
        "listing_id": "lst-1",
        "org_id": "org-1",
        "prices": [{"date": "2025-07-01", "price": "140.00", "currency": "EUR"}],
        "applied_at": NOW,
    },
    sync.PriceUpdateFailed: {
        "request_id": "req-4",
        "listing_id": "lst-1",
        "org_id": "org-1",
        "reason": "price below the platform minimum",
    },
    sync.SyncCompleted: {
        "request_id": "req-3",
        "org_id": "org-1",
        "listing_ids": ["lst-1"],
        "counts": {"listings": 1, "reservations": 5},
        "completed_at": NOW,
    },
    sync.SyncFailed: {
        "request_id": "req-3",
        "org_id": "org-1",
        "listing_ids": [],
        "reason": "platform rate limit",
    },
    sync.MarketRatesSynced: {
        "org_id": "org-1",
        "listing_id": "lst-1",
        "currency": "EUR",
        "rates": [{"date": "2025-07-01", "median_price": "131.50", "occupancy": 0.74, "sample_size": 38}],
        "synced_at": NOW,
    },
}


def entries() -> list[EventType]:
    return list(CATALOG.values())


def test_every_catalog_topic_is_a_declared_topic() -> None:
    declared = {topic.name for topic in TOPICS}
    assert {entry.topic for entry in entries()} <= declared


def test_every_declared_topic_and_dead_letter_topic_is_provisioned() -> None:
    names = [topic.name for topic in all_topics()]
    assert len(names) == len(set(names))
    assert {f"{group}.dlq" for group in CONSUMER_GROUPS} <= set(names)
    assert {f"{group}.replay" for group in CONSUMER_GROUPS} <= set(names)
    assert all(topic.partitions >= 1 for topic in all_topics())


def test_event_types_follow_the_naming_rule() -> None:
    for entry in entries():
        prefix = entry.type.split(".")[0]
        assert prefix in {"stayops", "org", "airbnb", "hostaway"}, entry.type
        assert entry.type == entry.type.lower()
        assert entry.dataschema == f"urn:stayops:schema:{entry.type}:v{entry.version}"


def test_every_payload_model_has_an_example_here() -> None:
    assert {entry.model for entry in entries()} == set(EXAMPLES)


@pytest.mark.parametrize("entry", entries(), ids=lambda entry: entry.type)
def test_every_event_type_travels_from_payload_to_kafka_and_back(entry: EventType) -> None:
    payload = entry.model.model_validate(EXAMPLES[entry.model])
    envelope = entry.envelope(
        payload,
        id="evt-1",
        source="/test",
        partitionkey="key-1",
        time=datetime(2025, 6, 1, tzinfo=UTC),
        correlationid="run-1",
    )
    assert envelope.orgid == "org-1"
    assert envelope.dataschema == entry.dataschema

    record = to_kafka(envelope)
    parsed = parse_payload(from_kafka(record.key, record.value, record.headers))

    assert parsed == payload


@pytest.mark.parametrize("entry", entries(), ids=lambda entry: entry.type)
def test_every_payload_names_its_tenant(entry: EventType) -> None:
    assert entry.model.model_fields["org_id"].is_required()


def test_hostaway_events_share_the_airbnb_payloads_on_their_own_topic() -> None:
    hostaway = sync_event_type("hostaway", "reservation.created")
    airbnb = sync_event_type("airbnb", "reservation.created")
    assert hostaway.type == "hostaway.reservation.created"
    assert hostaway.topic == "sync.hostaway"
    assert airbnb.topic == "sync.airbnb"
    assert hostaway.model is airbnb.model
    with pytest.raises(UnknownEventType):
        sync_event_type("booking", "reservation.created")


def an_envelope(type_: str, data: dict[str, Any], dataschema: str | None = None) -> Envelope:
    return Envelope(
        id="evt-1",
        type=type_,
        source="/test",
        orgid="org-1",
        partitionkey="task-1",
        data=data,
        dataschema=dataschema,
    )


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(UnknownEventType, match=r"stayops\.task\.exploded"):
        parse_payload(an_envelope("stayops.task.exploded", {}))
    with pytest.raises(UnknownEventType):
        event_type("stayops.task.exploded")


@pytest.mark.parametrize(
    "changes",
    [
        {"task_type": "chore"},  # not a task type
        {"title": ""},  # required field empty
        {"assignee": "usr-1"},  # a typo'd field is refused, not ignored
        {"created_by": None},
    ],
    ids=["bad-enum", "empty-title", "unknown-field", "null-required"],
)
def test_a_payload_that_does_not_match_its_model_is_refused(changes: dict[str, Any]) -> None:
    data = {**EXAMPLES[TaskCreated], **changes}
    with pytest.raises(InvalidPayload, match=r"stayops\.task\.created"):
        parse_payload(an_envelope("stayops.task.created", data))


def test_a_payload_of_another_schema_version_is_refused() -> None:
    data = EXAMPLES[TaskCreated]
    with pytest.raises(InvalidPayload, match="v2"):
        parse_payload(
            an_envelope("stayops.task.created", data, dataschema="urn:stayops:schema:stayops.task.created:v2")
        )


def test_only_a_decision_completes_with_an_outcome() -> None:
    decision = EXAMPLES[TaskCompleted]
    with pytest.raises(InvalidPayload, match="outcome"):
        parse_payload(an_envelope("stayops.task.completed", {**decision, "outcome": None}))
    with pytest.raises(InvalidPayload, match="outcome"):
        parse_payload(an_envelope("stayops.task.completed", {**decision, "task_type": "analysis"}))


def test_approved_prices_are_exact_and_belong_to_the_listed_listings() -> None:
    approved = PricingApproved.model_validate(EXAMPLES[PricingApproved])
    assert approved.prices[0].price == Decimal("140.00")
    assert approved.model_dump(mode="json")["prices"][0]["price"] == "140.00"

    stray = {**EXAMPLES[PricingApproved], "listing_ids": ["lst-2"]}
    with pytest.raises(InvalidPayload, match="lst-1"):
        parse_payload(an_envelope("stayops.pricing.approved", stray))


def test_an_envelope_is_built_only_from_its_own_payload_model() -> None:
    payload = TaskCreated.model_validate(EXAMPLES[TaskCreated])
    with pytest.raises(TypeError, match="TaskCompleted"):
        event_type("stayops.task.completed").envelope(
            payload, id="evt-1", source="/test", partitionkey="task-1", time=datetime(2025, 6, 1, tzinfo=UTC)
        )
