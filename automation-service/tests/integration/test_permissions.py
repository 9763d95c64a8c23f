"""Every automation-service route that changes something needs automations.manage:
a caller whose role lacks it gets a 403 problem naming it and nothing changes; a
caller holding only it succeeds. Reading needs only membership of the org."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from automation_service.app import NAME, create_app
from stayops_kit.permissions import Permission
from stayops_kit.testing import ServiceUnderTest, service_under_test

pytestmark = pytest.mark.stack

EVERY = frozenset(p.value for p in Permission)
MANAGE = Permission.AUTOMATIONS_MANAGE
WEEKLY = {"name": "Weekly price optimisation", "kind": "scheduled", "cron": "0 9 * * SUN",
          "timezone": "Europe/Paris",
          "action": {"type": "start_workflow", "workflow_key": "dynamic-pricing",
                     "parameters": {"listing_ids": ["l-1"]}}}


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(create_app, NAME, stack) as running:
        yield running


def lacking(service: ServiceUnderTest, org: str) -> dict[str, str]:
    return service.auth(org, "eve", "revenue-manager", permissions=sorted(EVERY - {MANAGE.value}))


def holding(service: ServiceUnderTest, org: str) -> dict[str, str]:
    return service.auth(org, "ops", "operations", permissions=[MANAGE.value])


def assert_refused(response: Any) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert (response.json()["code"], response.json()["missing_permission"]) == ("permission-missing", MANAGE.value)


async def test_creating_an_automation_needs_automations_manage(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    assert_refused(await service.client.post("/v1/automations", json=WEEKLY, headers=lacking(service, org)))
    listed = await service.client.get("/v1/automations", headers=service.auth(org))
    assert listed.json()["items"] == [], "a refused create writes nothing"

    allowed = await service.client.post("/v1/automations", json=WEEKLY, headers=holding(service, org))
    assert allowed.status_code == 201, allowed.text


@pytest.mark.parametrize(("action", "status", "active_after"), [
    ("pause", 200, False), ("resume", 200, True), ("run", 202, True)])
async def test_pausing_resuming_and_running_need_automations_manage(
        service: ServiceUnderTest, action: str, status: int, active_after: bool) -> None:
    org = str(uuid.uuid4())
    created = await service.client.post("/v1/automations", json=WEEKLY, headers=service.auth(org))
    automation_id = created.json()["id"]
    if action == "resume":
        await service.client.post(f"/v1/automations/{automation_id}/pause", headers=service.auth(org))
    before = (await service.client.get(f"/v1/automations/{automation_id}", headers=service.auth(org))).json()

    assert_refused(await service.client.post(f"/v1/automations/{automation_id}/{action}",
                                             headers=lacking(service, org)))
    unchanged = (await service.client.get(f"/v1/automations/{automation_id}", headers=service.auth(org))).json()
    assert (unchanged["is_active"], unchanged["stats"]["runs"]) == (before["is_active"], before["stats"]["runs"])

    allowed = await service.client.post(f"/v1/automations/{automation_id}/{action}", headers=holding(service, org))
    assert allowed.status_code == status, allowed.text
    after = (await service.client.get(f"/v1/automations/{automation_id}", headers=service.auth(org))).json()
    assert after["is_active"] is active_after


async def test_any_member_reads_automations_executions_and_their_notifications(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    created = await service.client.post("/v1/automations", json=WEEKLY, headers=service.auth(org))
    automation_id = created.json()["id"]
    nobody = service.auth(org, "nina", "member", permissions=[])
    for path in ("/v1/automations", f"/v1/automations/{automation_id}",
                 f"/v1/automations/{automation_id}/executions", "/v1/notifications"):
        response = await service.client.get(path, headers=nobody)
        assert response.status_code == 200, (path, response.text)
