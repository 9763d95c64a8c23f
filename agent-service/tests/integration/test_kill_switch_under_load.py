"""The kill switch under load, with task-service running beside agent-service on
the same PostgreSQL and Apache Kafka (in one process: the pricing, CPU-bound, holds
up the other service's requests meanwhile): an agent working through a queue of
pricing tasks is paused mid-way; nothing it proposes after the pause is applied, and every
task it had not finished goes to the role's person, its queued work dropped."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from agent_service import store, work
from agent_service.app import NAME, create_app
from stayops_kit.db import outbox
from stayops_kit.testing import ServiceUnderTest, eventually, service_under_test
from stayops_schemas.events.org import MemberJoined, UserType
from stayops_schemas.events.sync import ListingSynced, MarketRate, MarketRatesSynced
from task_service import app as task_app
from task_service import store as task_store

pytestmark = pytest.mark.stack

EARLY = datetime(2025, 1, 1, tzinfo=UTC)
ROLE = "revenue-manager"
TASKS = 40
LISTINGS = 3
PAUSE_AFTER = 10  # results, then the owner pulls the switch


@pytest.fixture(scope="module")
async def services(stack: Any) -> AsyncIterator[tuple[ServiceUnderTest, ServiceUnderTest]]:
    async with contextlib.AsyncExitStack() as running:
        agents = await running.enter_async_context(service_under_test(create_app, NAME, stack))
        tasks = await running.enter_async_context(service_under_test(task_app.create_app, task_app.NAME, stack))
        yield agents, tasks


async def join(agents: ServiceUnderTest, tasks: ServiceUnderTest, org: str, user_id: str, user_type: UserType,
               joined_at: datetime) -> None:
    await agents.publish("org.member.joined", MemberJoined(
        org_id=org, user_id=user_id, user_type=user_type, display_name=user_id, role_id=ROLE,
        role_name="Revenue Manager", joined_at=joined_at), key=org)

    async def in_directory() -> bool:
        async with tasks.runtime.engine.connect() as conn:
            return user_id in {m["user_id"] for m in await task_store.list_members(conn, org)}

    await eventually(in_directory, timeout=30, what=f"{user_id} in task-service's directory")


async def sync_listings(agents: ServiceUnderTest, org: str, listing_ids: list[str]) -> None:
    today = agents.runtime.clock.now().date()
    for listing_id in listing_ids:
        await agents.publish("airbnb.listing.synced", ListingSynced(
            listing_id=listing_id, org_id=org, title="Loft", city="Lisbon", capacity=2,
            base_price=Decimal("120.00"), currency="EUR", synced_at=EARLY), key=listing_id)
        await agents.publish("airbnb.market.rates.synced", MarketRatesSynced(
            org_id=org, listing_id=listing_id, currency="EUR", synced_at=agents.runtime.clock.now(),
            rates=[MarketRate(date=today + timedelta(days=i), median_price=Decimal("130.00"),
                              occupancy=0.6, sample_size=30) for i in range(90)]), key=listing_id)

    async def synced() -> bool:
        async with agents.runtime.engine.connect() as conn:
            return await store.listings_synced(conn, org, listing_ids)

    await eventually(synced, timeout=30, what="the listings' sync data in agent-service")


async def results(agents: ServiceUnderTest, org: str) -> set[str]:
    """The tasks agent-service has proposed a result for (its outbox keeps every one)."""
    async with agents.runtime.engine.connect() as conn:
        rows = await conn.execute(sa.select(outbox.c.payload).where(
            outbox.c.org_id == org, outbox.c.event_type == "stayops.agent.result.produced"))
        return {row.payload["task_id"] for row in rows}


async def pending_work(agents: ServiceUnderTest, org: str) -> int:
    async with agents.runtime.engine.connect() as conn:
        return len(await store.held_work(conn, org))


async def test_an_agent_paused_mid_queue_proposes_nothing_more_and_its_unfinished_tasks_go_to_a_person(
    services: tuple[ServiceUnderTest, ServiceUnderTest],
) -> None:
    agents, tasks = services
    org = f"org-{uuid.uuid4().hex[:8]}"
    await join(agents, tasks, org, "ai-rm", UserType.AI_AGENT, EARLY)

    async def announced() -> bool:
        async with tasks.runtime.engine.connect() as conn:
            return "ai-rm" in await task_store.standings_of(conn, org, ["ai-rm"])

    await eventually(announced, timeout=30, what="the agent's profile announced to task-service")
    await join(agents, tasks, org, "rita", UserType.HUMAN, EARLY + timedelta(days=1))
    listing_ids = [f"l-{i}-{uuid.uuid4().hex[:6]}" for i in range(LISTINGS)]
    owner = tasks.auth(org)
    created = []
    for i in range(TASKS):
        response = await tasks.client.post("/v1/tasks", headers=owner, json={
            "title": f"Price the week {i}", "task_type": "analysis", "role_id": ROLE, "assigned_to": "ai-rm",
            "data": {"skill": "pricing", "listing_ids": listing_ids, "horizon_days": 90}})
        assert response.status_code == 201, response.text
        created.append(response.json())
    assert {t["assigned_to"] for t in created} == {"ai-rm"}

    async def all_queued() -> bool:
        return await pending_work(agents, org) == TASKS

    await eventually(all_queued, timeout=30, what="the agent's queue, waiting for the listings' sync")
    await sync_listings(agents, org, listing_ids)  # the agent starts on its queue

    async def working() -> bool:
        return len(await results(agents, org)) >= PAUSE_AFTER

    await eventually(working, timeout=40, interval=0.01, what=f"the agent's first {PAUSE_AFTER} results")
    started = time.perf_counter()
    paused = await agents.client.post("/v1/agents/ai-rm/pause", headers=agents.auth(org))
    pause_s = time.perf_counter() - started
    assert paused.status_code == 200, paused.text
    before_pause = await results(agents, org)

    async def handed_back() -> bool:
        listed = (await tasks.client.get("/v1/tasks", params={"assignee": "ai-rm", "limit": 200},
                                         headers=owner)).json()["items"]
        return not [t for t in listed if t["status"] in ("pending", "in_progress", "blocked")]

    await eventually(handed_back, timeout=30, what="no open task left with the paused agent")
    handed_s = time.perf_counter() - started

    async def dropped() -> bool:
        return await pending_work(agents, org) == 0

    await eventually(dropped, timeout=30, what="the paused agent's queued work dropped")
    await work.perform_ready_work(agents.runtime)  # one more pass of the work loop while paused
    assert await results(agents, org) == before_pause, "nothing proposed after the pause was applied"

    final = {t["id"]: (await tasks.client.get(f"/v1/tasks/{t['id']}", headers=owner)).json() for t in created}
    done = {i for i, t in final.items() if t["status"] == "completed"}
    with_rita = {i for i, t in final.items() if t["assigned_to"] == "rita" and t["status"] == "pending"}
    assert done | with_rita == set(final), "each task is done by the agent or waits with the role's person"
    assert all(final[i]["completed_by"] == "ai-rm" for i in done) and done <= before_pause
    assert 0 < len(before_pause) < TASKS and with_rita, "paused mid-way"
    async with agents.runtime.engine.connect() as conn:
        log = await store.activity_of(conn, org, "ai-rm", limit=200)
    dropped_tasks = {a.task_id for a in log if a.kind == "work.dropped"}
    assert dropped_tasks == with_rita - before_pause, "the work queued for each task handed on is dropped"
    inbox = (await tasks.client.get("/v1/inbox", params={"limit": 200},
                                    headers=tasks.auth(org, "rita", ROLE))).json()["items"]
    assert {t["id"] for t in inbox} == with_rita
    priced = sorted(a.at for a in log if a.task_id in before_pause and a.kind != "work.dropped")
    per_task_ms = (priced[-1] - priced[0]).total_seconds() * 1000 / max(len(priced) - 1, 1)
    print(f"\nkill switch under load: {len(before_pause)}/{TASKS} priced before the pause (~{per_task_ms:.0f} ms "
          f"a task); pause answered in {pause_s * 1000:.0f} ms; {len(with_rita)} tasks with the role's person "
          f"{handed_s:.2f} s after pausing; {len(dropped_tasks)} queued tasks dropped")
