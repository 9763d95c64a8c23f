"""agent-service through its public entries, on real PostgreSQL and Apache Kafka:
authentication, AI agents getting their profile when they join (once, and only AI
agents), org isolation of profiles and activity, the synced read model kept as
the latest event says, and an agent working on the analysis tasks assigned to it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer

from agent_service import store
from agent_service.app import NAME, create_app
from agent_service.domain import Listing, Reservation
from stayops_kit.testing import ServiceUnderTest, decoded, eventually, service_under_test
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.org import MemberJoined, UserType
from stayops_schemas.events.sync import (
    ListingSynced,
    MarketRate,
    MarketRatesSynced,
    NightlyPrice,
    PriceUpdated,
    ReservationCancelled,
    ReservationCreated,
    ReservationStatus,
)
from stayops_schemas.events.tasks import TaskAssigned, TaskType
from stayops_schemas.results import check_result

pytestmark = pytest.mark.stack

NOW = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)


RunningService = ServiceUnderTest


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[RunningService]:
    async with service_under_test(create_app, NAME, stack) as running:
        yield running


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


def joined(org: str, user: str, user_type: UserType, role: str = "revenue-manager") -> MemberJoined:
    return MemberJoined(org_id=org, user_id=user, user_type=user_type, display_name=f"{user} name",
                        role_id=role, role_name="Revenue Manager", joined_at=NOW)


async def test_routes_need_a_token(service: RunningService) -> None:
    response = await service.client.get("/v1/agents")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_an_ai_agent_that_joins_gets_one_profile_seen_only_in_its_org(service: RunningService) -> None:
    mine, theirs = new_org(), new_org()
    key = f"dir-{uuid.uuid4().hex[:8]}"  # one key: one partition, so the events stay in order
    await service.publish("org.member.joined", joined(mine, "u-ai-rm", UserType.AI_AGENT), key=key)
    await service.publish("org.member.joined", joined(mine, "u-ai-rm", UserType.AI_AGENT), key=key)
    await service.publish("org.member.joined", joined(mine, "u-human-rm", UserType.HUMAN), key=key)
    await service.publish("org.member.joined", joined(theirs, "u-ai-other", UserType.AI_AGENT), key=key)
    await service.publish("org.member.joined",
                          joined(mine, "u-ai-host", UserType.AI_AGENT, role="guest-communication"), key=key)

    async def my_agents() -> list[dict[str, Any]] | None:
        response = await service.client.get("/v1/agents", headers=service.auth(mine))
        items: list[dict[str, Any]] = response.json()["items"]
        return items if "u-ai-host" in {a["user_id"] for a in items} else None

    listed = await eventually(my_agents, timeout=20, what="the agents' profiles")
    assert listed is not None
    agents = {a["user_id"]: a for a in listed}
    assert set(agents) == {"u-ai-rm", "u-ai-host"}
    assert agents["u-ai-rm"]["skills"] == ["pricing", "performance-review"]
    assert (agents["u-ai-rm"]["autonomy"], Decimal(agents["u-ai-rm"]["confidence_threshold"])) == (
        "suggest", Decimal("0.7"))
    assert agents["u-ai-host"]["skills"] == []

    activity = await service.client.get("/v1/agents/u-ai-rm/activity", headers=service.auth(mine))
    assert activity.status_code == 200
    assert [a["kind"] for a in activity.json()["items"]] == ["profile.created"]
    other = await service.client.get("/v1/agents/u-ai-other/activity", headers=service.auth(mine))
    human = await service.client.get("/v1/agents/u-human-rm/activity", headers=service.auth(mine))
    for response in (other, human):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")


def listing(org: str, listing_id: str, base: str, synced_at: datetime) -> ListingSynced:
    return ListingSynced(listing_id=listing_id, org_id=org, title="Alfama loft", city="Lisbon",
                         capacity=4, base_price=Decimal(base), min_price=Decimal("80.00"),
                         max_price=Decimal("250.00"), currency="EUR", synced_at=synced_at)


async def test_the_read_model_keeps_the_latest_listing_and_reservation(service: RunningService) -> None:
    org = new_org()
    listing_id, reservation_id = f"l-{uuid.uuid4().hex[:8]}", f"r-{uuid.uuid4().hex[:8]}"
    booking = {"reservation_id": reservation_id, "listing_id": listing_id, "org_id": org,
               "check_in": date(2025, 4, 10), "check_out": date(2025, 4, 13), "guests": 2,
               "nightly_rate": Decimal("129.50"), "total": Decimal("388.50"), "currency": "EUR",
               "booked_at": NOW}
    await service.publish("airbnb.listing.synced", listing(org, listing_id, "120.00", NOW), key=listing_id)
    # A sync older than the one already applied arrives late: it must not win.
    await service.publish("airbnb.listing.synced",
                          listing(org, listing_id, "99.00", NOW - timedelta(hours=1)), key=listing_id)
    await service.publish("airbnb.reservation.created",
                          ReservationCreated(**booking, status=ReservationStatus.CONFIRMED), key=listing_id)
    await service.publish("airbnb.reservation.cancelled", ReservationCancelled(
        **booking, status=ReservationStatus.CANCELLED, cancelled_at=NOW + timedelta(days=1)), key=listing_id)

    async def cancelled() -> Reservation | None:
        async with service.runtime.engine.connect() as conn:
            found = await store.get_reservation(conn, org, reservation_id)
        return found if found and found.status == "cancelled" else None

    reservation = await eventually(cancelled, timeout=20, what="the cancelled reservation")
    assert reservation is not None
    assert (reservation.nightly_rate, reservation.total, reservation.platform) == (
        Decimal("129.50"), Decimal("388.50"), "airbnb")
    async with service.runtime.engine.connect() as conn:
        stored: Listing | None = await store.get_listing(conn, org, listing_id)
        elsewhere = await store.get_reservation(conn, new_org(), reservation_id)
    assert stored is not None
    assert (stored.base_price, stored.synced_at) == (Decimal("120.00"), NOW)
    assert elsewhere is None


def assigned(org: str, task_id: str, assignee: str, user_type: UserType, data: dict[str, Any]) -> TaskAssigned:
    return TaskAssigned(task_id=task_id, org_id=org, task_type=TaskType.ANALYSIS, title="Price next month",
                        data=data, assigned_to=assignee, assignee_type=user_type, role_id="revenue-manager",
                        rule="role:revenue-manager -> fewest open tasks", workflow_run_id="run-1",
                        workflow_step="analysis")


async def test_an_agent_prices_the_listings_of_a_task_assigned_to_it_and_only_those(
    service: RunningService,
) -> None:
    org, listing_id = new_org(), f"l-{uuid.uuid4().hex[:8]}"
    today = service.runtime.clock.now().date()
    tasks = {name: f"t-{name}-{uuid.uuid4().hex[:6]}" for name in ("pricing", "someone-else", "unknown",
                                                                    "by-reference")}
    await service.publish("org.member.joined", joined(org, "u-ai-rm", UserType.AI_AGENT), key=org)
    await service.publish("airbnb.listing.synced", listing(org, listing_id, "120.00", NOW), key=listing_id)
    await service.publish("airbnb.market.rates.synced", MarketRatesSynced(
        org_id=org, listing_id=listing_id, currency="EUR", synced_at=NOW,
        rates=[MarketRate(date=today + timedelta(days=i), median_price=Decimal("120.00"), occupancy=0.6,
                          sample_size=40) for i in range(30)]), key=listing_id)
    await service.publish("airbnb.price.updated", PriceUpdated(
        request_id="t-publish", listing_id=listing_id, org_id=org, applied_at=NOW,
        prices=[NightlyPrice(date=today + timedelta(days=1), price=Decimal("150.00"), currency="EUR")]),
        key=listing_id)

    async def read_model_ready() -> bool:
        async with service.runtime.engine.connect() as conn:
            agent = await store.get_profile(conn, org, "u-ai-rm")
            prices = await store.nightly_prices_of(conn, org, listing_id, first=today, last=today + timedelta(days=2))
            market = await store.market_of(conn, org, [f"listing:{listing_id}"], first=today, last=today)
        return agent is not None and bool(prices) and bool(market)

    # The directory, sync and task topics are not ordered with one another.
    await eventually(read_model_ready, timeout=20, what="the agent and the synced listing")
    consumer = AIOKafkaConsumer("stayops.agents", bootstrap_servers=service.stack.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    results: dict[str, Envelope] = {}
    try:
        # One key: one partition, in order — the task of another user is handled first.
        await service.publish("stayops.task.assigned", assigned(
            org, tasks["someone-else"], "u-human-rm", UserType.HUMAN, {"skill": "pricing"}), key=org)
        await service.publish("stayops.task.assigned", assigned(
            org, tasks["unknown"], "u-ai-rm", UserType.AI_AGENT, {"skill": "astrology"}), key=org)
        await service.publish("stayops.task.assigned", assigned(
            org, tasks["pricing"], "u-ai-rm", UserType.AI_AGENT,
            {"skill": "pricing", "listing_ids": [listing_id], "horizon_days": 30}), key=org)
        await service.publish("stayops.task.assigned", assigned(
            org, tasks["by-reference"], "u-ai-rm", UserType.AI_AGENT,
            {"skill": "pricing", "listing_ids": [listing_id], "horizon_days": 30, "by_reference": True}), key=org)

        async def both_results() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            for record in (r for part in batch.values() for r in part):
                event = decoded(record)
                if event is None:
                    continue
                if event.orgid == org and event.type == "stayops.agent.result.produced":
                    results[event.data["task_id"]] = event
            return all(tasks[name] in results for name in ("pricing", "unknown", "by-reference"))

        await eventually(both_results, timeout=30, what="the agent's results on stayops.agents")
    finally:
        await consumer.stop()

    assert tasks["someone-else"] not in results
    priced = results[tasks["pricing"]].data
    assert (priced["agent_user_id"], priced["skill"], priced["workflow_run_id"]) == ("u-ai-rm", "pricing", "run-1")
    recommendations = priced["result"]["recommendations"]
    assert len(recommendations) == 30
    assert {r["listing_id"] for r in recommendations} == {listing_id}
    tomorrow = next(r for r in recommendations if r["date"] == (today + timedelta(days=1)).isoformat())
    assert tomorrow["current_price"] == "150.00"  # the price the platform last applied
    assert all(Decimal("80.00") <= Decimal(r["recommended_price"]) <= Decimal("250.00") for r in recommendations)
    assert priced["result"]["currency"] == "EUR"
    assert priced["confidence"] == priced["result"]["min_confidence"]
    unknown = results[tasks["unknown"]].data
    assert (unknown["agent_user_id"], unknown["confidence"]) == ("u-ai-rm", 0.0)
    assert "astrology" in unknown["summary"]

    response = await service.client.get("/v1/agents/u-ai-rm/activity", headers=service.auth(org))
    decisions = {a["task_id"]: a for a in response.json()["items"] if a["task_id"]}
    assert set(decisions) == {tasks["pricing"], tasks["unknown"], tasks["by-reference"]}
    # Asked for by reference, a small result is stored too: the event carries the ref and summary.
    by_reference = results[tasks["by-reference"]].data["result"]
    assert "recommendations" not in by_reference and by_reference["nights"] == 30
    assert by_reference["result_ref"]["service"] == "agent-service"
    decision = decisions[tasks["pricing"]]
    assert decision["kind"] == "skill.pricing"
    assert decision["inputs"]["listings"][0]["listing_id"] == listing_id
    assert decision["inputs"]["listings"][0]["nights_with_market_rate"] == 30
    assert "base price" in decision["explanation"]
    assert decision["confidence"] == priced["confidence"]


async def test_a_review_of_repriced_nights_that_earned_less_alerts_the_owner(service: RunningService) -> None:
    org, listing_id = new_org(), f"l-{uuid.uuid4().hex[:8]}"
    now = service.runtime.clock.now()
    priced_at = now - timedelta(days=10)
    pricing_task, review_task = f"t-pricing-{uuid.uuid4().hex[:6]}", f"t-review-{uuid.uuid4().hex[:6]}"
    await service.publish("org.member.joined", joined(org, "u-ai-rm", UserType.AI_AGENT), key=org)
    await service.publish("airbnb.listing.synced", listing(org, listing_id, "120.00", NOW), key=listing_id)
    await service.publish("airbnb.market.rates.synced", MarketRatesSynced(
        org_id=org, listing_id=listing_id, currency="EUR", synced_at=NOW,
        rates=[MarketRate(date=priced_at.date() + timedelta(days=i), median_price=Decimal("120.00"),
                          occupancy=0.6, sample_size=40) for i in range(7)]), key=listing_id)

    async def read_model_ready() -> bool:
        async with service.runtime.engine.connect() as conn:
            agent = await store.get_profile(conn, org, "u-ai-rm")
            market = await store.market_of(conn, org, [f"listing:{listing_id}"], first=priced_at.date(),
                                           last=priced_at.date())
        return agent is not None and bool(market)

    await eventually(read_model_ready, timeout=20, what="the agent and the synced listing")
    consumer = AIOKafkaConsumer("stayops.agents", "stayops.tasks", bootstrap_servers=service.stack.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    seen: dict[tuple[str, str], Envelope] = {}
    try:
        # Priced ten days ago for a week; nobody booked those nights since.
        await service.publish("stayops.task.assigned", assigned(
            org, pricing_task, "u-ai-rm", UserType.AI_AGENT,
            {"skill": "pricing", "listing_ids": [listing_id], "horizon_days": 7}), key=org, time=priced_at)
        await service.publish("stayops.task.assigned", assigned(
            org, review_task, "u-ai-rm", UserType.AI_AGENT,
            {"skill": "performance-review", "listing_ids": [listing_id]}), key=org)

        async def review_and_alert() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            for record in (r for part in batch.values() for r in part):
                event = decoded(record)
                if event is None:
                    continue
                if event.orgid == org:
                    seen[(event.type, event.data.get("task_id") or event.data.get("request_id"))] = event
            return (("stayops.agent.result.produced", review_task) in seen
                    and ("stayops.task.requested", f"{review_task}:alert") in seen)

        await eventually(review_and_alert, timeout=30, what="the review's result and the owner's alert")
    finally:
        await consumer.stop()

    review = seen[("stayops.agent.result.produced", review_task)].data
    assert review["skill"] == "performance-review"
    assert review["result"]["booked_revenue"] == "0.00"
    assert Decimal(review["result"]["forecast_revenue"]) > 0
    assert (review["result"]["shortfall_pct"], review["result"]["fell_short"]) == (100.0, True)
    check_result("performance-review", review["result"])  # what task-service will accept
    alert = seen[("stayops.task.requested", f"{review_task}:alert")].data
    assert (alert["task_type"], alert["priority"], alert["role_id"]) == ("manual", "high", "owner")
    assert alert["requested_by"] == "u-ai-rm"


async def test_a_pricing_task_that_arrives_before_its_sync_data_waits_for_it(service: RunningService) -> None:
    org, listing_id = new_org(), f"l-{uuid.uuid4().hex[:8]}"
    today = service.runtime.clock.now().date()
    task_id = f"t-early-{uuid.uuid4().hex[:6]}"
    await service.publish("org.member.joined", joined(org, "u-ai-rm", UserType.AI_AGENT), key=org)

    async def agent_known() -> bool:
        async with service.runtime.engine.connect() as conn:
            return await store.get_profile(conn, org, "u-ai-rm") is not None

    await eventually(agent_known, timeout=20, what="the agent's profile")
    await service.publish("stayops.task.assigned", assigned(
        org, task_id, "u-ai-rm", UserType.AI_AGENT, {"skill": "pricing", "listing_ids": [listing_id],
                                                     "horizon_days": 14}), key=org)

    async def queued() -> bool:
        async with service.runtime.engine.connect() as conn:
            rows = (await conn.execute(sa.select(store.agent_work).where(
                store.agent_work.c.org_id == org, store.agent_work.c.task_id == task_id))).all()
        return bool(rows) and rows[0].done_at is None

    await eventually(queued, timeout=20, what="the task waiting for its listing's data")
    # The sync's data comes after the assignment (another topic, no order between them).
    await service.publish("airbnb.listing.synced", listing(org, listing_id, "120.00", NOW), key=listing_id)
    await service.publish("airbnb.market.rates.synced", MarketRatesSynced(
        org_id=org, listing_id=listing_id, currency="EUR", synced_at=NOW,
        rates=[MarketRate(date=today + timedelta(days=i), median_price=Decimal("120.00"), occupancy=0.6,
                          sample_size=40) for i in range(14)]), key=listing_id)

    async def priced() -> list[Any]:
        async with service.runtime.engine.connect() as conn:
            activity = await store.activity_of(conn, org, "u-ai-rm", limit=10)
        return [a for a in activity if a.task_id == task_id]

    [decision] = await eventually(priced, timeout=20, what="the pricing decision once the data arrived")
    assert decision.summary.startswith("priced"), decision.summary
