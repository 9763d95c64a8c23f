"""A run's lifecycle reaches every service: cancelling a pricing run that waits at
its decision withdraws the decision task in task-service (who and why recorded),
and a new week's run for the same listings cancels the old one the same way."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from stayops_infra.scenario import OrgHandle, PricingClient

pytestmark = pytest.mark.stack

BY_OWNER = 0.0  # every change reaches it: the owner decides


async def task_becomes(pricing: PricingClient, org: OrgHandle, task_id: str, status: str,
                       timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    task: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await pricing.http.get(f"{pricing.urls['task-service']}/v1/tasks/{task_id}", headers=org.headers)
        assert response.status_code == 200, response.text
        task = response.json()
        if task["status"] == status:
            return task
        await asyncio.sleep(0.2)
    raise AssertionError(f"task {task_id} is {task.get('status')}, not {status}, after {timeout_s:.0f}s")


async def test_cancelling_a_run_waiting_at_its_decision_cancels_the_decision_task(
    pricing: PricingClient, org: OrgHandle
) -> None:
    run_id = await pricing.start_run(org, threshold_pct=BY_OWNER, monitor_days=0)
    decision = await pricing.decision_task(org, run_id, timeout_s=180)

    response = await pricing.http.post(f"{pricing.urls['workflow-service']}/v1/runs/{run_id}/cancel",
                                       json={"reason": "the listing is sold"}, headers=org.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"

    task = await task_becomes(pricing, org, decision["id"], "cancelled")
    assert task["status_reason"] == "the listing is sold"
    refused = await pricing.http.post(f"{pricing.urls['task-service']}/v1/tasks/{decision['id']}/decision",
                                      json={"outcome": "approved", "comment": "too late"}, headers=org.headers)
    assert refused.status_code == 409, refused.text


async def test_a_new_weeks_run_for_the_same_listings_cancels_last_weeks_proposal(
    pricing: PricingClient, org: OrgHandle
) -> None:
    last_week = await pricing.start_run(org, threshold_pct=BY_OWNER, monitor_days=0)
    stale = await pricing.decision_task(org, last_week, timeout_s=180)

    this_week = await pricing.start_run(org, threshold_pct=BY_OWNER, monitor_days=0,
                                        listing_ids=list(reversed(org.listing_ids)))

    old = await pricing.wait_until(org, last_week, statuses=frozenset({"cancelled"}), timeout_s=30)
    assert f"superseded by run {this_week}" in "\n".join(e["message"] for e in old["log"])
    await task_becomes(pricing, org, stale["id"], "cancelled")
    fresh = await pricing.decision_task(org, this_week, timeout_s=180)
    assert fresh["id"] != stale["id"]
    response = await pricing.http.post(f"{pricing.urls['workflow-service']}/v1/runs/{this_week}/cancel",
                                       json={"reason": "end of the test"}, headers=org.headers)
    assert response.status_code == 200, response.text
