"""Schedule policies on real PostgreSQL and Apache Kafka: a time whose previous run
has not ended is skipped, or buffered once until it ends; a time missed longer ago
than the catch-up window is skipped and recorded; parameters are resolved when the
schedule fires; a pinned workflow version is asked for. And conditional automations:
a condition over occupancy checked on a schedule, fired once per false -> true."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from automation_service import store
from automation_service.app import NAME, create_app
from stayops_kit.testing import ServiceUnderTest, announced, eventually, service_under_test
from stayops_schemas.events.sync import (
    ListingSynced,
    ReservationCancelled,
    ReservationCreated,
    ReservationStatus,
)
from stayops_schemas.events.workflows import WorkflowRunCompleted, WorkflowRunStarted

pytestmark = pytest.mark.stack

T0 = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)
NEVER_BY_ITSELF = "0 0 1 1 *"  # January 1st: the tests make it due by hand


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(create_app, NAME, stack) as running:
        yield running


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


async def schedule(service: ServiceUnderTest, org: str, **extra: Any) -> str:
    action = {"type": "start_workflow", "workflow_key": "dynamic-pricing", "parameters": {"threshold_pct": 10},
              **extra.pop("action", {})}
    response = await service.client.post("/v1/automations", headers=service.auth(org), json={
        "name": "Weekly price optimisation", "kind": "scheduled", "cron": NEVER_BY_ITSELF,
        "timezone": "Europe/Lisbon", "action": action, **extra})
    assert response.status_code == 201, response.text
    automation_id: str = response.json()["id"]
    return automation_id


async def due(service: ServiceUnderTest, automation_id: str, ago: dt.timedelta = dt.timedelta(seconds=1)) -> None:
    """Make the schedule due `ago` (a time it has not fired yet) and wake the schedulers."""
    async with service.runtime.uow.begin() as uow:
        await uow.conn.execute(sa.update(store.automations).where(store.automations.c.id == automation_id)
                               .values(next_fire_at=sa.func.now() - ago))
        await store.wake_schedulers(uow.conn)


async def executions(service: ServiceUnderTest, org: str, automation_id: str, count: int) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]]:
        response = await service.client.get(f"/v1/automations/{automation_id}/executions",
                                            headers=service.auth(org))
        items: list[dict[str, Any]] = response.json()["items"]
        return sorted(items, key=lambda e: e["started_at"]) if len(items) >= count else []

    return await eventually(found, what=f"{count} execution(s)")


async def requested_runs(service: ServiceUnderTest, org: str) -> list[dict[str, Any]]:
    return await announced(service.runtime.engine, org, "stayops.workflow.run.requested")


async def run_started(service: ServiceUnderTest, org: str, request_id: str, run_id: str) -> None:
    await service.publish("stayops.workflow.run.started", WorkflowRunStarted(
        run_id=run_id, org_id=org, workflow_key="dynamic-pricing", workflow_version=1, request_id=request_id),
        key=run_id)


async def run_completed(service: ServiceUnderTest, org: str, run_id: str) -> None:
    await service.publish("stayops.workflow.run.completed", WorkflowRunCompleted(
        run_id=run_id, org_id=org, workflow_key="dynamic-pricing", workflow_version=1), key=run_id)


async def wait_run_status(service: ServiceUnderTest, org: str, automation_id: str, index: int, status: str,
                          count: int) -> None:
    async def reached() -> bool:
        return (await executions(service, org, automation_id, count))[index]["run_status"] == status

    await eventually(reached, what=f"execution {index} run {status}")


async def test_skip_a_time_whose_previous_run_has_not_ended_then_fire_once_it_has(
    service: ServiceUnderTest,
) -> None:
    org = new_org()
    automation = await schedule(service, org)
    await due(service, automation)
    [first] = await executions(service, org, automation, 1)
    await run_started(service, org, first["id"], "run-1")
    await wait_run_status(service, org, automation, 0, "running", 1)

    await due(service, automation)
    second = (await executions(service, org, automation, 2))[1]
    assert [o["outcome"] for o in second["action_outcomes"]] == ["skipped"]
    assert "has not ended" in second["action_outcomes"][0]["detail"]

    await run_completed(service, org, "run-1")
    await wait_run_status(service, org, automation, 0, "completed", 2)
    await due(service, automation)
    third = (await executions(service, org, automation, 3))[2]
    assert [o["outcome"] for o in third["action_outcomes"]] == ["requested"]
    assert [r["request_id"] for r in await requested_runs(service, org)] == [first["id"], third["id"]]


async def test_buffer_one_fires_the_buffered_time_when_the_previous_run_ends(service: ServiceUnderTest) -> None:
    org = new_org()
    automation = await schedule(service, org, overlap="buffer_one")
    await due(service, automation)
    [first] = await executions(service, org, automation, 1)
    await run_started(service, org, first["id"], "run-b1")
    await wait_run_status(service, org, automation, 0, "running", 1)
    await due(service, automation)
    await wait_run_status(service, org, automation, 1, "buffered", 2)
    await due(service, automation)  # a third time while one is buffered: skipped
    third = (await executions(service, org, automation, 3))[2]
    assert [o["outcome"] for o in third["action_outcomes"]] == ["skipped"]
    assert len(await requested_runs(service, org)) == 1

    await run_completed(service, org, "run-b1")
    await wait_run_status(service, org, automation, 1, "requested", 3)
    buffered = (await executions(service, org, automation, 3))[1]
    assert [r["request_id"] for r in await requested_runs(service, org)] == [first["id"], buffered["id"]]
    assert buffered["outcome"] is None  # it waits for the run it asked for


async def test_a_time_missed_beyond_the_catch_up_window_is_skipped_and_recorded(service: ServiceUnderTest) -> None:
    org = new_org()
    automation = await schedule(service, org, catch_up_s=600)
    await due(service, automation, ago=dt.timedelta(hours=2))
    [missed] = await executions(service, org, automation, 1)
    assert missed["outcome"] == "success"
    assert "catch-up window" in missed["action_outcomes"][0]["detail"]
    assert await requested_runs(service, org) == []
    await due(service, automation, ago=dt.timedelta(minutes=5))
    await executions(service, org, automation, 2)
    assert len(await requested_runs(service, org)) == 1


async def test_a_run_no_workflow_ever_started_fails_its_execution_after_a_day(service: ServiceUnderTest) -> None:
    org = new_org()
    automation = await schedule(service, org)
    await due(service, automation)
    [fired] = await executions(service, org, automation, 1)
    assert fired["outcome"] is None  # waiting for a run.started that will never come

    async with service.runtime.uow.begin() as uow:  # as if asked for two days ago
        await uow.conn.execute(sa.update(store.execution_runs).where(
            store.execution_runs.c.execution_id == fired["id"]).values(
            requested_at=sa.func.now() - sa.text("interval '2 days'")))
        await store.wake_schedulers(uow.conn)

    async def failed() -> dict[str, Any] | None:
        [execution] = await executions(service, org, automation, 1)
        return execution if execution["outcome"] is not None else None

    execution = await eventually(failed, what="the unanswered request to fail its execution")
    assert execution["outcome"] == "failure" and "no run started for the request" in execution["error"]
    assert execution["action_outcomes"][0]["outcome"] == "failed"


async def test_parameters_are_resolved_when_it_fires_and_a_pinned_version_is_asked_for(
    service: ServiceUnderTest,
) -> None:
    org = new_org()
    automation = await schedule(service, org, overlap="allow", action={
        "workflow_version": 2, "parameters": {"listing_ids": "${org.active_listings}"}})

    async def listing(listing_id: str) -> None:
        await service.publish("airbnb.listing.synced", ListingSynced(
            listing_id=listing_id, org_id=org, title="Loft", city="Lisbon", capacity=2,
            base_price=Decimal("100"), currency="EUR", synced_at=T0), key=listing_id)

    await listing("l-1")
    await eventually(lambda: _listings(service, org, 1), what="listing l-1 known")
    await due(service, automation)
    await executions(service, org, automation, 1)
    await listing("l-2")
    await eventually(lambda: _listings(service, org, 2), what="listing l-2 known")
    await due(service, automation)
    await executions(service, org, automation, 2)

    runs = await requested_runs(service, org)
    assert [r["parameters"]["listing_ids"] for r in runs] == [["l-1"], ["l-1", "l-2"]]
    assert {r["workflow_version"] for r in runs} == {2}


async def _listings(service: ServiceUnderTest, org: str, count: int) -> bool:
    async with service.runtime.engine.connect() as conn:
        return len(await store.active_listing_ids(conn, org)) >= count


async def test_a_condition_over_occupancy_fires_once_per_transition_from_false_to_true(
    service: ServiceUnderTest,
) -> None:
    org = new_org()
    response = await service.client.post("/v1/automations", headers=service.auth(org), json={
        "name": "Low occupancy ahead", "kind": "conditional", "timezone": "UTC",
        "condition": {"expression": "occupancy < 0.5", "window_days": 14, "every_s": 1},
        "actions": [{"type": "notify", "user_id": "u-owner",
                     "subject": "Occupancy of the next ${data.window_days} nights: ${data.booked_nights} booked"}]})
    assert response.status_code == 201, response.text
    automation_id = response.json()["id"]
    await service.publish("airbnb.listing.synced", ListingSynced(
        listing_id="l-1", org_id=org, title="Loft", city="Lisbon", capacity=2, base_price=Decimal("100"),
        currency="EUR", synced_at=T0), key="l-1")

    async def held() -> bool | None:
        async with service.runtime.engine.connect() as conn:
            found = await store.get_automation(conn, org, automation_id)
        return None if found is None else found.condition_held

    async def notified(count: int) -> list[str]:
        response = await service.client.get("/v1/notifications", headers=service.auth(org))
        subjects = [n["subject"] for n in response.json()["items"]]
        return subjects if len(subjects) >= count else []

    await eventually(lambda: notified(1), what="fired when first true")
    today = dt.datetime.now(dt.UTC).date()
    booked = ReservationCreated(
        reservation_id="r-1", listing_id="l-1", org_id=org, status=ReservationStatus.CONFIRMED, check_in=today,
        check_out=today + dt.timedelta(days=10), guests=2, nightly_rate=Decimal("100"), total=Decimal("1000"),
        currency="EUR", booked_at=T0)
    await service.publish("airbnb.reservation.created", booked, key="l-1")
    await eventually(lambda: _is(held, False), what="10 of 14 nights booked: the condition no longer holds")
    assert len(await notified(1)) == 1, "true while checked again and again, it fired once"

    await service.publish("airbnb.reservation.cancelled", ReservationCancelled(
        **booked.model_dump(exclude={"status"}), status=ReservationStatus.CANCELLED, cancelled_at=T0), key="l-1")
    subjects = await eventually(lambda: notified(2), what="fired again on the next false -> true")
    assert "0 booked" in subjects[0]
    [execution, *_] = (await service.client.get(f"/v1/automations/{automation_id}/executions",
                                                headers=service.auth(org))).json()["items"]
    assert (execution["trigger"], execution["event_type"], execution["outcome"]) == (
        "condition", "condition.held", "success")


async def _is(read: Any, value: object) -> bool:
    return bool(await read() is value)
