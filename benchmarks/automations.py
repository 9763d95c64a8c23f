"""Event-automation benchmark: 1,000 reservations across 20 orgs arriving at once on
`sync.airbnb`, each org with the seeded "guest welcome and cleaning" automation, on
one embedded PostgreSQL and Apache Kafka with the four services. Prints p50/p99 time
from a reservation's publication until both its tasks exist in task-service, and the
events per second automation-service fired.

    python benchmarks/automations.py [--orgs 20] [--reservations 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
import uuid
from typing import Any

import httpx

from stayops_infra import simulate
from stayops_infra.automations import reservation_guest_welcome_and_cleaning
from stayops_infra.orgsim import OrgRegistry, seed_solo
from stayops_infra.system import ephemeral_system
from stayops_schemas.envelope import Envelope


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def linked_tasks(http: httpx.AsyncClient, url: str, token: str) -> dict[str, list[dict[str, Any]]]:
    """The org's tasks by the reservation they are linked to."""
    found: dict[str, list[dict[str, Any]]] = {}
    params: dict[str, Any] = {"limit": 200}
    while True:
        response = await http.get(f"{url}/v1/tasks", params=params, headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        page = response.json()
        for task in page["items"]:
            if task["data"].get("link"):
                found.setdefault(task["data"]["link"], []).append(task)
        if page["next_cursor"] is None:
            return found
        params = {"limit": 200, "cursor": page["next_cursor"]}


async def main(args: argparse.Namespace) -> None:
    async with ephemeral_system(say, prefix="stayops-bench-", allow_tansu=False) as (stack, system):
        registry = OrgRegistry(system.work_dir / "orgs.json")
        async with httpx.AsyncClient(timeout=30) as http:
            orgs = []
            for _ in range(args.orgs):
                seeded = (await seed_solo(stack.broker.bootstrap, stack.keys, registry)).as_json()
                response = await http.post(
                    f"{system.url('automation-service')}/v1/automations",
                    json=reservation_guest_welcome_and_cleaning(seeded),
                    headers={"Authorization": f"Bearer {seeded['tokens']['owner']}"})
                response.raise_for_status()
                seeded["automation_id"] = response.json()["id"]
                orgs.append(seeded)
            now = dt.datetime.now(dt.UTC)
            envelopes: list[Envelope] = []
            for i in range(args.reservations):
                org = orgs[i % len(orgs)]
                stay = simulate.SimulatedStay(
                    org_id=org["org_id"], listing_id=org["listing_ids"][i % 2],
                    reservation_id=f"bench-{uuid.uuid4().hex[:12]}",
                    check_in=now.date() + dt.timedelta(days=7 + i % 60), nights=2 + i % 4)
                envelopes += simulate.airbnb_reservation(stay, change=False, cancel=False, now=now)
            say(f"publishing {len(envelopes)} reservations across {len(orgs)} orgs at once")
            published_at = time.time()
            await simulate.publish(stack.broker.bootstrap, envelopes)
            say(f"published in {time.time() - published_at:.2f}s; waiting for every task")
            expected = {e.data["reservation_id"] for e in envelopes}
            done: dict[str, float] = {}
            deadline = time.time() + args.timeout
            waiting = list(orgs)
            while waiting and time.time() < deadline:
                # Looked at every 2 s, and only where tasks are missing: the reading
                # shares the two cores with what it measures.
                await asyncio.sleep(2)
                for org in list(waiting):
                    tasks = await linked_tasks(http, system.url("task-service"), org["tokens"]["owner"])
                    for link, linked in tasks.items():
                        if link in expected and len(linked) >= 2 and link not in done:
                            done[link] = max(dt.datetime.fromisoformat(t["created_at"]).timestamp()
                                             for t in linked)
                    if all(e.data["reservation_id"] in done for e in envelopes
                           if e.orgid == org["org_id"]):
                        waiting.remove(org)
            fired: list[float] = []
            for org in orgs:
                response = await http.get(
                    f"{system.url('automation-service')}/v1/automations/{org['automation_id']}/executions",
                    params={"limit": 500}, headers={"Authorization": f"Bearer {org['tokens']['owner']}"})
                response.raise_for_status()
                fired += [dt.datetime.fromisoformat(e["finished_at"]).timestamp()
                          for e in response.json()["items"] if e["finished_at"]]
    latencies = [at - published_at for at in done.values()]
    span = max(done.values()) - published_at
    print()
    print(f"reservations: {len(expected)} across {args.orgs} orgs, 2 tasks each; "
          f"{len(done)} complete")
    print(f"publication -> both tasks exist   p50 {percentile(latencies, 0.5):.2f}s   "
          f"p99 {percentile(latencies, 0.99):.2f}s   (all in {span:.1f}s)")
    fired_span = max(fired) - published_at
    print(f"automation-service fired          {len(fired)} executions in {fired_span:.1f}s: "
          f"{len(fired) / fired_span:.0f} events/s")
    print(f"end to end (both tasks exist)     {len(done) / span:.0f} reservations/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orgs", type=int, default=20)
    parser.add_argument("--reservations", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600)
    asyncio.run(main(parser.parse_args()))
