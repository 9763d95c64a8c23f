"""Agents an owner governs, through agent-service's public entries on real
PostgreSQL and Apache Kafka: PATCH needs agents.manage, the kill switch holds an
agent's work under load until it resumes, every change is announced, a failure fails
the task with its reason, and a pricing task waits for its own run's sync data."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer

from agent_service import store, work
from agent_service.app import NAME, create_app
from stayops_kit.db import outbox
from stayops_kit.testing import ServiceUnderTest, decoded, eventually, service_under_test
from stayops_schemas.events.org import MemberJoined, UserType
from stayops_schemas.events.sync import ListingSynced, MarketRate, MarketRatesSynced
from stayops_schemas.events.tasks import TaskAssigned, TaskType

pytestmark = pytest.mark.stack

NOW = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(create_app, NAME, stack) as running:
        yield running


async def org_with_agent(service: ServiceUnderTest) -> str:
    org = f"org-{uuid.uuid4().hex[:8]}"
    await service.publish("org.member.joined", MemberJoined(
        org_id=org, user_id="u-ai-rm", user_type=UserType.AI_AGENT, display_name="AI RM", role_id="revenue-manager",
        role_name="Revenue Manager", joined_at=NOW), key=org)

    async def profile() -> bool:
        async with service.runtime.engine.connect() as conn:
            return await store.get_profile(conn, org, "u-ai-rm") is not None

    await eventually(profile, timeout=20, what="the agent's profile")
    return org


def assigned(org: str, task_id: str, skill: str) -> TaskAssigned:
    return TaskAssigned(task_id=task_id, org_id=org, task_type=TaskType.ANALYSIS, title="Review",
                        data={"skill": skill, "listing_ids": []}, assigned_to="u-ai-rm",
                        assignee_type=UserType.AI_AGENT, role_id="revenue-manager", rule="role", workflow_run_id=None)


async def test_an_owner_tunes_an_agent_and_nobody_else_may(service: ServiceUnderTest) -> None:
    org = await org_with_agent(service)
    change = {"autonomy": "act_within_limits", "confidence_threshold": "0.85", "skills": ["pricing"]}

    refused = await service.client.patch("/v1/agents/u-ai-rm", json=change,
                                         headers=service.auth(org, "u-ops", "operations"))
    response = await service.client.patch("/v1/agents/u-ai-rm", json=change, headers=service.auth(org))
    unknown = await service.client.patch("/v1/agents/u-ai-rm", json={"skills": ["astrology"]},
                                         headers=service.auth(org))

    assert refused.status_code == 403
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["autonomy"], body["confidence_threshold"], body["skills"]) == ("act_within_limits", "0.85",
                                                                                ["pricing"])
    assert unknown.status_code == 422 and "astrology" in unknown.text
    log = (await service.client.get("/v1/agents/u-ai-rm/activity", headers=service.auth(org))).json()["items"]
    assert log[0]["kind"] == "profile.updated" and "u-owner" in log[0]["summary"]


async def pending(service: ServiceUnderTest, org: str) -> int:
    async with service.runtime.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(store.agent_work).where(
            store.agent_work.c.org_id == org, store.agent_work.c.done_at.is_(None)))).scalar_one())


@pytest.mark.parametrize("switch", ["agent", "org"])
async def test_the_kill_switch_holds_all_the_agents_work_until_it_resumes(service: ServiceUnderTest,
                                                                          switch: str) -> None:
    org = await org_with_agent(service)
    path = "/v1/agents/u-ai-rm" if switch == "agent" else "/v1/org/agents"
    paused = await service.client.post(f"{path}/pause", headers=service.auth(org))
    assert paused.status_code == 200, paused.text
    tasks = [f"t-{i}-{uuid.uuid4().hex[:6]}" for i in range(30)]
    for task_id in tasks:
        await service.publish("stayops.task.assigned", assigned(org, task_id, "performance-review"), key=org)

    async def all_queued() -> bool:
        return await pending(service, org) == len(tasks)

    await eventually(all_queued, timeout=30, what="the 30 assignments queued")
    await work.perform_ready_work(service.runtime)  # a pass of the work loop while paused
    assert await pending(service, org) == len(tasks)
    async with service.runtime.engine.connect() as conn:
        assert not [a for a in await store.activity_of(conn, org, "u-ai-rm", limit=100) if a.task_id in tasks]

    resumed = await service.client.post(f"{path}/resume", headers=service.auth(org))
    assert resumed.status_code == 200

    async def all_done() -> bool:
        return await pending(service, org) == 0

    await eventually(all_done, timeout=60, what="the held work done after resuming")


async def test_a_task_the_agent_cannot_do_fails_with_the_reason(service: ServiceUnderTest) -> None:
    org = await org_with_agent(service)
    task_id = f"t-astrology-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer("stayops.agents", bootstrap_servers=service.stack.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        await service.publish("stayops.task.assigned", assigned(org, task_id, "astrology"), key=org)

        async def result() -> dict[str, Any] | None:
            batch = await consumer.getmany(timeout_ms=200)
            for record in (r for part in batch.values() for r in part):
                event = decoded(record)
                if event is not None and event.data.get("task_id") == task_id:
                    return event.data
            return None

        produced = await eventually(result, timeout=30, what="the agent's answer")
    finally:
        await consumer.stop()

    assert produced["failed"] is True
    assert "astrology" in produced["error"]


async def test_a_pricing_task_waits_for_its_own_runs_sync_not_an_earlier_one(service: ServiceUnderTest) -> None:
    org, listing_id = await org_with_agent(service), f"l-{uuid.uuid4().hex[:8]}"
    today = service.runtime.clock.now().date()

    def rates(occupancy: float) -> MarketRatesSynced:
        now = service.runtime.clock.now()
        return MarketRatesSynced(org_id=org, listing_id=listing_id, currency="EUR", synced_at=now,
                                 rates=[MarketRate(date=today + timedelta(days=i), median_price=Decimal("120.00"),
                                                   occupancy=occupancy, sample_size=40) for i in range(7)])

    await service.publish("airbnb.listing.synced", ListingSynced(
        listing_id=listing_id, org_id=org, title="Loft", city="Lisbon", capacity=2, base_price=Decimal("120.00"),
        currency="EUR", synced_at=NOW), key=listing_id, correlation_id="run-last-week")
    await service.publish("airbnb.market.rates.synced", rates(0.2), key=listing_id, correlation_id="run-last-week")

    async def last_weeks_data() -> bool:
        async with service.runtime.engine.connect() as conn:
            return await store.listings_synced(conn, org, [listing_id], "run-last-week")

    await eventually(last_weeks_data, timeout=20, what="last week's sync data")
    task_id = f"t-pricing-{uuid.uuid4().hex[:6]}"
    task = assigned(org, task_id, "pricing").model_copy(update={"data": {"skill": "pricing",
                                                                         "listing_ids": [listing_id]}})
    await service.publish("stayops.task.assigned", task, key=org, correlation_id="run-this-week")

    async def queued() -> bool:
        return await pending(service, org) == 1

    await eventually(queued, timeout=20, what="the pricing task queued")
    await work.perform_ready_work(service.runtime)
    assert await pending(service, org) == 1  # last week's data is not this run's

    await service.publish("airbnb.market.rates.synced", rates(0.7), key=listing_id, correlation_id="run-this-week")

    async def done() -> bool:
        return await pending(service, org) == 0

    await eventually(done, timeout=20, what="the pricing once this run's data arrived")


async def announced(service: ServiceUnderTest, org: str) -> list[tuple[str, dict[str, Any]]]:
    """The governance events agent-service announced for the org, in order."""
    async with service.runtime.engine.connect() as conn:
        rows = await conn.execute(sa.select(outbox.c.event_type, outbox.c.payload, outbox.c.partition_key).where(
            outbox.c.org_id == org, outbox.c.event_type.in_(
                ["stayops.agent.updated", "stayops.agent.paused", "stayops.agent.resumed"])).order_by(outbox.c.id))
        return [(row.event_type, row.payload) for row in rows if row.partition_key == row.payload["agent_user_id"]]


async def test_every_governance_change_is_announced_with_where_the_agent_stands(service: ServiceUnderTest) -> None:
    org = await org_with_agent(service)
    await service.publish("org.member.joined", MemberJoined(
        org_id=org, user_id="u-ai-2", user_type=UserType.AI_AGENT, display_name="AI 2", role_id="revenue-manager",
        role_name="Revenue Manager", joined_at=NOW), key=org)

    async def both_joined() -> bool:
        return len(await announced(service, org)) == 2

    await eventually(both_joined, timeout=20, what="both agents' profiles announced")
    owner = service.auth(org)
    for method, path, body in [
        ("PATCH", "/v1/agents/u-ai-rm", {"autonomy": "off", "skills": ["pricing"]}),
        ("POST", "/v1/agents/u-ai-rm/pause", None),
        ("POST", "/v1/org/agents/pause", None),
        ("POST", "/v1/agents/u-ai-rm/resume", None),
        ("POST", "/v1/org/agents/resume", None),
    ]:
        response = await service.client.request(method, path, json=body, headers=owner)
        assert response.status_code == 200, response.text

    seen = [(type_, p["agent_user_id"], p.get("switch"), p["paused"], p["org_paused"], p["autonomy"], p["skills"])
            for type_, p in await announced(service, org)]
    both = ["pricing", "performance-review"]
    assert seen == [
        ("stayops.agent.updated", "u-ai-rm", None, False, False, "suggest", both),
        ("stayops.agent.updated", "u-ai-2", None, False, False, "suggest", both),
        ("stayops.agent.updated", "u-ai-rm", None, False, False, "off", ["pricing"]),
        ("stayops.agent.paused", "u-ai-rm", "agent", True, False, "off", ["pricing"]),
        ("stayops.agent.paused", "u-ai-rm", "org", True, True, "off", ["pricing"]),
        ("stayops.agent.paused", "u-ai-2", "org", False, True, "suggest", both),
        ("stayops.agent.resumed", "u-ai-rm", "agent", False, True, "off", ["pricing"]),
        ("stayops.agent.resumed", "u-ai-rm", "org", False, False, "off", ["pricing"]),
        ("stayops.agent.resumed", "u-ai-2", "org", False, False, "suggest", both),
    ]
    [first, *_] = await announced(service, org)
    assert first[1]["changed_by"] is None, "a profile made on joining was changed by nobody"
