"""Step policies through the services, on real durable timers of a second or two: a
task that times out is withdrawn in task-service and the run moves on; a decision
nobody takes is escalated to the owner (reassigned in task-service, in their inbox
with its deadline as due time) and decided there, or escalated by adding the owner
as a reviewer beside the assignee (its queue), who decides it; a decision left
alone is taken by its deadline's default action, its task withdrawn."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

import pytest

from stayops_infra.scenario import OrgHandle, PricingClient

pytestmark = pytest.mark.stack

# A role nobody in the solo org has: its tasks wait in the role's queue.
NOBODY = "night-auditor"


def decision(**timing: Any) -> dict[str, Any]:
    return {"name": "approve", "type": "decision", "title": "Approve the refund", "role_id": NOBODY,
            "proposal": "${params.refunds}", **timing}


async def publish_and_start(client: PricingClient, org: OrgHandle, steps: list[dict[str, Any]]) -> str:
    key = f"refund-{uuid.uuid4().hex[:6]}"
    base = client.urls["workflow-service"]
    published = await client.http.post(f"{base}/v1/workflows", headers=org.headers, json={
        "key": key, "name": "Refund approval", "steps": steps,
        "parameters": {"type": "object", "properties": {"refunds": {"type": "array"}, "boss": {"type": "string"}}},
        "result": {"outcome": "${steps.approve.outcome}", "by": "${steps.approve.by}"}})
    assert published.status_code == 201, published.text
    started = await client.http.post(f"{base}/v1/workflows/{key}/runs", headers=org.headers, json={
        "parameters": {"refunds": [{"guest": "g-1", "amount": 40}], "boss": org.owner_user_id}})
    assert started.status_code == 201, started.text
    run_id: str = started.json()["id"]
    return run_id


async def tasks_of(client: PricingClient, org: OrgHandle, run_id: str, step: str, *, status: str,
                   timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = [t for t in await client.run_tasks(org, run_id) if t["workflow_step"] == step]
        if found and found[-1]["status"] == status:
            return found[-1]
        await asyncio.sleep(0.2)
    raise AssertionError(f"the {step} task of run {run_id} is not {status} after {timeout_s:.0f}s: {found}")


def log_of(run: dict[str, Any]) -> str:
    return "\n".join(f"{e['actor']}: {e['message']}" for e in run["log"])


async def test_a_timed_out_task_is_withdrawn_and_an_undecided_decision_is_taken_by_its_deadline(
    pricing: PricingClient, org: OrgHandle
) -> None:
    run_id = await publish_and_start(pricing, org, [
        {"name": "call", "type": "task", "task_type": "manual", "title": "Call the guest", "role_id": NOBODY,
         "timeout": "PT1S", "on_timeout": {"goto": "approve"}},
        decision(deadline="PT2S", default_action="approve"),
    ])

    run = await pricing.wait_until(org, run_id, statuses=frozenset({"completed"}), timeout_s=90)

    assert run["result"] == {"outcome": "approved", "by": "deadline"}
    assert run["steps"]["call"]["status"] == "timed_out"
    log = log_of(run)
    assert "step call timed out after PT1S; going on at approve" in log
    assert "deadline: step approve: the deadline (PT2S) passed undecided; default action: approve" in log
    call = await tasks_of(pricing, org, run_id, "call", status="cancelled")
    assert call["status_reason"] == "step call timed out"
    approve = await tasks_of(pricing, org, run_id, "approve", status="cancelled")
    assert approve["status_reason"] == "the deadline of approve passed"
    assert approve["due_at"] is not None


async def test_an_undecided_decision_is_escalated_to_the_owner_who_sees_it_due_and_decides(
    pricing: PricingClient, org: OrgHandle
) -> None:
    run_id = await publish_and_start(pricing, org, [decision(
        deadline="PT10M", escalate_after="PT1S", escalate_to={"user_id": "${params.boss}"}, default_action="reject")])
    queued = await tasks_of(pricing, org, run_id, "approve", status="pending")
    assert queued["assigned_to"] is None

    task = await pricing.decision_task(org, run_id, timeout_s=60)  # in the owner's inbox once escalated

    assert task["assigned_to"] == org.owner_user_id
    due = datetime.fromisoformat(task["due_at"]) - datetime.fromisoformat(task["created_at"])
    assert 9 * 60 < due.total_seconds() <= 10 * 60
    await pricing.decide(org, task["id"], "approved", "fine")
    run = await pricing.wait_until(org, run_id, statuses=frozenset({"completed"}), timeout_s=60)
    assert run["result"] == {"outcome": "approved", "by": org.owner_user_id}
    assert f"not decided within PT1S: escalated to {org.owner_user_id}" in log_of(run)
    notices = [t for t in await pricing.run_tasks(org, run_id) if t["workflow_step"] == "escalation"]
    assert [(t["data"]["action"], t["data"]["user_id"]) for t in notices] == [("notify", org.owner_user_id)]


async def test_an_escalation_that_adds_a_reviewer_keeps_the_queue_and_the_reviewer_decides(
    pricing: PricingClient, org: OrgHandle
) -> None:
    run_id = await publish_and_start(pricing, org, [decision(
        deadline="PT10M", escalate_after="PT1S", escalate_to={"user_id": "${params.boss}", "mode": "add_reviewer"},
        default_action="reject")])

    task = await pricing.decision_task(org, run_id, timeout_s=60)  # in the owner's inbox as a reviewer

    assert task["assigned_to"] is None and task["role_id"] == NOBODY, "the assignee (its queue) stays"
    assert task["reviewers"] == [org.owner_user_id]
    await pricing.decide(org, task["id"], "approved", "as reviewer")
    run = await pricing.wait_until(org, run_id, statuses=frozenset({"completed"}), timeout_s=60)
    assert run["result"] == {"outcome": "approved", "by": org.owner_user_id}
    assert f"escalated to {org.owner_user_id} as a second reviewer (the assignee keeps it)" in log_of(run)
    notices = [t for t in await pricing.run_tasks(org, run_id) if t["workflow_step"] == "escalation"]
    assert [(t["data"]["action"], t["data"]["user_id"]) for t in notices] == [("notify", org.owner_user_id)]
    assert "added as a reviewer" in notices[0]["data"]["body"]
