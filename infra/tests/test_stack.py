"""The embedded stack as the other packages' tests use it: PostgreSQL, Apache Kafka, topics."""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from stayops_infra.orgsim import OrgRegistry, PolicyChange, seed_solo, set_policy
from stayops_infra.testing import TestStack
from stayops_infra.topics import provision_topics, topic_partitions
from stayops_schemas.binding import from_kafka, to_kafka
from stayops_schemas.catalog import ORG_DIRECTORY, TASKS, all_topics
from stayops_schemas.envelope import Envelope
from stayops_schemas.errors import MalformedEvent


def _envelope(org_id: str, key: str) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()),
        type="stayops.test.pinged",
        source="urn:stayops:infra-tests",
        orgid=org_id,
        partitionkey=key,
        data={"note": "hello"},
        time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        correlationid="corr-1",
    )


async def _publish(bootstrap: str, topic: str, envelope: Envelope) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        record = to_kafka(envelope)
        await producer.send_and_wait(topic, record.value, key=record.key, headers=record.headers)
    finally:
        await producer.stop()


async def _read_org_events(
    bootstrap: str, topic: str, org_id: str, wanted: int, timeout_s: float = 30
) -> list[Envelope]:
    """The org's events on `topic` from the start, once `wanted` arrived or at the deadline."""
    # No group: every partition is assigned and read from the earliest offset.
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        found: list[Envelope] = []
        deadline = time.monotonic() + timeout_s
        while len(found) < wanted and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    # The session's topics also hold other tests' records, malformed ones included.
                    with contextlib.suppress(MalformedEvent):
                        event = from_kafka(record.key, record.value, list(record.headers))
                        if event.orgid == org_id:
                            found.append(event)
        return found
    finally:
        await consumer.stop()


async def test_postgres_serves_a_created_database(stack: TestStack) -> None:
    url = await stack.create_database("infra_probe")
    assert url == stack.database_url("infra_probe")

    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            name = await connection.scalar(text("SELECT current_database()"))
            max_connections = await connection.scalar(text("SHOW max_connections"))
    finally:
        await engine.dispose()

    assert name == "infra_probe"
    assert int(max_connections) >= 200


async def test_catalog_topics_exist_with_their_partition_counts(stack: TestStack) -> None:
    await provision_topics(stack.kafka_bootstrap)  # a second provisioning is harmless

    counts = await topic_partitions(stack.kafka_bootstrap)

    for topic in all_topics():
        assert counts.get(topic.name) == topic.partitions, topic.name


async def test_an_event_round_trips_over_the_binding(stack: TestStack) -> None:
    org_id = str(uuid.uuid4())
    sent = _envelope(org_id, key=str(uuid.uuid4()))

    await _publish(stack.kafka_bootstrap, TASKS, sent)
    received = await _read_org_events(stack.kafka_bootstrap, TASKS, org_id, 1)

    assert received == [sent]


async def test_seeded_members_are_announced_on_the_directory(stack: TestStack, tmp_path: Path) -> None:
    registry = OrgRegistry(tmp_path / "orgs.json")

    seeded = await seed_solo(stack.kafka_bootstrap, stack.keys, registry)

    org_id = seeded.org.org_id
    events = await _read_org_events(stack.kafka_bootstrap, ORG_DIRECTORY, org_id, 3)
    members = [e for e in events if e.type == "org.member.joined"]
    assert sorted(e.data["role_id"] for e in members) == ["owner", "revenue-manager"]
    assert [e.type for e in events if e not in members] == ["org.policy.updated"]
    assert registry.get(org_id).listing_ids == seeded.org.listing_ids
    summary = seeded.as_json()
    assert set(summary["tokens"]) == {"owner", "revenue_manager_agent"}
    assert summary["users"]["revenue_manager_agent"]["user_type"] == "ai_agent"


async def test_events_survive_a_broker_restart(stack: TestStack) -> None:
    org_id = str(uuid.uuid4())
    sent = _envelope(org_id, key="restart")
    await _publish(stack.kafka_bootstrap, TASKS, sent)

    await stack.stop_kafka()
    await stack.start_kafka()

    received = await _read_org_events(stack.kafka_bootstrap, TASKS, org_id, 1)
    assert received == [sent]


async def test_a_policy_change_is_kept_and_announced_whole(stack: TestStack, tmp_path: Path) -> None:
    registry = OrgRegistry(tmp_path / "orgs.json")
    seeded = await seed_solo(stack.kafka_bootstrap, stack.keys, registry)
    org_id, listing = seeded.org.org_id, seeded.org.listing_ids[0]

    await set_policy(stack.kafka_bootstrap, registry, org_id, PolicyChange(max_change_pct=20, floor=Decimal("40")))
    await set_policy(stack.kafka_bootstrap, registry, org_id,
                     PolicyChange(listing=listing, currency="USD", ceiling=Decimal("300.00"),
                                  ai_agents_may_decide=True))

    events = await _read_org_events(stack.kafka_bootstrap, ORG_DIRECTORY, org_id, 5)
    latest = [e for e in events if e.type == "org.policy.updated"][-1]
    assert latest.source == "urn:stayops:org-service"
    assert latest.data["pricing"] == {"max_change_pct": 20.0, "floor": "40", "approval_threshold_pct": None,
                                      "ceiling": None, "currency": None}
    assert latest.data["listings"][listing]["currency"] == "USD"
    assert latest.data["ai_agents_may_decide"] is True
    assert registry.get(org_id).policy["pricing"] == {"max_change_pct": 20.0, "floor": "40"}
