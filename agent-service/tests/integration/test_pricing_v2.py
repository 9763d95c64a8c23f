"""Pricing v2 through agent-service's public entries, on real PostgreSQL and Apache
Kafka: the what-if preview leaves no trace, each weekly run keeps its own forecast
for its review, and the scorecard shows realised against forecast."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from agent_service import store
from agent_service.app import NAME, create_app
from agent_service.preview import PREVIEW_EXAMPLE
from stayops_kit.testing import ServiceUnderTest, eventually, service_under_test
from stayops_schemas.events.org import MemberJoined, UserType
from stayops_schemas.events.sync import (
    ListingSynced,
    MarketRate,
    MarketRatesSynced,
    ReservationCreated,
    ReservationStatus,
)
from stayops_schemas.events.tasks import TaskAssigned, TaskType

pytestmark = pytest.mark.stack

NOW = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(create_app, NAME, stack) as running:
        yield running


async def row_counts(service: ServiceUnderTest) -> dict[str, int]:
    async with service.runtime.engine.connect() as conn:
        tables = (await conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        ))).scalars().all()
        return {t: (await conn.execute(sa.text(f'SELECT count(*) FROM "{t}"'))).scalar_one() for t in tables}


async def test_a_preview_answers_prices_and_minimum_stays_and_changes_nothing(service: ServiceUnderTest) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    before = await row_counts(service)

    response = await service.client.post("/v1/pricing/preview", json=PREVIEW_EXAMPLE, headers=service.auth(org))

    assert response.status_code == 200, response.text
    body = response.json()
    nights = {n["date"]: n for n in body["nights"]}
    assert body["currency"] == "EUR" and body["today"] == "2025-06-02"
    assert set(nights) == {f"2025-06-0{d}" for d in (2, 3, 4, 5, 9)} | {"2025-06-13", "2025-06-14", "2025-06-15"}
    orphan = nights["2025-06-09"]  # one open night between two bookings
    assert orphan["min_stay"] == 1
    assert next(f for f in orphan["factors"] if f["name"] == "orphan_gap")["effect_pct"] < 0
    assert all(Decimal("80.00") <= Decimal(n["recommended_price"]) <= Decimal("260.00") for n in nights.values())
    assert await row_counts(service) == before  # no task, no activity, no forecast, no outbox row


async def test_the_preview_is_documented_in_openapi_with_an_example(service: ServiceUnderTest) -> None:
    spec = (await service.client.get("/openapi.json")).json()

    operation = spec["paths"]["/v1/pricing/preview"]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert examples["lisbon"]["value"] == PREVIEW_EXAMPLE
    assert "no forecast" in operation["description"]


async def test_a_preview_with_a_bad_rule_or_time_zone_is_a_422_saying_why(service: ServiceUnderTest) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    bad_rule = {**PREVIEW_EXAMPLE, "rules": {"surge_pricing": {"pct": 50}}}
    bad_zone = {**PREVIEW_EXAMPLE, "today": None,
                "listing": {**PREVIEW_EXAMPLE["listing"], "timezone": "Mars/Olympus"}}

    for body, says in ((bad_rule, "unknown pricing rule"), (bad_zone, "unknown time zone")):
        response = await service.client.post("/v1/pricing/preview", json=body, headers=service.auth(org))
        assert response.status_code == 422, response.text
        assert says in response.text
    assert (await service.client.post("/v1/pricing/preview", json=PREVIEW_EXAMPLE)).status_code == 401


def assigned(org: str, task_id: str, run_id: str, data: dict[str, Any]) -> TaskAssigned:
    return TaskAssigned(task_id=task_id, org_id=org, task_type=TaskType.ANALYSIS, title="Weekly pricing",
                        data=data, assigned_to="u-ai-rm", assignee_type=UserType.AI_AGENT, role_id="revenue-manager",
                        rule="role:revenue-manager -> fewest open tasks", workflow_run_id=run_id,
                        workflow_step="analysis")


async def test_two_weekly_runs_keep_their_own_forecasts_and_the_scorecard_scores_them(
    service: ServiceUnderTest,
) -> None:
    org, listing_id = f"org-{uuid.uuid4().hex[:8]}", f"l-{uuid.uuid4().hex[:8]}"
    now = service.runtime.clock.now()
    first_run_at, second_run_at = now - timedelta(days=14), now - timedelta(days=7)
    await service.publish("org.member.joined", MemberJoined(
        org_id=org, user_id="u-ai-rm", user_type=UserType.AI_AGENT, display_name="AI RM", role_id="revenue-manager",
        role_name="Revenue Manager", joined_at=NOW), key=org)
    await service.publish("airbnb.listing.synced", ListingSynced(
        listing_id=listing_id, org_id=org, title="Alfama loft", city="Lisbon", capacity=4,
        base_price=Decimal("120.00"), min_price=Decimal("60.00"), max_price=Decimal("250.00"), currency="EUR",
        synced_at=NOW, timezone="Europe/Lisbon", min_stay=2), key=listing_id)
    await service.publish("airbnb.market.rates.synced", MarketRatesSynced(
        org_id=org, listing_id=listing_id, currency="EUR", synced_at=NOW,
        rates=[MarketRate(date=first_run_at.date() + timedelta(days=i), median_price=Decimal("120.00"),
                          occupancy=0.3, sample_size=40) for i in range(14)]), key=listing_id)

    async def ready() -> bool:
        async with service.runtime.engine.connect() as conn:
            return (await store.get_profile(conn, org, "u-ai-rm") is not None
                    and await store.listings_synced(conn, org, [listing_id]))

    await eventually(ready, timeout=20, what="the agent and the synced listing")
    runs = {"first": f"run-{uuid.uuid4().hex[:6]}", "second": f"run-{uuid.uuid4().hex[:6]}"}
    for name, at in (("first", first_run_at), ("second", second_run_at)):
        await service.publish("stayops.task.assigned", assigned(
            org, f"t-{name}-{runs[name]}", runs[name], {"skill": "pricing", "listing_ids": [listing_id],
                                                        "horizon_days": 7}), key=org, time=at)

    async def both_forecasts() -> list[Any] | None:
        async with service.runtime.engine.connect() as conn:
            rows = (await conn.execute(sa.select(store.forecast_nights.c.run_id, sa.func.count())
                                       .where(store.forecast_nights.c.org_id == org)
                                       .group_by(store.forecast_nights.c.run_id))).all()
        return rows if len(rows) == 2 else None

    counts = dict(await eventually(both_forecasts, timeout=30, what="two runs' forecasts"))
    assert counts == {runs["first"]: 7, runs["second"]: 7}
    # Guests booked two nights of the first week, after the first run priced them.
    booked_on = first_run_at + timedelta(days=1)
    await service.publish("airbnb.reservation.created", ReservationCreated(
        reservation_id=f"r-{uuid.uuid4().hex[:6]}", listing_id=listing_id, org_id=org,
        status=ReservationStatus.CONFIRMED, check_in=first_run_at.date() + timedelta(days=3),
        check_out=first_run_at.date() + timedelta(days=5), guests=2, nightly_rate=Decimal("100.00"),
        total=Decimal("200.00"), currency="EUR", booked_at=booked_on), key=listing_id)

    async def scorecard() -> dict[str, Any] | None:
        response = await service.client.get("/v1/agents/u-ai-rm/scorecard", headers=service.auth(org))
        assert response.status_code == 200, response.text
        card: dict[str, Any] = response.json()
        return card if card["windows"][0]["nights_sold"] == 2 else None

    card = await eventually(scorecard, timeout=20, what="the scorecard with the booked nights")
    four, twelve = card["windows"]
    assert (four["weeks"], twelve["weeks"]) == (4, 12)
    assert four["decisions"] == 14 and four["picked_up"] == 2
    assert Decimal(four["realised_revenue"]) == Decimal("200.00")
    assert Decimal(four["forecast_revenue"]) > 0
    assert four["realised_occupancy"] == round(2 / 14, 3)
    other = await service.client.get("/v1/agents/u-ai-rm/scorecard", headers=service.auth(f"org-{uuid.uuid4().hex}"))
    assert other.status_code == 404

    # The first run's review reads the first run's forecast, though a later run priced since.
    async with service.runtime.engine.connect() as conn:
        first = await store.changed_nights(conn, org, [listing_id], run_id=runs["first"])
    assert {n.task_id for n in first} == {f"t-first-{runs['first']}"} and len(first) == 7
