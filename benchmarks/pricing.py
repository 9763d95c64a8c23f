"""Pricing benchmark: `dynamic-pricing` started for 50 listings in 10 orgs at once
(5 listings an org, approval by rule, monitor_days 0) on one embedded PostgreSQL and
Apache Kafka with the four services and the sync simulator. Prints runs completed per
second and p50/p99 time from start to completion. Then the PropCo run: one
`portfolio-pricing` run over a property manager's 50 listings in 3 segments (luxury
10, standard 25, budget 15; three child runs at once), timed from start to the batch
review task in the revenue manager's inbox, and to completion once she approves every
segment (monitor_days 0).

    python benchmarks/pricing.py [--orgs 10] [--listings 5] [--propco-runs 1] [--only-propco]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import httpx

from stayops_infra.orgsim import OrgRegistry, publish_policy, seed_propco, seed_solo
from stayops_infra.scenario import OrgHandle, PricingClient
from stayops_infra.services import SERVICES
from stayops_infra.stack import EmbeddedStack
from stayops_infra.system import LocalSystem, ephemeral_system


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    async with ephemeral_system(say, prefix="stayops-bench-", allow_tansu=False) as (stack, system):
        registry = OrgRegistry(system.work_dir / "orgs.json")
        urls = {spec.name: system.url(spec.name) for spec in SERVICES}
        if args.only_propco:
            await propco_runs(args, stack, system, registry, urls)
            return
        orgs = []
        policies = []
        for _ in range(args.orgs):
            seeded = (await seed_solo(stack.broker.bootstrap, stack.keys, registry)).as_json()
            # Approval by rule: the org's policy lets a rule approve what the agent proposes.
            policies.append(await publish_policy(
                stack.broker.bootstrap, seeded["org_id"],
                {"pricing": {"approval_threshold_pct": 1000, "max_change_pct": 1000}}))
            seeded["listing_ids"] = [str(uuid.uuid4()) for _ in range(args.listings)]
            orgs.append(OrgHandle.from_seed(seeded))
        await asyncio.sleep(2)  # the directory events reach task-service and agent-service
        async with httpx.AsyncClient(timeout=30) as http:
            client = PricingClient(urls, http)
            for org, policy in zip(orgs, policies, strict=True):
                await client.policy_applied(org, policy)
            say(f"starting {args.orgs} runs ({args.orgs * args.listings} listings) at once")

            async def one(org: OrgHandle) -> float:
                started = time.perf_counter()
                run_id = await client.start_run(org, threshold_pct=1000, monitor_days=0)
                run = await client.wait_until(org, run_id, timeout_s=600)
                if run["status"] != "completed":
                    raise RuntimeError(f"run {run_id} ended {run['status']}")
                return time.perf_counter() - started

            began = time.perf_counter()
            durations = await asyncio.gather(*(one(org) for org in orgs))
            elapsed = time.perf_counter() - began
        report_dynamic(args, durations, elapsed)
        if args.propco_runs:
            await propco_runs(args, stack, system, registry, urls)


def report_dynamic(args: argparse.Namespace, durations: list[float], elapsed: float) -> None:
    print()
    print(f"runs: {len(durations)} ({args.orgs} orgs x {args.listings} listings, 90 nights each)")
    print(f"completed per second   {len(durations) / elapsed:.2f} runs/s  (all done in {elapsed:.1f}s)")
    print(f"start -> completion    p50 {percentile(durations, 0.5):.2f}s   p99 {percentile(durations, 0.99):.2f}s")
    print(flush=True)


async def propco_runs(args: argparse.Namespace, stack: EmbeddedStack, system: LocalSystem, registry: OrgRegistry,
                      urls: dict[str, str]) -> list[tuple[float, float]]:
    """One portfolio-pricing run per fresh PropCo org, one after the other: seconds
    from start to the batch review task, and to completion."""
    timings = []
    async with httpx.AsyncClient(timeout=30) as http:
        client = PricingClient(urls, http)
        for _ in range(args.propco_runs):
            seeded = (await seed_propco(stack.broker.bootstrap, stack.keys, registry,
                                        system.listing_profiles_file)).as_json()
            org = OrgHandle.from_seed(seeded)
            await asyncio.sleep(2)  # the directory events reach task-service and agent-service
            say("PropCo: one portfolio-pricing run over 50 listings in 3 segments")
            started = time.perf_counter()
            run_id = await client.start_portfolio(org, monitor_days=0)
            task = await client.batch_task(org, run_id, timeout_s=1200)
            to_review = time.perf_counter() - started
            await client.decide(org, task["id"], "approved", "all segments (benchmark)",
                                headers=org.headers_of("revenue-manager"))
            run = await client.wait_until(org, run_id, timeout_s=1200)
            if run["status"] != "completed":
                raise RuntimeError(f"run {run_id} ended {run['status']}")
            total = time.perf_counter() - started
            nights = sum(int(entry["nights"]) for entry in task["data"]["batch"])
            published = len(run["steps"]["publish"]["listings"])
            timings.append((to_review, total))
            print(f"PropCo run: {nights} nights of {published} listings published; start -> batch review "
                  f"{to_review:.1f}s, start -> completion {total:.1f}s (decided at once)", flush=True)
    return timings


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--listings", type=int, default=5)
    parser.add_argument("--propco-runs", type=int, default=1, help="PropCo portfolio runs after the others (0: none)")
    parser.add_argument("--only-propco", action="store_true", help="only the PropCo run(s)")
    asyncio.run(main(parser.parse_args()))
