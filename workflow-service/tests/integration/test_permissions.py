"""Every workflow-service route that changes something needs its permission: a
caller whose role lacks it gets a 403 problem naming it and nothing changes; a
caller holding only it succeeds. Reading needs only membership of the org."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stayops_kit.permissions import Permission
from stayops_kit.testing import ServiceUnderTest, service_under_test
from workflow_service.app import NAME, create_app

pytestmark = pytest.mark.stack

EVERY = frozenset(p.value for p in Permission)
CHECKLIST = {"key": "checkout-checklist", "name": "Checkout checklist",
             "steps": [{"name": "inspect", "type": "task", "title": "Inspect the flat", "task_type": "manual"}]}
PRICING = {"parameters": {"listing_ids": ["l-1"], "threshold_pct": 5, "monitor_days": 0}}


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(create_app, NAME, stack) as running:
        yield running


def lacking(service: ServiceUnderTest, org: str, permission: Permission) -> dict[str, str]:
    return service.auth(org, "eve", "member", permissions=sorted(EVERY - {permission.value}))


def holding(service: ServiceUnderTest, org: str, permission: Permission) -> dict[str, str]:
    return service.auth(org, "rick", "revenue-manager", permissions=[permission.value])


def assert_refused_for_lacking(response: Any, permission: Permission) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert (response.json()["code"], response.json()["missing_permission"]) == (
        "permission-missing", permission.value)


async def own_keys(service: ServiceUnderTest, org: str) -> list[str]:
    listed = await service.client.get("/v1/workflows", headers=service.auth(org))
    return [w["key"] for w in listed.json()["items"] if not w["builtin"]]


async def test_publishing_a_workflow_needs_workflows_publish(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    refused = await service.client.post("/v1/workflows", json=CHECKLIST,
                                        headers=lacking(service, org, Permission.WORKFLOWS_PUBLISH))
    assert_refused_for_lacking(refused, Permission.WORKFLOWS_PUBLISH)
    assert await own_keys(service, org) == [], "a refused publish writes nothing"

    allowed = await service.client.post("/v1/workflows", json=CHECKLIST,
                                        headers=holding(service, org, Permission.WORKFLOWS_PUBLISH))
    assert allowed.status_code == 201, allowed.text
    assert await own_keys(service, org) == ["checkout-checklist"]


@pytest.mark.parametrize("key", ["dynamic-pricing", "checkout-checklist"])
async def test_starting_a_run_needs_runs_start(service: ServiceUnderTest, key: str) -> None:
    org = str(uuid.uuid4())
    body: dict[str, Any] = PRICING if key == "dynamic-pricing" else {}
    if key == "checkout-checklist":
        await service.client.post("/v1/workflows", json=CHECKLIST, headers=service.auth(org))
    retry = f"key-{uuid.uuid4()}"
    refused = await service.client.post(f"/v1/workflows/{key}/runs", json=body, headers={
        **lacking(service, org, Permission.RUNS_START), "Idempotency-Key": retry})
    assert_refused_for_lacking(refused, Permission.RUNS_START)

    allowed = await service.client.post(f"/v1/workflows/{key}/runs", json=body, headers={
        **holding(service, org, Permission.RUNS_START), "Idempotency-Key": retry})
    assert allowed.status_code == 201, "the refused attempt started no run under its key: " + allowed.text


async def test_cancelling_a_run_needs_runs_cancel(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    started = await service.client.post("/v1/workflows/dynamic-pricing/runs", json=PRICING,
                                        headers=service.auth(org))
    run_id = started.json()["id"]

    refused = await service.client.post(f"/v1/runs/{run_id}/cancel", json={"reason": "no"},
                                        headers=lacking(service, org, Permission.RUNS_CANCEL))
    assert_refused_for_lacking(refused, Permission.RUNS_CANCEL)
    still = await service.client.get(f"/v1/runs/{run_id}", headers=service.auth(org))
    assert still.json()["status"] not in ("cancelled",)

    allowed = await service.client.post(f"/v1/runs/{run_id}/cancel", json={"reason": "wrong week"},
                                        headers=holding(service, org, Permission.RUNS_CANCEL))
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["status"] == "cancelled"


async def test_any_member_reads_workflows_runs_and_the_schema(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    started = await service.client.post("/v1/workflows/dynamic-pricing/runs", json=PRICING,
                                        headers=service.auth(org))
    nobody = service.auth(org, "nina", "member", permissions=[])
    for path in ("/v1/workflows", "/v1/workflow-schema", f"/v1/runs/{started.json()['id']}"):
        response = await service.client.get(path, headers=nobody)
        assert response.status_code == 200, (path, response.text)


@pytest.mark.parametrize("body", [
    {"parameters": {"listing_ids": ["l-1"]}, "workflow_version": 5897362464.0},
    {"parameters": {"listing_ids": ["l-1"]}, "workflow_version": 2**63},
    {"parameters": {"listing_ids": ["l-1"]}, "workflow_version": True},
])
async def test_an_oversized_or_boolean_workflow_version_is_a_422_problem(service: ServiceUnderTest,
                                                             body: dict[str, Any]) -> None:
    response = await service.client.post("/v1/workflows/dynamic-pricing/runs", json=body,
                                         headers=service.auth(str(uuid.uuid4())))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation-failed"


async def test_the_builtin_parameter_schema_is_published_and_enforced(service: ServiceUnderTest) -> None:
    document = (await service.client.get("/openapi.json")).json()
    operation = document["paths"]["/v1/workflows/dynamic-pricing/runs"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    ref = body["$ref"].rsplit("/", 1)[-1]
    parameters = document["components"]["schemas"][ref]["properties"]["parameters"]
    assert parameters["required"] == ["listing_ids"]
    assert set(parameters["properties"]) >= {"listing_ids", "threshold_pct", "monitor_days"}

    refused = await service.client.post("/v1/workflows/dynamic-pricing/runs", headers=service.auth(
        str(uuid.uuid4())), json={"parameters": {"listing_ids": []}})
    assert (refused.status_code, refused.json()["code"]) == (422, "validation-failed")
    assert "listing_ids" in refused.json()["errors"][0]["msg"]


async def test_pausing_and_resuming_a_run_need_runs_cancel(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    started = await service.client.post("/v1/workflows/dynamic-pricing/runs", json=PRICING,
                                        headers=service.auth(org))
    run_id = started.json()["id"]

    for action in ("pause", "resume"):
        refused = await service.client.post(f"/v1/runs/{run_id}/{action}",
                                            headers=lacking(service, org, Permission.RUNS_CANCEL))
        assert_refused_for_lacking(refused, Permission.RUNS_CANCEL)
        allowed = await service.client.post(f"/v1/runs/{run_id}/{action}",
                                            headers=holding(service, org, Permission.RUNS_CANCEL))
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["status"] == ("paused" if action == "pause" else "waiting")
