"""Event automations on real PostgreSQL and Apache Kafka, driven as the owner and
the sync services drive them: created over REST, fired by platform events. What
they asked for is read from the service's outbox."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from automation_service import store
from automation_service.app import NAME, create_app
from automation_service.domain import Execution, ExecutionTrigger
from stayops_kit.testing import ServiceUnderTest, announced, eventually, service_under_test
from stayops_schemas.events.automations import ExecutionOutcome
from stayops_schemas.events.sync import (
    ListingSynced,
    MessageReceived,
    ReservationCancelled,
    ReservationChanged,
    ReservationCreated,
    ReservationStatus,
    ReviewCreated,
)
from stayops_schemas.events.workflows import WorkflowRunCompleted, WorkflowRunFailed, WorkflowRunStarted

pytestmark = pytest.mark.stack

T0 = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)

RESERVATION_TASKS: dict[str, Any] = {
    "name": "Reservation: guest welcome and cleaning",
    "kind": "event",
    "on": "reservation.*",
    "timezone": "Europe/Lisbon",
    "actions": [
        {"type": "create_task", "key": "guest-welcome", "link": "${data.reservation_id}",
         "title": "Welcome the guests of ${data.reservation_id}", "assigned_to": "u-owner",
         "due": {"date": "data.check_in", "at": "15:00", "offset": "PT2H"},
         "when": "type != 'reservation.cancelled'"},
        {"type": "create_task", "key": "cleaning", "link": "${data.reservation_id}",
         "title": "Clean ${listing.title}", "role_id": "operations",
         "due": {"date": "data.check_out", "at": "11:00"}, "when": "type != 'reservation.cancelled'",
         "data": {"reservation_id": "${data.reservation_id}"}},
        {"type": "cancel_tasks", "link": "${data.reservation_id}", "reason": "reservation cancelled",
         "when": "type == 'reservation.cancelled'"},
    ],
}
BAD_REVIEW: dict[str, Any] = {
    "name": "Bad review: alert the owner",
    "kind": "event",
    "on": "review.created",
    "filter": "data.rating <= 3",
    "dedupe_key": "${data.review_id}",
    "actions": [{"type": "create_task", "key": "review-alert", "link": "${data.review_id}",
                 "title": "A ${data.rating}-star review", "priority": "urgent", "assigned_to": "u-owner",
                 "data": {"text": "${data.text}", "reservation_id": "${data.reservation_id}"}}],
}


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(create_app, NAME, stack) as running:
        yield running


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


async def create(service: ServiceUnderTest, org: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await service.client.post("/v1/automations", json=body, headers=service.auth(org))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def executions(service: ServiceUnderTest, org: str, automation_id: str) -> list[dict[str, Any]]:
    response = await service.client.get(f"/v1/automations/{automation_id}/executions",
                                        headers=service.auth(org))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def reservation(org: str, reservation_id: str, check_out: str = "2025-07-10",
                cls: type[ReservationCreated | ReservationChanged] = ReservationCreated) -> Any:
    return cls(reservation_id=reservation_id, listing_id="l-1", org_id=org,
               status=ReservationStatus.CONFIRMED, check_in=dt.date(2025, 7, 6),
               check_out=dt.date.fromisoformat(check_out), guests=2, nightly_rate=Decimal("100.00"),
               total=Decimal("400.00"), currency="EUR", booked_at=T0)


def review(org: str, review_id: str, rating: int) -> ReviewCreated:
    return ReviewCreated(review_id=review_id, listing_id="l-1", org_id=org, reservation_id="r-9",
                         rating=rating, text="Dirty towels", submitted_at=T0)


async def test_a_reservation_asks_for_its_tasks_in_the_listings_zone_moves_and_cancels_them(
    service: ServiceUnderTest,
) -> None:
    org = new_org()
    automation = await create(service, org, RESERVATION_TASKS)
    await service.publish("airbnb.listing.synced", ListingSynced(
        listing_id="l-1", org_id=org, title="Seaside loft", city="New York", capacity=2,
        base_price=Decimal("100"), currency="USD", timezone="America/New_York", synced_at=T0), key="l-1")
    await service.publish("airbnb.reservation.created", reservation(org, "r-1"), key="l-1")

    async def requested() -> list[dict[str, Any]]:
        return await announced(service.runtime.engine, org, "stayops.task.requested")

    tasks = {t["data"]["link_key"]: t for t in await eventually(
        lambda: _at_least(requested, 2), what="both tasks requested")}
    # The listing is in New York (EDT, UTC-4), overriding the org's Lisbon.
    assert tasks["guest-welcome"]["due_at"].startswith("2025-07-06T21:00:00")
    assert tasks["cleaning"]["due_at"].startswith("2025-07-10T15:00:00")
    assert (tasks["cleaning"]["title"], tasks["cleaning"]["role_id"]) == ("Clean Seaside loft", "operations")

    await service.publish("airbnb.reservation.created", reservation(org, "r-1"), key="l-1")  # re-sent
    await service.publish("airbnb.reservation.changed", reservation(org, "r-1", "2025-07-12",
                                                                    ReservationChanged), key="l-1")
    [moved] = await eventually(lambda: announced(service.runtime.engine, org, "stayops.task.reschedule.requested"),
                               what="cleaning moved")
    assert moved["request_id"] == tasks["cleaning"]["request_id"]
    assert moved["due_at"].startswith("2025-07-12T15:00:00")

    changed = reservation(org, "r-1", "2025-07-12")
    await service.publish("airbnb.reservation.cancelled", ReservationCancelled(
        **changed.model_dump(exclude={"status"}), status=ReservationStatus.CANCELLED, cancelled_at=T0), key="l-1")
    cancels = await eventually(lambda: _at_least(
        lambda: announced(service.runtime.engine, org, "stayops.task.cancel.requested"), 2), what="both cancelled")
    assert {c["request_id"] for c in cancels} == {t["request_id"] for t in tasks.values()}
    assert len(await requested()) == 2, "never a second task for the same reservation"

    runs = await eventually(lambda: _at_least(lambda: executions(service, org, automation["id"]), 4),
                            what="four executions")
    by_type = {r["event_type"]: r for r in runs}
    assert by_type["airbnb.reservation.cancelled"]["outcome"] == "success"
    assert [o["outcome"] for o in by_type["airbnb.reservation.cancelled"]["action_outcomes"]] == [
        "skipped", "skipped", "cancelled"]
    assert [o["outcome"] for o in by_type["airbnb.reservation.changed"]["action_outcomes"]] == [
        "unchanged", "rescheduled", "skipped"]


async def _at_least(read: Any, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await read()
    return found if len(found) >= count else []


async def test_a_bad_review_alerts_once_and_a_good_one_not_at_all(service: ServiceUnderTest) -> None:
    org = new_org()
    automation = await create(service, org, BAD_REVIEW)
    await service.publish("airbnb.review.created", review(org, "rv-5", 5), key="l-1")
    await service.publish("airbnb.review.created", review(org, "rv-2", 2), key="l-1")
    await service.publish("airbnb.review.created", review(org, "rv-2", 2), key="l-1")  # the same, re-sent

    [alert] = await eventually(lambda: announced(service.runtime.engine, org, "stayops.task.requested"), what="alert")
    assert (alert["priority"], alert["assigned_to"], alert["title"]) == ("urgent", "u-owner", "A 2-star review")
    assert alert["data"]["text"] == "Dirty towels" and alert["data"]["reservation_id"] == "r-9"
    by_outcome = {e["outcome"]: e for e in await executions(service, org, automation["id"])}
    assert sorted(by_outcome) == ["skipped", "success"]
    fired, skipped = by_outcome["success"], by_outcome["skipped"]
    assert (fired["dedupe_key"], fired["filter_value"], fired["outcome"]) == ("rv-2", True, "success")
    # Why did the 5-star review not fire? Its execution says so, and is no failure.
    assert (skipped["outcome"], skipped["filter_value"], skipped["dedupe_key"]) == ("skipped", False, None)
    assert skipped["reason"] == "the filter 'data.rating <= 3' is false for this event"
    stats = (await service.client.get(f"/v1/automations/{automation['id']}",
                                      headers=service.auth(org))).json()["stats"]
    assert (stats["runs"], stats["failures"], stats["skipped"], stats["success_rate"]) == (1, 0, 1, 1.0)
    assert stats["last_run"]["id"] == fired["id"]
    assert [(w["runs"], w["skipped"]) for w in stats["windows"]] == [(1, 1), (1, 1)]
    # A later review on the same partition: once it is applied, so is the duplicate.
    await service.publish("airbnb.review.created", review(org, "rv-3", 3), key="l-1")
    await eventually(lambda: _at_least(lambda: announced(service.runtime.engine, org, "stayops.task.requested"), 2),
                     what="a later bad review")
    assert len(await announced(service.runtime.engine, org, "stayops.task.requested")) == 2


async def test_debounce_fires_once_per_key_within_the_window(service: ServiceUnderTest) -> None:
    org = new_org()
    automation = await create(service, org, {
        "name": "Listing changed: one check per listing per hour", "kind": "event", "on": "listing.*",
        "debounce": {"seconds": 3600, "key": "${data.listing_id}"},
        "actions": [{"type": "notify", "user_id": "u-owner", "subject": "${data.listing_id} synced"}]})
    await create(service, org, {"name": "Marker", "kind": "event", "on": "review.created",
                                "actions": [{"type": "notify", "user_id": "u-owner", "subject": "marker"}]})
    for listing_id in ("l-1", "l-2", "l-1"):
        await service.publish("airbnb.listing.synced", ListingSynced(
            listing_id=listing_id, org_id=org, title="Loft", city="Lisbon", capacity=2,
            base_price=Decimal("100"), currency="EUR", synced_at=T0), key="same-partition")
    await service.publish("airbnb.review.created", review(org, "rv-1", 1), key="same-partition")

    async def subjects() -> list[str]:
        notes = (await service.client.get("/v1/notifications", headers=service.auth(org))).json()["items"]
        return sorted(n["subject"] for n in notes)

    await eventually(lambda: _contains(subjects, "marker"), what="every event before the marker applied")
    assert await subjects() == ["l-1 synced", "l-2 synced", "marker"]
    recorded = await executions(service, org, automation["id"])
    assert sorted(e["outcome"] for e in recorded) == ["skipped", "success", "success"]
    [debounced] = [e for e in recorded if e["outcome"] == "skipped"]
    assert debounced["reason"] == "debounced: it fired for the key 'l-1' less than 3600s earlier"


async def _contains(read: Any, item: str) -> bool:
    return item in await read()


async def test_an_action_that_fails_fails_the_execution_with_the_reason(service: ServiceUnderTest) -> None:
    org = new_org()
    automation = await create(service, org, {
        "name": "Broken due time", "kind": "event", "on": "review.created",
        "actions": [{"type": "create_task", "key": "k", "link": "${data.review_id}", "title": "t",
                     "due": {"date": "data.text"}}]})
    await service.publish("airbnb.review.created", review(org, "rv-1", 1), key="l-1")
    [run] = await eventually(lambda: executions(service, org, automation["id"]), what="a failed firing")
    assert run["outcome"] == "failure" and "ISO 8601" in run["error"]
    assert await announced(service.runtime.engine, org, "stayops.task.requested") == []

    async with service.runtime.uow.begin() as uow:  # a success 40 days ago counts only in the totals
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
        await store.insert_execution(uow.conn, Execution(
            id=str(uuid.uuid4()), automation_id=automation["id"], org_id=org, started_at=long_ago,
            finished_at=long_ago, outcome=ExecutionOutcome.SUCCESS, trigger=ExecutionTrigger.EVENT,
            dedupe_key="long-ago"))
    detail = (await service.client.get(f"/v1/automations/{automation['id']}", headers=service.auth(org))).json()
    stats = detail["stats"]
    assert (stats["runs"], stats["successes"], stats["failures"]) == (2, 1, 1)
    assert [(w["days"], w["runs"], w["failures"], w["success_rate"]) for w in stats["windows"]] == [
        (7, 1, 1, 0.0), (30, 1, 1, 0.0)]


async def test_an_execution_that_starts_a_run_succeeds_or_fails_with_the_run(service: ServiceUnderTest) -> None:
    org = new_org()
    automation = await create(service, org, {
        "name": "Bad review: re-price the listing", "kind": "event", "on": "review.created",
        "dedupe_key": "${data.review_id}",
        "actions": [{"type": "start_workflow", "workflow_key": "dynamic-pricing",
                     "parameters": {"listing_ids": ["${data.listing_id}"]}}]})

    async def run_of(review_id: str) -> tuple[dict[str, Any], str]:
        await service.publish("airbnb.review.created", review(org, review_id, 2), key="l-1")

        async def asked() -> tuple[dict[str, Any], str] | None:
            for execution in await executions(service, org, automation["id"]):
                if execution["dedupe_key"] == review_id and execution["action_outcomes"]:
                    return execution, execution["action_outcomes"][0]["request_id"]
            return None

        return await eventually(asked, what=f"the run {review_id} asks for")

    async def ended(review_id: str) -> dict[str, Any] | None:
        found = [e for e in await executions(service, org, automation["id"]) if e["dedupe_key"] == review_id]
        return found[0] if found and found[0]["outcome"] is not None else None

    started, request_id = await run_of("rv-ok")
    assert (started["outcome"], started["action_outcomes"][0]["outcome"]) == (None, "requested")
    await service.publish("stayops.workflow.run.started", WorkflowRunStarted(
        run_id="run-ok", org_id=org, workflow_key="dynamic-pricing", workflow_version=1,
        request_id=request_id), key="run-ok")
    await service.publish("stayops.workflow.run.completed", WorkflowRunCompleted(
        run_id="run-ok", org_id=org, workflow_key="dynamic-pricing", workflow_version=1), key="run-ok")
    succeeded = await eventually(lambda: ended("rv-ok"), what="the execution to succeed with its run")
    assert (succeeded["outcome"], succeeded["error"]) == ("success", None)
    assert [(o["outcome"], o["run_id"]) for o in succeeded["action_outcomes"]] == [("completed", "run-ok")]

    _, request_id = await run_of("rv-bad")
    await service.publish("stayops.workflow.run.started", WorkflowRunStarted(
        run_id="run-bad", org_id=org, workflow_key="dynamic-pricing", workflow_version=1,
        request_id=request_id), key="run-bad")
    await service.publish("stayops.workflow.run.failed", WorkflowRunFailed(
        run_id="run-bad", org_id=org, workflow_key="dynamic-pricing", workflow_version=1, step="analysis",
        reason="the pricing agent timed out", compensated=True), key="run-bad")
    failed = await eventually(lambda: ended("rv-bad"), what="the execution to fail with its run")
    assert failed["outcome"] == "failure" and "the pricing agent timed out" in failed["error"]
    assert [(o["outcome"], o["detail"]) for o in failed["action_outcomes"]] == [
        ("failed", "the pricing agent timed out")]

    reported = await announced(service.runtime.engine, org, "stayops.automation.executed")
    executed = {e["execution_id"]: e["outcome"] for e in reported}
    assert executed == {succeeded["id"]: "success", failed["id"]: "failure"}
    stats = (await service.client.get(f"/v1/automations/{automation['id']}",
                                      headers=service.auth(org))).json()["stats"]
    assert [(w["days"], w["runs"], w["successes"], w["failures"]) for w in stats["windows"]] == [
        (7, 2, 1, 1), (30, 2, 1, 1)]


async def test_an_event_automation_with_a_forbidden_expression_is_refused(service: ServiceUnderTest) -> None:
    response = await service.client.post("/v1/automations", headers=service.auth(new_org()), json={
        **BAD_REVIEW, "filter": "data.__class__"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


GUEST_MESSAGE: dict[str, Any] = {
    "name": "Guest message: answer it", "kind": "event", "on": "message.received",
    "filter": "data.reservation_id != null",
    "actions": [{"type": "create_task", "key": "answer", "link": "message:${platform}:${data.message_id}",
                 "title": "Answer ${data.guest_name} on ${platform}", "assigned_to": "u-owner",
                 "description": "${data.text}",
                 "data": {"thread_id": "${data.thread_id}", "reservation_id": "${data.reservation_id}"}}],
}


def message(org: str, message_id: str, reservation_id: str | None) -> MessageReceived:
    return MessageReceived(message_id=message_id, thread_id="t-1", listing_id="l-1", org_id=org,
                           reservation_id=reservation_id, guest_name="Ana", text="Is there parking?",
                           received_at=T0)


async def test_a_guest_message_on_either_platform_fires_a_message_received_automation(
    service: ServiceUnderTest,
) -> None:
    org = new_org()
    automation = await create(service, org, GUEST_MESSAGE)
    await service.publish("airbnb.message.received", message(org, "m-1", "r-1"), key="l-1")
    await service.publish("hostaway.message.received", message(org, "m-2", None), key="l-1")  # filter false
    await service.publish("hostaway.message.received", message(org, "m-3", "r-2"), key="l-1")

    requested = await eventually(
        lambda: _at_least(lambda: announced(service.runtime.engine, org, "stayops.task.requested"), 2),
        what="a task per guest message")
    assert sorted((t["title"], t["data"]["reservation_id"]) for t in requested) == [
        ("Answer Ana on airbnb", "r-1"), ("Answer Ana on hostaway", "r-2")]
    assert {t["description"] for t in requested} == {"Is there parking?"}
    runs = await executions(service, org, automation["id"])
    assert sorted((e["event_type"], e["outcome"]) for e in runs) == [
        ("airbnb.message.received", "success"), ("hostaway.message.received", "skipped"),
        ("hostaway.message.received", "success")]


async def test_a_filter_reads_the_listings_segment_and_tags_from_its_sync(service: ServiceUnderTest) -> None:
    org = new_org()
    automation = await create(service, org, {
        "name": "Luxury stays: a welcome basket", "kind": "event", "on": "reservation.created",
        "filter": "listing.segment == 'luxury' and 'pool' in listing.tags",
        "actions": [{"type": "create_task", "key": "basket", "link": "${data.reservation_id}",
                     "title": "Welcome basket for ${listing.title}", "assigned_to": "u-owner"}]})
    for listing_id, segment, tags in (("lux", "luxury", ["luxury", "pool"]), ("cheap", "budget", ["budget"])):
        await service.publish("airbnb.listing.synced", ListingSynced(
            listing_id=listing_id, org_id=org, title=f"Flat {listing_id}", city="Lisbon", capacity=2,
            base_price=Decimal("100"), currency="EUR", timezone="Europe/Lisbon", synced_at=T0, segment=segment,
            tags=tags), key=listing_id)
    for listing_id in ("cheap", "lux"):
        stay = reservation(org, f"r-{listing_id}").model_copy(update={"listing_id": listing_id})
        await service.publish("airbnb.reservation.created", stay, key=listing_id)

    outcomes = await eventually(lambda: _at_least(lambda: executions(service, org, automation["id"]), 2),
                                what="both reservations judged")
    assert sorted(e["outcome"] for e in outcomes) == ["skipped", "success"]
    [basket] = await announced(service.runtime.engine, org, "stayops.task.requested")
    assert basket["title"] == "Welcome basket for Flat lux"
