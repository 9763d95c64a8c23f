"""The PropCo scenario end to end (issue 9): a property manager's 50 listings in three
segments priced by `portfolio-pricing` — a child run per segment (at most three at
once: sync, the AI's analysis, a segment summary), one batch review for the revenue
manager over every segment's proposal by reference, publish listing by listing,
monitor, performance review — over the real broker and the four services. Also with a
listing the platform refuses once, with the AI's analysis of one segment failing once,
and with every service SIGKILLed once mid-run. Reads the topics back: no record of the
run or its children is over 256 KB, and every listing is published exactly once."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from stayops_infra.orgsim import OrgRegistry, seed_propco
from stayops_infra.scenario import OrgHandle, PricingClient, record_size, records_of_runs, run_messages
from stayops_infra.services import SERVICES
from stayops_infra.system import LocalSystem

# 50 listings synced, priced 90 nights ahead and published take minutes on a loaded machine.
pytestmark = [pytest.mark.stack, pytest.mark.timeout(1500)]

MAX_RECORD_BYTES = 256 * 1024
RUN_TIMEOUT_S = 900
SEGMENTS = {"luxury": 10, "standard": 25, "budget": 15}


@pytest.fixture
async def pricing(system: LocalSystem) -> AsyncIterator[PricingClient]:
    async with httpx.AsyncClient(timeout=30) as http:
        yield PricingClient({spec.name: system.url(spec.name) for spec in SERVICES}, http)


@pytest.fixture
async def propco(system: LocalSystem, stack: Any, tmp_path: Path) -> OrgHandle:
    """`stayops seed propco`: its segments go to the simulators' listing profiles."""
    seeded = (await seed_propco(stack.kafka_bootstrap, stack.keys, OrgRegistry(tmp_path / "orgs.json"),
                                system.listing_profiles_file)).as_json()
    assert {segment: len(ids) for segment, ids in seeded["segments"].items()} == SEGMENTS
    assert seeded["users"]["guest_relations_agent"]["user_type"] == "ai_agent"
    return OrgHandle.from_seed(seeded)


def of_type(records: list[Any], suffix: str) -> list[dict[str, Any]]:
    """Each distinct event (by id: a record sent again after a crash counts once)."""
    seen: dict[str, dict[str, Any]] = {}
    for record in records:
        headers = dict(record.headers)
        if headers["ce_type"].decode().endswith(suffix):
            seen.setdefault(headers["ce_id"].decode(), json.loads(record.value))
    return list(seen.values())


async def family(pricing: PricingClient, org: OrgHandle, run_id: str) -> list[dict[str, Any]]:
    response = await pricing.http.get(f"{pricing.urls['workflow-service']}/v1/runs/{run_id}/children",
                                      headers=org.headers)
    assert response.status_code == 200, response.text
    children: list[dict[str, Any]] = response.json()["items"]
    return children


async def assert_small_and_published_once(system: LocalSystem, pricing: PricingClient, org: OrgHandle,
                                          run_id: str, listings: set[str]) -> dict[str, dict[str, Any]]:
    """No record of the run or its children over 256 KB; each of `listings` published
    exactly once, and no other. Returns the published prices by listing."""
    children = await family(pricing, org, run_id)
    records = await records_of_runs(system.bootstrap, {run_id, *(c["id"] for c in children)})
    largest = max(records, key=record_size)
    print(f"{len(records)} records of the run and its {len(children)} child runs; the largest: "
          f"{dict(largest.headers)['ce_type'].decode()}, {record_size(largest):,} bytes")
    assert record_size(largest) < MAX_RECORD_BYTES, dict(largest.headers)["ce_type"]
    updated = of_type(records, "price.updated")
    published = [u["listing_id"] for u in updated]
    assert sorted(published) == sorted(listings), "each approved listing published exactly once, no other"
    return {u["listing_id"]: u for u in updated}


async def nights_of(pricing: PricingClient, org: OrgHandle, entry: dict[str, Any]) -> list[dict[str, Any]]:
    return (await pricing.stored_result(org, entry["proposal_ref"]))["recommendations"]  # type: ignore[no-any-return]


async def test_the_revenue_manager_approves_two_segments_with_an_edit_and_exactly_those_are_published(
    system: LocalSystem, pricing: PricingClient, propco: OrgHandle
) -> None:
    run_id = await pricing.start_portfolio(propco)
    task = await pricing.batch_task(propco, run_id, timeout_s=RUN_TIMEOUT_S)
    rita = propco.headers_of("revenue-manager")
    agents = await pricing.http.get(f"{pricing.urls['agent-service']}/v1/agents", headers=propco.headers)
    assert {(a["role_id"], tuple(a["skills"])) for a in agents.json()["items"]} == {
        ("revenue-manager", ("pricing", "performance-review")), ("guest-relations", ("guest-welcome",))}, agents.text

    batch = {entry["segment"]: entry for entry in task["data"]["batch"]}
    assert sorted(batch) == sorted(SEGMENTS), "every segment in the one review task"
    assert all(entry["proposal_ref"]["service"] == "agent-service" for entry in batch.values())
    assert task["due_at"] is not None, "the review has a deadline"
    children = await family(pricing, propco, run_id)
    assert [c["workflow_key"] for c in children] == ["segment-pricing"] * 3
    budget = await nights_of(pricing, propco, batch["budget"])
    night = budget[0]
    price = str((Decimal(night["current_price"]) * Decimal("1.02")).quantize(Decimal("0.01")))
    edit = {"listing_id": night["listing_id"], "date": night["date"], "price": price}

    decision = f"{pricing.urls['task-service']}/v1/tasks/{task['id']}/decision"
    for changes, problem in [
        ({"segments": ["penthouses"]}, "'penthouses', not in the batch"),
        ({"segments": []}, "approve at least one segment"),
        ({"segments": ["luxury"], "prices": [edit]}, "which this decision does not approve"),
        ({"prices": [{**edit, "price": -5}]}, "is not a positive amount"),
        ({"prices": [{**edit, "date": "next tuesday"}]}, "is not a date"),
        ({"prices": [edit, edit]}, "edited twice"),
        ({"nights": []}, "changes.nights is not a batch decision's field"),
    ]:
        refused = await pricing.http.post(decision, json={"outcome": "approved", "changes": changes}, headers=rita)
        assert refused.status_code == 422, refused.text
        assert problem in refused.json()["detail"], refused.json()
    refused = await pricing.http.post(decision, json={"outcome": "rejected", "changes": {"segments": ["luxury"]}},
                                      headers=rita)
    assert refused.status_code == 422 and "takes no segments" in refused.json()["detail"]

    await pricing.decide(propco, task["id"], "approved", "Luxury and budget; one budget night up 2 %",
                         changes={"segments": ["luxury", "budget"], "prices": [edit]}, headers=rita)
    run = await pricing.wait_until(propco, run_id, timeout_s=RUN_TIMEOUT_S)

    assert run["status"] == "completed", run_messages(run)
    approved = set(batch["luxury"]["listing_ids"]) | set(batch["budget"]["listing_ids"])
    published = await assert_small_and_published_once(system, pricing, propco, run_id, approved)
    live = {p["date"]: p["price"] for p in published[edit["listing_id"]]["prices"]}
    assert Decimal(str(live[edit["date"]])) == Decimal(price), "the revenue manager's edit is live"
    listings = run["steps"]["publish"]["listings"]
    assert sorted(listings) == sorted(approved) and {o["status"] for o in listings.values()} == {"published"}
    assert run["steps"]["performance"]["status"] == "completed", run_messages(run)
    assert run["result"]["segments"] == ["luxury", "budget"]

    # The second AI agent does its own skill: a welcome for guests of a synced listing.
    tasks = f"{pricing.urls['task-service']}/v1/tasks"
    created = await pricing.http.post(tasks, headers=propco.headers, json={
        "title": "Draft the welcome for the Lisbon family", "task_type": "analysis", "role_id": "guest-relations",
        "data": {"skill": "guest-welcome", "listing_id": night["listing_id"], "guests": 4}})
    assert created.status_code == 201, created.text
    welcome: dict[str, Any] = {}
    for _ in range(150):
        welcome = (await pricing.http.get(f"{tasks}/{created.json()['id']}", headers=propco.headers)).json()
        if welcome["status"] in ("completed", "failed"):
            break
        await asyncio.sleep(0.2)
    assert welcome["status"] == "completed", welcome
    assert welcome["assignee_type"] == "ai_agent", welcome
    assert "party of 4" in welcome["result"]["message"]


async def test_a_listing_refused_once_is_retried_alone_and_a_failed_analysis_retries_only_its_segment(
    system: LocalSystem, pricing: PricingClient, propco: OrgHandle
) -> None:
    refused = propco.segments["standard"][3]
    with system.fail_listings_file.open("a") as fail:
        fail.write(f"{refused} 1\n")  # its first price update fails, the next succeeds
    flaky = propco.segments["budget"][0]
    with system.faults_file.open("a") as faults:
        faults.write(f"analysis {flaky} 1\n")  # the budget segment's first analysis fails

    run_id = await pricing.start_portfolio(propco)
    task = await pricing.batch_task(propco, run_id, timeout_s=RUN_TIMEOUT_S)
    assert sorted(e["segment"] for e in task["data"]["batch"]) == sorted(SEGMENTS), "the budget segment too"
    children = {c["parameters"]["segment"]: c for c in await family(pricing, propco, run_id)}
    for segment, child in children.items():
        detail = await pricing.run(propco, child["id"])
        attempts = detail["steps"]["analysis"]["attempt"]
        assert detail["status"] == "completed" and attempts == (2 if segment == "budget" else 1), run_messages(detail)
    assert "planned failure" in run_messages(await pricing.run(propco, children["budget"]["id"]))

    await pricing.decide(propco, task["id"], "approved", "All segments", headers=propco.headers_of("revenue-manager"))
    run = await pricing.wait_until(propco, run_id, timeout_s=RUN_TIMEOUT_S)

    assert run["status"] == "completed", run_messages(run)
    approved = {lid for entry in task["data"]["batch"] for lid in entry["listing_ids"]}
    await assert_small_and_published_once(system, pricing, propco, run_id, approved)
    listings = run["steps"]["publish"]["listings"]
    assert listings[refused] == {"status": "published", "attempt": 2}, listings[refused]
    assert {o["attempt"] for lid, o in listings.items() if lid != refused} == {1}, "the others stay published"
    assert f"1 failed: {refused}" in run_messages(run), run_messages(run)
    assert "publishing the other 1" in run_messages(run)


async def test_the_portfolio_run_survives_each_service_killed_once_mid_run(
    system: LocalSystem, pricing: PricingClient, propco: OrgHandle
) -> None:
    rng = random.Random()
    services = [spec.name for spec in SERVICES]
    rng.shuffle(services)
    before, after = services[:2], services[2:]
    kills: list[str] = []

    async def kill(service: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        system.kill(service)  # SIGKILL
        kills.append(f"{service} at +{delay_s:.1f}s")
        await asyncio.sleep(rng.uniform(0.5, 2))
        await system.restart(service)

    async def kill_in_turn(names: list[str], span_s: float) -> None:
        for name in names:
            await kill(name, rng.uniform(0.5, span_s))

    run_id = await pricing.start_portfolio(propco)
    # Two services die while the segments sync and are analysed...
    early = asyncio.create_task(kill_in_turn(before, 15))
    task = await pricing.batch_task(propco, run_id, timeout_s=RUN_TIMEOUT_S)
    await early
    await pricing.decide(propco, task["id"], "approved", "All segments", headers=propco.headers_of("revenue-manager"))
    # ... and the other two while the prices are published, monitored and reviewed.
    await kill_in_turn(after, 4)
    print("killed:", ", ".join(kills))
    run = await pricing.wait_until(propco, run_id, timeout_s=RUN_TIMEOUT_S)

    assert run["status"] == "completed", run_messages(run)
    assert len(kills) == 4
    approved = {lid for entry in task["data"]["batch"] for lid in entry["listing_ids"]}
    await assert_small_and_published_once(system, pricing, propco, run_id, approved)
    assert {o["status"] for o in run["steps"]["publish"]["listings"].values()} == {"published"}
