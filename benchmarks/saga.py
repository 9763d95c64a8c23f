"""Saga benchmark: N runs at once of a 5-step workflow whose steps are automated
`noop` tasks, each a round trip across services (workflow-service requests the task
→ task-service creates and assigns it → automation-service does it → task-service
completes it → workflow-service takes the next step), on one embedded PostgreSQL and
Apache Kafka with the four services, as `benchmarks/pricing.py` starts them. Prints
runs completed per second and p50/p99 start → completion (the run's own
`started_at` → `updated_at`, the database's clock), and the CPU each part of the
system spent per step from the first start to the last completion (throughput on a
shared machine scatters with its load; CPU per step much less).

When DBOS is importable (`uv pip install dbos` into the venv; it is not a project
dependency), a DBOS 5-step workflow (five no-op steps, in one process) is measured in
the same run on the same embedded PostgreSQL, N at once, and printed beside it.

    python benchmarks/saga.py [--runs 200] [--warmup 100] [--dbos-runs 200]

The measured runs follow `--warmup` runs that are not measured (the broker's JVM
compiles its hot paths in its first minute; the services fill their pools and caches).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from stayops_infra.cpumeter import CpuMeter, cpu_spent
from stayops_infra.orgsim import OrgRegistry, seed_solo
from stayops_infra.postgres import create_database
from stayops_infra.scenario import OrgHandle
from stayops_infra.stack import EmbeddedStack
from stayops_infra.system import LocalSystem, ephemeral_system

KEY = "saga-bench"
STEPS = 5


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def definition() -> dict[str, Any]:
    return {"key": KEY, "name": "Five no-op steps", "steps": [
        {"name": f"step_{i}", "type": "task", "task_type": "automated", "assigned_to": "automation",
         "title": f"No-op {i}", "data": {"action": "noop", "echo": i}} for i in range(1, STEPS + 1)]}


async def finished_runs(http: httpx.AsyncClient, base: str, org: OrgHandle) -> list[dict[str, Any]]:
    """Every run of the benchmark's workflow that has ended, all pages."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"workflow_key": KEY, "status": ["completed", "failed", "needs_attention",
                                                                  "cancelled"], "limit": 200}
        if cursor:
            params["cursor"] = cursor
        response = await http.get(f"{base}/v1/runs", params=params, headers=org.headers)
        response.raise_for_status()
        page = response.json()
        found.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return found


async def run_all(http: httpx.AsyncClient, base: str, org: OrgHandle, runs: int) -> list[dict[str, Any]]:
    """Start `runs` runs at once and wait until each has ended; answers those runs."""

    async def start() -> str:
        response = await http.post(f"{base}/v1/workflows/{KEY}/runs", headers=org.headers, json={})
        response.raise_for_status()
        run_id: str = response.json()["id"]
        return run_id

    started = set(await asyncio.gather(*(start() for _ in range(runs))))
    deadline = time.monotonic() + 900
    done: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        done = [run for run in await finished_runs(http, base, org) if run["id"] in started]
        if len(done) >= len(started):
            break
        await asyncio.sleep(0.5)
    return done


async def stayops_saga(system: LocalSystem, stack: EmbeddedStack, work: Path, runs: int,
                       warmup: int = 0) -> tuple[float, list[float], dict[str, float]]:
    seeded = (await seed_solo(stack.broker.bootstrap, stack.keys, OrgRegistry(work / "orgs.json"))).as_json()
    org = OrgHandle.from_seed(seeded)
    await asyncio.sleep(2)  # the directory events reach task-service
    base = system.url("workflow-service")
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=50)) as http:
        published = await http.post(f"{base}/v1/workflows", headers=org.headers, json=definition())
        published.raise_for_status()
        if warmup:
            # The broker's JVM compiles its hot paths during its first minute, and
            # each service fills its pools and caches: those costs are not a step's.
            say(f"warming up: {warmup} runs, not measured")
            await run_all(http, base, org, warmup)
        say(f"starting {runs} runs of {STEPS} automated no-op tasks each")
        meter = CpuMeter(stack.config.data_dir, {"benchmark": os.getpid(), **{
            name: service.pid for name, service in system.processes.items() if service.pid is not None}})
        cpu_before = meter.sample()
        done = await run_all(http, base, org, runs)
        cpu = cpu_spent(cpu_before, meter.sample())
    if len(done) < runs:
        raise RuntimeError(f"only {len(done)} of {runs} runs ended within 900 s")
    not_completed = [r for r in done if r["status"] != "completed"]
    if not_completed:
        raise RuntimeError(f"{len(not_completed)} run(s) did not complete: {not_completed[0]}")
    starts = [datetime.fromisoformat(r["started_at"]) for r in done]
    ends = [datetime.fromisoformat(r["updated_at"]) for r in done]
    durations = [(end - begin).total_seconds() for begin, end in zip(starts, ends, strict=True)]
    return (max(ends) - min(starts)).total_seconds(), durations, cpu


async def dbos_saga(stack: EmbeddedStack, runs: int, warmup: int = 0) -> tuple[float, list[float]] | None:
    """A DBOS workflow of five no-op steps, `runs` at once (after `warmup` of them not
    measured), its system database on the same PostgreSQL; None when DBOS is not installed."""
    try:
        from dbos import DBOS
    except ImportError:
        say("DBOS is not installed (uv pip install dbos): its measurement is skipped")
        return None
    url = await create_database(stack.config.pg_port, "dbos_bench")
    DBOS(config={"name": "saga-bench", "system_database_url": url.replace("postgresql+asyncpg://", "postgresql://"),
                 "run_admin_server": False, "log_level": "WARNING"})

    @DBOS.step()
    async def noop(i: int) -> int:
        return i

    @DBOS.workflow()
    async def five_steps() -> int:
        total = 0
        for i in range(1, STEPS + 1):
            total += await noop(i)
        return total

    DBOS.launch()
    try:
        say(f"DBOS: {runs} workflows of {STEPS} no-op steps at once")

        async def one() -> float:
            began = time.perf_counter()
            handle = await DBOS.start_workflow_async(five_steps)
            await handle.get_result()
            return time.perf_counter() - began

        if warmup:
            say(f"DBOS: warming up, {warmup} workflows not measured")
            await asyncio.gather(*(one() for _ in range(warmup)))
        began = time.perf_counter()
        durations = await asyncio.gather(*(one() for _ in range(runs)))
        return time.perf_counter() - began, list(durations)
    finally:
        DBOS.destroy()
        # DBOS made its pool the loop's default executor and has shut it down.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())


def report(name: str, elapsed: float, durations: list[float]) -> None:
    print(f"{name:<44} {len(durations) / elapsed:8.1f} runs/s   p50 {percentile(durations, 0.5):6.2f}s   "
          f"p99 {percentile(durations, 0.99):6.2f}s   ({len(durations)} in {elapsed:.1f}s)")


async def main(args: argparse.Namespace) -> None:
    dbos: tuple[float, list[float]] | None = None
    async with ephemeral_system(say, prefix="stayops-bench-", allow_tansu=False) as (stack, system):
        elapsed, durations, cpu = await stayops_saga(system, stack, system.work_dir, args.runs, args.warmup)
        if args.dbos_runs:
            dbos = await dbos_saga(stack, args.dbos_runs, min(args.warmup, args.dbos_runs))
    print()
    report(f"StayOps saga, {STEPS} tasks across services", elapsed, durations)
    steps = args.runs * STEPS
    print("CPU per step (ms)  " + "   ".join(f"{part} {seconds / steps * 1e3:.1f}" for part, seconds in
                                            sorted(cpu.items(), key=lambda item: -item[1]))
          + f"   all {sum(cpu.values()) / steps * 1e3:.1f}")
    if dbos is not None:
        report(f"DBOS workflow, {STEPS} steps in one process", *dbos)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=100, help="runs before the measured ones (0: none)")
    parser.add_argument("--dbos-runs", type=int, default=200, help="0 skips DBOS")
    asyncio.run(main(parser.parse_args()))
