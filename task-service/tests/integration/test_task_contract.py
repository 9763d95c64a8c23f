"""POST /v1/tasks as a careful client uses it: a retried create with the same
Idempotency-Key answers the same task, the same key with another body is refused;
inputs a fuzzer found to crash the service are refused with a problem instead."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stayops_kit.testing import ServiceUnderTest, service_under_test
from task_service.app import NAME, create_app

pytestmark = pytest.mark.stack

CLEAN = {"title": "Deep clean listing ABC", "task_type": "manual", "priority": "high"}


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(create_app, NAME, stack) as running:
        yield running


async def total(service: ServiceUnderTest, org: str) -> int:
    listed = await service.client.get("/v1/tasks/count", headers=service.auth(org))
    count: int = listed.json()["count"]
    return count


async def test_a_retried_create_answers_the_same_task(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    headers = {**service.auth(org), "Idempotency-Key": "clean-abc-2025-03-02"}
    first = await service.client.post("/v1/tasks", json=CLEAN, headers=headers)
    again = await service.client.post("/v1/tasks", json=dict(reversed(CLEAN.items())), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json()["id"] == first.json()["id"]
    assert await total(service, org) == 1


async def test_the_same_key_with_another_body_is_refused_and_writes_nothing(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    headers = {**service.auth(org), "Idempotency-Key": "clean-abc"}
    assert (await service.client.post("/v1/tasks", json=CLEAN, headers=headers)).status_code == 201
    reused = await service.client.post("/v1/tasks", json={**CLEAN, "priority": "low"}, headers=headers)
    assert reused.status_code == 422, reused.text
    assert reused.headers["content-type"] == "application/problem+json"
    assert (reused.json()["code"], reused.json()["type"]) == (
        "idempotency-key-reused", "urn:stayops:problem:idempotency-key-reused")
    assert await total(service, org) == 1


async def test_keys_belong_to_their_caller(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    mine = await service.client.post("/v1/tasks", json=CLEAN, headers={
        **service.auth(org, "alice"), "Idempotency-Key": "k-1"})
    theirs = await service.client.post("/v1/tasks", json=CLEAN, headers={
        **service.auth(org, "bob"), "Idempotency-Key": "k-1"})
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]


async def test_concurrent_retries_make_one_task(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    headers = {**service.auth(org), "Idempotency-Key": f"k-{uuid.uuid4()}"}
    answers = await asyncio.gather(*(service.client.post("/v1/tasks", json=CLEAN, headers=headers)
                                     for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert await total(service, org) == 1


@pytest.mark.parametrize(("path", "params"), [
    ("/v1/inbox", {"limit": "18107948911111122944"}),
    ("/v1/tasks", {"limit": "99999999999999999999"}),
])
async def test_oversized_integers_are_422_problems(service: ServiceUnderTest, path: str,
                                                   params: dict[str, str]) -> None:
    response = await service.client.get(path, params=params, headers=service.auth(str(uuid.uuid4())))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation-failed"


async def test_the_automation_user_takes_only_automated_tasks(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    manual = await service.client.post("/v1/tasks", headers=service.auth(org), json={
        "title": "Clean", "task_type": "manual", "assigned_to": "automation", "role_id": "cleaner"})
    assert manual.status_code == 422, manual.text
    assert "automated" in manual.json()["errors"][0]["msg"]
    assert await total(service, org) == 0
    automated = await service.client.post("/v1/tasks", headers=service.auth(org), json={
        "title": "Send the welcome message", "task_type": "automated", "assigned_to": "automation",
        "role_id": "cleaner", "data": {"action": "notify"}})
    assert automated.status_code == 201, automated.text
    assert automated.json()["assigned_to"] == "automation"


@pytest.mark.parametrize("body", [
    {**CLEAN, "title": "Clean\u0000"},
    {**CLEAN, "data": {"note": "a\u0000b"}},
], ids=["text", "jsonb"])
async def test_text_postgresql_cannot_store_is_a_422(service: ServiceUnderTest, body: dict[str, Any]) -> None:
    org = str(uuid.uuid4())
    response = await service.client.post("/v1/tasks", json=body, headers=service.auth(org))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "unstorable-text"
    assert await total(service, org) == 0


async def test_problems_name_their_kind(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    missing = await service.client.get("/v1/tasks/nope", headers=service.auth(org))
    assert missing.status_code == 404
    assert missing.json() | {"detail": "-"} == {
        "type": "urn:stayops:problem:task-not-found", "code": "task-not-found", "title": "Not found",
        "status": 404, "detail": "-", "instance": "/v1/tasks/nope"}
    created = await service.client.post("/v1/tasks", json={**CLEAN, "assigned_to": "u-owner"},
                                        headers=service.auth(org))
    task_id = created.json()["id"]
    await service.client.post(f"/v1/tasks/{task_id}/fail", json={"reason": "x"}, headers=service.auth(org))
    again = await service.client.post(f"/v1/tasks/{task_id}/start", headers=service.auth(org))
    assert (again.status_code, again.json()["code"]) == (409, "transition-not-allowed")
    anonymous = await service.client.get("/v1/tasks")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthorized")
