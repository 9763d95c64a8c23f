"""The public API of `stayops_schemas` is what services import: changing it is a
decision, not an accident."""

import stayops_schemas

PUBLIC_API = {
    # the CloudEvents envelope and its Kafka binding
    "CONTENT_TYPE",
    "Envelope",
    "KafkaRecord",
    "from_kafka",
    "to_kafka",
    # the catalog and its topics
    "CATALOG",
    "EventType",
    "event_type",
    "parse_payload",
    "sync_event_type",
    "Topic",
    "TOPICS",
    "CONSUMER_GROUPS",
    "SYNC_TOPICS",
    "all_topics",
    "dead_letter_topic",
    "TASKS",
    "WORKFLOWS",
    "AUTOMATIONS",
    "AGENTS",
    "ORG_DIRECTORY",
    "SYNC_AIRBNB",
    "SYNC_HOSTAWAY",
    "export_schemas",
    # errors
    "SchemaError",
    "MalformedEvent",
    "UnknownEventType",
    "InvalidPayload",
    # payloads
    "Payload",
    "TaskType",
    "TaskStatus",
    "Priority",
    "DecisionOutcome",
    "TaskRequested",
    "TaskCreated",
    "TaskAssigned",
    "TaskStarted",
    "TaskCompleted",
    "TaskFailed",
    "TaskBlocked",
    "TaskUnblocked",
    "RunStatus",
    "WaitKind",
    "WorkflowRunRequested",
    "WorkflowRunStarted",
    "WorkflowRunWaiting",
    "WorkflowRunCompleted",
    "WorkflowRunFailed",
    "WorkflowRunCancelled",
    "AutomationType",
    "ExecutionOutcome",
    "PriceChange",
    "AutomationTriggered",
    "ActionFinished",
    "AutomationExecuted",
    "SyncRequested",
    "PricingApproved",
    "AgentResultProduced",
    "UserType",
    "MemberJoined",
    "MemberUpdated",
    "MemberLeft",
    "OrgPolicyUpdated",
    "PriceGuardrails",
    "Platform",
    "ReservationStatus",
    "NightlyPrice",
    "SyncCounts",
    "MarketRate",
    "ListingSynced",
    "ReservationCreated",
    "ReservationChanged",
    "ReservationCancelled",
    "ReviewCreated",
    "MessageReceived",
    "PriceUpdated",
    "PriceUpdateFailed",
    "SyncCompleted",
    "SyncFailed",
    "MarketRatesSynced",
}


def test_the_public_api_is_pinned() -> None:
    assert set(stayops_schemas.__all__) == PUBLIC_API
    assert len(stayops_schemas.__all__) == len(PUBLIC_API), "a name is exported twice"


def test_every_public_name_is_importable() -> None:
    for name in stayops_schemas.__all__:
        assert getattr(stayops_schemas, name) is not None, name


def test_nothing_public_is_left_out_of_all() -> None:
    public = {
        name
        for name, value in vars(stayops_schemas).items()
        if not name.startswith("_") and not isinstance(value, type(stayops_schemas))
    }
    assert public == set(stayops_schemas.__all__)
