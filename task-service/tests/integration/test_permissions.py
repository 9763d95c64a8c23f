"""Every task-service route that changes something needs its permission: a caller
whose role lacks it gets a 403 problem naming it and nothing changes; a caller
holding only it succeeds. Reading needs only membership of the org."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stayops_kit.permissions import Permission
from stayops_kit.testing import ServiceUnderTest, service_under_test
from task_service.app import NAME, create_app

pytestmark = pytest.mark.stack

EVERY = frozenset(p.value for p in Permission)


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(create_app, NAME, stack) as running:
        yield running


def without(permission: Permission) -> list[str]:
    return sorted(EVERY - {permission.value})


def assert_refused_for_lacking(response: Any, permission: Permission) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["code"], body["missing_permission"]) == ("permission-missing", permission.value)
    assert body["type"] == "urn:stayops:problem:permission-missing"


async def test_creating_a_task_needs_tasks_create(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    task = {"title": "Restock towels", "task_type": "manual"}
    refused = await service.client.post("/v1/tasks", json=task, headers=service.auth(
        org, "eve", "member", permissions=without(Permission.TASKS_CREATE)))
    assert_refused_for_lacking(refused, Permission.TASKS_CREATE)
    listed = await service.client.get("/v1/tasks/count", headers=service.auth(org))
    assert listed.json()["count"] == 0, "a refused create writes nothing"

    allowed = await service.client.post("/v1/tasks", json=task, headers=service.auth(
        org, "olga", "operations", permissions=[Permission.TASKS_CREATE.value]))
    assert allowed.status_code == 201, allowed.text


@pytest.mark.parametrize(("action", "body", "after"), [
    ("start", None, "in_progress"),
    ("complete", {"result": {"done": True}}, "completed"),
    ("fail", {"reason": "no towels left"}, "failed"),
    ("block", {"reason": "waiting for the plumber"}, "blocked"),
])
async def test_working_on_a_task_needs_tasks_act(service: ServiceUnderTest, action: str,
                                                 body: dict[str, Any] | None, after: str) -> None:
    org = str(uuid.uuid4())
    created = await service.client.post("/v1/tasks", headers=service.auth(org), json={
        "title": "Restock towels", "task_type": "manual", "assigned_to": "bob"})
    task_id = created.json()["id"]

    refused = await service.client.post(f"/v1/tasks/{task_id}/{action}", json=body, headers=service.auth(
        org, "bob", "member", permissions=without(Permission.TASKS_ACT)))
    assert_refused_for_lacking(refused, Permission.TASKS_ACT)
    unchanged = await service.client.get(f"/v1/tasks/{task_id}", headers=service.auth(org))
    assert unchanged.json()["status"] == "pending"

    allowed = await service.client.post(f"/v1/tasks/{task_id}/{action}", json=body, headers=service.auth(
        org, "bob", "member", permissions=[Permission.TASKS_ACT.value]))
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["status"] == after


async def decision_for(service: ServiceUnderTest, org: str, assignee: str) -> str:
    created = await service.client.post("/v1/tasks", headers=service.auth(org), json={
        "title": "Approve the new prices", "task_type": "decision", "assigned_to": assignee,
        "data": {"proposal": [{"listing_id": "l-1", "date": "2025-03-03", "price": "120.00"}]}})
    assert created.status_code == 201, created.text
    task_id: str = created.json()["id"]
    return task_id


async def test_deciding_needs_decisions_decide(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    task_id = await decision_for(service, org, "rita")

    refused = await service.client.post(f"/v1/tasks/{task_id}/decision", json={"outcome": "approved"},
                                        headers=service.auth(org, "rita", "operations",
                                                             permissions=without(Permission.DECISIONS_DECIDE)))
    assert_refused_for_lacking(refused, Permission.DECISIONS_DECIDE)
    unchanged = await service.client.get(f"/v1/tasks/{task_id}", headers=service.auth(org))
    assert (unchanged.json()["status"], unchanged.json()["result"]) == ("pending", None)

    # Rejecting publishes nothing, so deciding alone suffices (approving prices also
    # needs prices.publish: test_task_work covers that).
    allowed = await service.client.post(f"/v1/tasks/{task_id}/decision", json={"outcome": "rejected"},
                                        headers=service.auth(org, "rita", "revenue-manager",
                                                             permissions=[Permission.DECISIONS_DECIDE.value]))
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["status"] == "completed"


async def test_an_ai_agent_never_decides_unless_its_org_allows_it(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    task_id = await decision_for(service, org, "ai-rm")
    url = f"/v1/tasks/{task_id}/decision"

    # A token claiming the permission is not enough: the org's policy must say so.
    refused = await service.client.post(url, json={"outcome": "approved"}, headers=service.auth(
        org, "ai-rm", "revenue-manager", permissions=sorted(EVERY), user_type="ai_agent"))
    assert_refused_for_lacking(refused, Permission.DECISIONS_DECIDE)
    unchanged = await service.client.get(f"/v1/tasks/{task_id}", headers=service.auth(org))
    assert unchanged.json()["status"] == "pending"

    allowed = await service.client.post(url, json={"outcome": "approved"}, headers=service.auth(
        org, "ai-rm", "revenue-manager", user_type="ai_agent", ai_may_decide=True))
    assert allowed.status_code == 200, allowed.text


async def test_any_member_reads_the_orgs_tasks_and_their_inbox(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    created = await service.client.post("/v1/tasks", headers=service.auth(org), json={
        "title": "Check the smoke alarm", "task_type": "manual", "assigned_to": "nina"})
    task_id = created.json()["id"]
    nobody = service.auth(org, "nina", "member", permissions=[])
    for path in ("/v1/tasks", f"/v1/tasks/{task_id}", "/v1/inbox"):
        response = await service.client.get(path, headers=nobody)
        assert response.status_code == 200, (path, response.text)
    inbox = await service.client.get("/v1/inbox", headers=nobody)
    assert [t["id"] for t in inbox.json()["items"]] == [task_id]
