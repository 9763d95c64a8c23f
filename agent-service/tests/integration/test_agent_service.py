"""agent-service through its public entries, on real PostgreSQL and Apache Kafka:
authentication, AI agents getting their profile when they join (once, and only AI
agents), org isolation of profiles and activity, and the synced read model kept as
the latest event says."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from agent_service import store
from agent_service.app import NAME, create_app
from agent_service.domain import Listing, Reservation
from stayops_kit.runtime import ServiceRuntime
from stayops_kit.settings import ServiceSettings
from stayops_kit.testing import eventually
from stayops_schemas.binding import to_kafka
from stayops_schemas.catalog import event_type
from stayops_schemas.events.base import Payload
from stayops_schemas.events.org import MemberJoined, UserType
from stayops_schemas.events.sync import (
    ListingSynced,
    ReservationCancelled,
    ReservationCreated,
    ReservationStatus,
)

pytestmark = pytest.mark.stack

NOW = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class RunningService:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    producer: AIOKafkaProducer
    stack: Any

    def auth(self, org: str, user: str = "u-owner", role: str = "owner") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stack.mint_token(org, user, role)}"}

    async def publish(self, type_: str, payload: Payload, *, key: str) -> None:
        entry = event_type(type_)
        envelope = entry.envelope(payload, id=str(uuid.uuid4()), source="/tests",
                                  partitionkey=key, time=self.runtime.clock.now())
        record = to_kafka(envelope)
        await self.producer.send_and_wait(entry.topic, value=record.value, key=record.key,
                                          headers=record.headers)


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[RunningService]:
    database_url = await stack.create_database(f"agent_{uuid.uuid4().hex[:10]}")
    settings = ServiceSettings(
        service_name=NAME,
        database_url=database_url,
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        jwt_public_key_file=stack.jwt_public_key_file,
        relay_poll_interval_s=0.2,
        log_json=False,
    )
    app = create_app(settings=settings)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
        ):
            yield RunningService(client, app.state.runtime, producer, stack)
    finally:
        await producer.stop()


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
