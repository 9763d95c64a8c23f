"""task-service over REST, as a client uses it: authentication, org isolation,
clear errors for bad input, and the `stayops.task.created` announcement."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer

from stayops_kit.db import outbox
from stayops_kit.testing import eventually
from stayops_schemas.binding import from_kafka
from stayops_schemas.errors import MalformedEvent
from task_service.testing import auth

pytestmark = pytest.mark.stack

Service = tuple[httpx.AsyncClient, Any, str]


async def test_a_created_task_is_readable_and_announced(service: Service, stack: Any) -> None:
    client, _, _ = service
    org = str(uuid.uuid4())
    response = await client.post(
        "/v1/tasks",
        json={"title": "Clean listing ABC", "task_type": "manual", "priority": "high",
              "data": {"listing_id": "ABC"}},
        headers={**auth(stack, org), "X-Correlation-ID": "corr-1"},
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert (task["org_id"], task["status"], task["created_by"]) == (org, "pending", "owner-1")

    fetched = await client.get(f"/v1/tasks/{task['id']}", headers=auth(stack, org))
    assert fetched.json() == task
    listed = await client.get("/v1/tasks", params={"status": "pending"}, headers=auth(stack, org))
    assert [t["id"] for t in listed.json()["items"]] == [task["id"]]

    consumer = AIOKafkaConsumer("stayops.tasks", bootstrap_servers=stack.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        async def announced() -> Any:
            batch = await consumer.getmany(timeout_ms=200)
            for record in (r for part in batch.values() for r in part):
                try:
                    event = from_kafka(record.key, record.value, record.headers)
                except MalformedEvent:
                    continue  # the session's topics also carry other tests' malformed records
                if event.orgid == org:
                    return event
            return None

        event = await eventually(announced, what="stayops.task.created on stayops.tasks")
    finally:
        await consumer.stop()
    assert event.type == "stayops.task.created"
    assert event.partitionkey == task["id"]
    assert event.correlationid == "corr-1"
    assert event.data["title"] == "Clean listing ABC"
    assert event.dataschema == "urn:stayops:schema:stayops.task.created:v1"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["no-token", "garbage-token", "basic-auth"],
)
async def test_requests_without_a_valid_token_are_401_problems(service: Service, headers: dict[str, str]) -> None:
    client, _, _ = service
    for method, path in (("GET", "/v1/tasks"), ("POST", "/v1/tasks"), ("GET", "/v1/tasks/x")):
        response = await client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 401


async def test_an_expired_or_wrong_audience_token_is_401(service: Service, stack: Any) -> None:
    client, _, _ = service
    import time

    import jwt

    private = stack.jwt_private_key_file.read_text()
    base = {"sub": "u", "org_id": "o", "user_type": "human", "iss": "stayops-org-service",
            "aud": "stayops", "exp": int(time.time()) + 60}
    for claims in ({**base, "exp": int(time.time()) - 10}, {**base, "aud": "elsewhere"}):
        token = jwt.encode(claims, private, algorithm="RS256")
        response = await client.get("/v1/tasks", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401


async def test_another_orgs_task_is_404_on_read_and_on_write(service: Service, stack: Any) -> None:
    client, _, _ = service
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    created = await client.post("/v1/tasks", json={"title": "Private", "task_type": "manual"},
                                headers=auth(stack, mine))
    task_id = created.json()["id"]

    read = await client.get(f"/v1/tasks/{task_id}", headers=auth(stack, theirs))
    assert read.status_code == 404
    assert read.headers["content-type"] == "application/problem+json"
    as_parent = await client.post(
        "/v1/tasks", json={"title": "Sub", "task_type": "manual", "parent_task_id": task_id},
        headers=auth(stack, theirs),
    )
    assert as_parent.status_code == 422
    listed = await client.get("/v1/tasks/count", headers=auth(stack, theirs))
    assert listed.json()["count"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"task_type": "manual"},
        {"title": "", "task_type": "manual"},
        {"title": "x", "task_type": "cooking"},
        {"title": "x", "task_type": "manual", "priority": "whenever"},
        {"title": "x", "task_type": "manual", "due_at": "next tuesday"},
        {"title": "x", "task_type": "manual", "surprise": True},
    ],
    ids=["no-title", "empty-title", "bad-type", "bad-priority", "bad-date", "unknown-field"],
)
async def test_bad_bodies_are_422_problems_and_write_nothing(
    service: Service, stack: Any, body: dict[str, Any]
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    response = await client.post("/v1/tasks", json=body, headers=auth(stack, org))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["errors"]
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.org_id == org))
        assert rows.scalar_one() == 0
    listed = await client.get("/v1/tasks/count", headers=auth(stack, org))
    assert listed.json()["count"] == 0


async def test_operational_endpoints(service: Service) -> None:
    client, _, _ = service
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "relay": "ok"}
    metrics = await client.get("/metrics")
    assert "stayops_outbox_published_total" in metrics.text
