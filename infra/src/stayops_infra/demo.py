"""`stayops demo`: an ephemeral stack, a fresh solo org, the weekly dynamic-pricing
scenario run twice — approved by rule, then through the owner's decision over REST —
and a readable timeline of both runs. Exits 0 when both runs completed."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from stayops_infra.config import StackConfig, default_kafka_cache
from stayops_infra.orgsim import OrgRegistry, publish_policy, seed_solo
from stayops_infra.ports import free_port, free_port_pair
from stayops_infra.scenario import OrgHandle, PricingClient, timeline
from stayops_infra.services import SERVICES
from stayops_infra.stack import EmbeddedStack
from stayops_infra.system import LocalSystem

# A threshold no change reaches approves by rule (unless the agent asks for review),
# once the org's policy lets rules approve that much (a run's threshold can only lower
# the org's); a threshold every change reaches sends the proposal to the owner.
BY_RULE_THRESHOLD_PCT = 1000.0
BY_OWNER_THRESHOLD_PCT = 0.0
RULES_APPROVE_ALL = {"pricing": {"approval_threshold_pct": 1000, "max_change_pct": 1000}}


async def run_demo(console: Console) -> int:
    with tempfile.TemporaryDirectory(prefix="stayops-demo-") as scratch:
        work = Path(scratch)
        config = StackConfig(data_dir=work / "data", pg_port=free_port(), kafka_port=free_port_pair(),
                             kafka_cache=default_kafka_cache())
        stack = EmbeddedStack(config, notify=lambda message: console.print(f"[bold]stack[/] {message}"))
        system: LocalSystem | None = None
        try:
            console.print("Starting an ephemeral PostgreSQL and Kafka...")
            await stack.start()

            async def database_url(name: str) -> str:
                return stack.postgres.url(name)

            system = LocalSystem(bootstrap=stack.broker.bootstrap, database_url=database_url,
                                 public_key_file=stack.keys.public_key, work_dir=work)
            console.print("Starting the four services and the sync simulator...")
            await system.start()
            seeded = await seed_solo(stack.broker.bootstrap, stack.keys, OrgRegistry(work / "orgs.json"))
            await publish_policy(stack.broker.bootstrap, seeded.org.org_id, RULES_APPROVE_ALL)
            org = OrgHandle.from_seed(seeded.as_json())
            console.print(f"Seeded a solo host: org {org.org_id}, listings {', '.join(org.listing_ids)}")
            urls = {spec.name: system.url(spec.name) for spec in SERVICES}
            async with httpx.AsyncClient(timeout=15) as http:
                client = PricingClient(urls, http)
                return await _two_runs(console, client, org)
        finally:
            if system is not None:
                await system.stop()
            stack.stop()


async def _two_runs(console: Console, client: PricingClient, org: OrgHandle) -> int:
    console.rule("Run 1: small changes, approved by rule")
    first = await client.start_run(org, threshold_pct=BY_RULE_THRESHOLD_PCT, monitor_days=0,
                                   idempotency_key=f"demo-rule-{org.org_id}")
    first_run = await client.wait_until(org, first, timeout_s=180)
    _print(console, first_run, await client.run_tasks(org, first), org.names)

    console.rule("Run 2: the owner decides over REST")
    second = await client.start_run(org, threshold_pct=BY_OWNER_THRESHOLD_PCT, monitor_days=0,
                                    idempotency_key=f"demo-owner-{org.org_id}")
    task = await client.decision_task(org, second, timeout_s=180)
    console.print(f"The owner's inbox has decision task {task['id']}: {task['title']}")
    await client.decide(org, task["id"], "approved", "Approved for the season (demo)")
    second_run = await client.wait_until(org, second, timeout_s=180)
    _print(console, second_run, await client.run_tasks(org, second), org.names)

    ok = first_run["status"] == "completed" and second_run["status"] == "completed"
    console.print("[green]Both runs completed.[/]" if ok else "[red]A run did not complete.[/]")
    return 0 if ok else 1


def _print(console: Console, run: dict[str, Any], tasks: list[dict[str, Any]], names: dict[str, str]) -> None:
    for line in timeline(run, tasks, names=names):
        console.print(line, highlight=False, markup=False)
