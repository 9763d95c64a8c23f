"""The weekly dynamic-pricing scenario end to end, over the real broker and the four
services' own databases, driven as the owner drives it: over REST."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest

from stayops_infra.orgsim import publish_policy
from stayops_infra.scenario import OrgHandle, PricingClient, run_messages, sources_of_run
from stayops_infra.system import LocalSystem

pytestmark = pytest.mark.stack

BY_RULE = 1000.0  # no change reaches it: approved by rule, if the org's policy allows
# A run's threshold can only lower the org's: an owner who lets rules approve any
# change the AI proposes says so in the org's policy.
RULES_APPROVE_ALL = {"pricing": {"approval_threshold_pct": 1000, "max_change_pct": 1000}}
BY_OWNER = 0.0  # every change reaches it: the owner decides


def by_action(tasks: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [t for t in tasks if (t.get("data") or {}).get("action") == action]


async def notifications(system: LocalSystem, org: OrgHandle) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{system.url('automation-service')}/v1/notifications", headers=org.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_small_changes_are_approved_by_rule_and_published(
    system: LocalSystem, pricing: PricingClient, org: OrgHandle
) -> None:
    await pricing.policy_applied(org, await publish_policy(system.bootstrap, org.org_id, RULES_APPROVE_ALL))
    run_id = await pricing.start_run(org, threshold_pct=BY_RULE, monitor_days=0)
    run = await pricing.wait_until(org, run_id, timeout_s=180)

    assert run["status"] == "completed", run_messages(run)
    assert "warning" not in run_messages(run).lower(), run_messages(run)  # every step did its work
    assert "rule" in run_messages(run).lower(), run_messages(run)
    tasks = await pricing.run_tasks(org, run_id)
    assert not [t for t in tasks if t["task_type"] == "decision"], "approved by rule: nobody was asked"
    analysis = next(t for t in tasks if t["task_type"] == "analysis" and t["data"].get("skill") == "pricing")
    assert analysis["assigned_to"] == org.agent_user_id and analysis["status"] == "completed"
    recommendation = analysis["result"]["recommendations"][0]
    assert {f["name"] for f in recommendation["factors"]} >= {"occupancy", "lead_time", "day_of_week", "season"}
    [publish] = by_action(tasks, "publish_prices")
    assert publish["status"] == "completed"
    assert await notifications(system, org), "the owner got a summary"

    sources = await sources_of_run(system.bootstrap, run_id)
    assert sources >= {"/workflow-service", "/task-service", "/automation-service", "/agent-service",
                       "/sync-airbnb"}, f"correlationid = run id in every service: {sources}"


async def test_big_changes_wait_for_the_owner_who_approves_an_edited_proposal(
    pricing: PricingClient, org: OrgHandle
) -> None:
    run_id = await pricing.start_run(org, threshold_pct=BY_OWNER, monitor_days=0)
    decision = await pricing.decision_task(org, run_id, timeout_s=180)
    first = (await pricing.proposal_of(org, decision))[0]
    # An edit the org's guardrails accept: 2 % over the night's current price.
    price = str((Decimal(first["current_price"]) * Decimal("1.02")).quantize(Decimal("0.01")))
    edited = {"listing_id": first["listing_id"], "date": first["date"], "price": price}

    await pricing.decide(org, decision["id"], "approved", f"Keep the first night at {price}", changes=[edited])
    run = await pricing.wait_until(org, run_id, timeout_s=180)

    assert run["status"] == "completed", run_messages(run)
    assert org.owner_user_id in run_messages(run), "the log says who approved"
    [publish] = by_action(await pricing.run_tasks(org, run_id), "publish_prices")
    # Inline, the publish step carries the prices; by reference, the owner's edits to the stored nights.
    published = {(p["listing_id"], p["date"]): p["price"]
                 for p in publish["data"].get("prices") or publish["data"]["price_edits"]}
    assert Decimal(str(published[(edited["listing_id"], edited["date"])])) == Decimal(price)


async def test_a_rejected_proposal_publishes_nothing(pricing: PricingClient, org: OrgHandle) -> None:
    run_id = await pricing.start_run(org, threshold_pct=BY_OWNER, monitor_days=0)
    decision = await pricing.decision_task(org, run_id, timeout_s=180)

    await pricing.decide(org, decision["id"], "rejected", "Not this week")
    run = await pricing.wait_until(org, run_id, timeout_s=180)

    assert run["status"] == "completed", run_messages(run)
    assert "reject" in run_messages(run).lower()
    assert by_action(await pricing.run_tasks(org, run_id), "publish_prices") == []


async def test_a_failed_price_update_compensates_and_tells_the_owner(
    system: LocalSystem, pricing: PricingClient, org: OrgHandle
) -> None:
    with system.fail_listings_file.open("a") as fail:
        fail.write(f"{org.listing_ids[0]}\n")
    await pricing.policy_applied(org, await publish_policy(system.bootstrap, org.org_id, RULES_APPROVE_ALL))
    run_id = await pricing.start_run(org, threshold_pct=BY_RULE, monitor_days=0)
    run = await pricing.wait_until(org, run_id, statuses=frozenset({"failed"}), timeout_s=180)

    assert "compensat" in run_messages(run).lower(), run_messages(run)
    tasks = await pricing.run_tasks(org, run_id)
    [publish] = by_action(tasks, "publish_prices")
    assert publish["status"] == "failed"
    assert [t for t in by_action(tasks, "notify") if t["status"] == "completed"], "the owner was told"
    assert await notifications(system, org), "the owner was told"


async def test_a_run_waiting_for_a_decision_survives_a_killed_workflow_service(
    system: LocalSystem, pricing: PricingClient, org: OrgHandle
) -> None:
    run_id = await pricing.start_run(org, threshold_pct=BY_OWNER, monitor_days=0)
    decision = await pricing.decision_task(org, run_id, timeout_s=180)

    system.kill("workflow-service")  # SIGKILL while the run waits for the owner
    await pricing.decide(org, decision["id"], "approved", "Approved while the workflow engine was down")
    await system.restart("workflow-service")
    run = await pricing.wait_until(org, run_id, timeout_s=180)

    assert run["status"] == "completed", run_messages(run)
    tasks = await pricing.run_tasks(org, run_id)
    assert len(by_action(tasks, "publish_prices")) == 1, "the decision moved the run on exactly once"
    assert len(by_action(tasks, "notify")) == 1
    assert sum("completed" in e["message"].lower() for e in run["log"] if e["actor"] != "rule") >= 1


async def test_two_orgs_run_at_once_without_seeing_each_other(
    pricing: PricingClient, org: OrgHandle, stack: Any, tmp_path: Any
) -> None:
    from stayops_infra.orgsim import OrgRegistry, seed_solo

    other = OrgHandle.from_seed((await seed_solo(stack.kafka_bootstrap, stack.keys,
                                                 OrgRegistry(tmp_path / "other.json"))).as_json())
    mine, theirs = await asyncio.gather(
        pricing.start_run(org, threshold_pct=BY_OWNER, monitor_days=0),
        pricing.start_run(other, threshold_pct=BY_OWNER, monitor_days=0),
    )
    my_decision, their_decision = await asyncio.gather(
        pricing.decision_task(org, mine, timeout_s=180), pricing.decision_task(other, theirs, timeout_s=180)
    )

    async with httpx.AsyncClient(timeout=10) as http:
        crossed = await http.get(f"{pricing.urls['workflow-service']}/v1/runs/{theirs}", headers=org.headers)
        assert crossed.status_code == 404
        crossed_task = await http.get(f"{pricing.urls['task-service']}/v1/tasks/{their_decision['id']}",
                                      headers=org.headers)
        assert crossed_task.status_code == 404
        inbox = await http.get(f"{pricing.urls['task-service']}/v1/inbox", headers=org.headers)
        assert {t["org_id"] for t in inbox.json()["items"]} == {org.org_id}
    assert my_decision["org_id"] == org.org_id and their_decision["org_id"] == other.org_id

    await asyncio.gather(pricing.decide(org, my_decision["id"], "approved", "mine"),
                         pricing.decide(other, their_decision["id"], "rejected", "theirs"))
    my_run, their_run = await asyncio.gather(pricing.wait_until(org, mine, timeout_s=180),
                                             pricing.wait_until(other, theirs, timeout_s=180))
    assert my_run["status"] == their_run["status"] == "completed"
    assert by_action(await pricing.run_tasks(org, mine), "publish_prices")
    assert not by_action(await pricing.run_tasks(other, theirs), "publish_prices")


TIMED = {
    "key": "timed-follow-up",
    "name": "Follow up after a pause",
    "parameters": {"type": "object", "required": ["owner"], "properties": {"owner": {"type": "string"}}},
    "steps": [
        {"name": "pause", "type": "wait", "duration": "PT4S"},
        {"name": "follow_up", "type": "task", "task_type": "automated", "assigned_to": "automation",
         "title": "Follow up",
         "data": {"action": "notify", "user_id": "${params.owner}", "subject": "Follow-up",
                  "body": "The pause is over"}},
    ],
}


async def test_a_durable_timer_fires_after_the_workflow_service_restarts(
    system: LocalSystem, pricing: PricingClient, org: OrgHandle
) -> None:
    workflows = pricing.urls["workflow-service"]
    created = await pricing.http.post(f"{workflows}/v1/workflows", json=TIMED, headers=org.headers)
    assert created.status_code == 201, created.text
    started = await pricing.http.post(f"{workflows}/v1/workflows/timed-follow-up/runs",
                                      json={"parameters": {"owner": org.owner_user_id}}, headers=org.headers)
    run_id = started.json()["id"]
    await pricing.wait_until(org, run_id, statuses=frozenset({"waiting"}), step="pause", timeout_s=60)

    system.kill("workflow-service")  # down across the due time: the timer is in its database
    await asyncio.sleep(5)
    await system.restart("workflow-service")
    run = await pricing.wait_until(org, run_id, timeout_s=60)

    assert run["status"] == "completed", run_messages(run)
    timer_lines = [e for e in run["log"] if e["actor"] == "timer"]
    assert len(timer_lines) == 1, "the timer fired once"
    assert len(await pricing.run_tasks(org, run_id)) == 1
