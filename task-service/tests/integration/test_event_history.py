"""GET /v1/events on task-service: the events it published for a correlation, an
event id or a subject, and the inbox records of the events it applied, oldest
first and paged, for the caller's org only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stayops_kit.testing import ServiceUnderTest, eventually, service_under_test
from stayops_schemas.events.tasks import TaskRequested
from task_service.app import NAME, create_app

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(create_app, NAME, stack) as running:
        yield running


async def history(service: ServiceUnderTest, org: str, **params: Any) -> dict[str, Any]:
    response = await service.client.get("/v1/events", params=params, headers=service.auth(org))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_correlation_shows_what_was_applied_and_what_it_caused(service: ServiceUnderTest) -> None:
    org, other_org, correlation = str(uuid.uuid4()), str(uuid.uuid4()), f"run-{uuid.uuid4()}"
    await service.publish("stayops.task.requested", TaskRequested(
        request_id=f"req-{uuid.uuid4()}", org_id=org, title="Clean listing ABC", task_type="manual",
        requested_by="u-owner"), key="req", correlation_id=correlation)

    async def caused() -> dict[str, Any] | None:
        found = await history(service, org, correlation_id=correlation)
        return found if found["items"] and found["consumed"] else None

    found = await eventually(caused, what="the task the request created, in the history")
    [applied] = found["consumed"]
    assert (applied["group"], applied["type"], applied["attempts"]) == ("task-service", "stayops.task.requested", 1)
    assert applied["correlationid"] == correlation and applied["time"] and applied["causationid"] is None
    [created] = found["items"]
    assert created["type"] == "stayops.task.created" and created["source"] == "/task-service"
    assert created["correlationid"] == correlation
    assert created["causationid"] == applied["event_id"], "caused by the request it applied"
    assert created["data"]["title"] == "Clean listing ABC" and created["orgid"] == org
    assert found["next_after"] is None

    by_id = await history(service, org, event_id=created["id"])
    assert [e["id"] for e in by_id["items"]] == [created["id"]] and by_id["consumed"] == []
    by_request = await history(service, org, event_id=applied["event_id"])
    assert by_request["items"] == [] and [c["event_id"] for c in by_request["consumed"]] == [applied["event_id"]]
    by_subject = await history(service, org, subject=created["partitionkey"])
    assert [e["id"] for e in by_subject["items"]] == [created["id"]]

    for params in ({"correlation_id": correlation}, {"event_id": created["id"]},
                   {"subject": created["partitionkey"]}, {"event_id": applied["event_id"]}):
        assert await history(service, other_org, **params) == {
            "items": [], "consumed": [], "next_after": None, "limit": 100}, f"another org sees nothing: {params}"


async def test_the_history_is_paged_oldest_first(service: ServiceUnderTest) -> None:
    org, correlation = str(uuid.uuid4()), f"corr-{uuid.uuid4()}"
    for title in ("first", "second", "third"):
        response = await service.client.post(
            "/v1/tasks", json={"title": title, "task_type": "manual"},
            headers={**service.auth(org), "X-Correlation-ID": correlation})
        assert response.status_code == 201, response.text

    first = await history(service, org, correlation_id=correlation, limit=2)
    assert [e["data"]["title"] for e in first["items"]] == ["first", "second"]
    assert first["next_after"] == first["items"][-1]["cursor"]
    rest = await history(service, org, correlation_id=correlation, limit=2, after=first["next_after"])
    assert [e["data"]["title"] for e in rest["items"]] == ["third"] and rest["next_after"] is None


async def test_with_no_filter_it_is_the_orgs_whole_history(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    response = await service.client.post("/v1/tasks", json={"title": "mine", "task_type": "manual"},
                                         headers=service.auth(org))
    assert response.status_code == 201, response.text

    found = await history(service, org)
    assert [e["data"]["title"] for e in found["items"]] == ["mine"]
    assert (await history(service, str(uuid.uuid4())))["items"] == []
