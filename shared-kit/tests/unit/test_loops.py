"""The background-loop building block: a failing pass never ends a loop, a crashed
loop is restarted and its health says so, and a wait ends on a wake-up or stop."""

from __future__ import annotations

import asyncio

from stayops_kit.loops import Backoff, LoopHealth, Wakeup, run_loop, supervise


async def test_a_failing_pass_is_retried_and_the_loop_goes_on() -> None:
    stop = asyncio.Event()
    passes: list[int] = []
    health = LoopHealth("test")

    async def one_pass() -> float:
        passes.append(len(passes))
        if len(passes) <= 2:
            raise RuntimeError("the database went away")
        if len(passes) == 4:
            stop.set()
        return 0.0

    await asyncio.wait_for(run_loop("test", one_pass, Wakeup(None, [], stop=stop), stop, health,
                                    Backoff(0.01, 0.02)), 5)
    assert len(passes) == 4
    assert health.healthy and health.last_error is None


async def test_a_crashed_loop_is_restarted_with_its_health_reported() -> None:
    stop = asyncio.Event()
    runs: list[int] = []
    health = LoopHealth("test")
    seen_unhealthy: list[str | None] = []

    async def run() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"crash {len(runs)}")
        seen_unhealthy.append(health.last_error)
        stop.set()

    await asyncio.wait_for(supervise("test", run, stop, health, Backoff(0.01, 0.02)), 5)
    assert len(runs) == 3 and health.restarts == 2
    assert seen_unhealthy == ["RuntimeError: crash 2"]


async def test_a_loop_returning_before_stop_counts_as_a_crash() -> None:
    stop = asyncio.Event()
    health = LoopHealth("test")
    runs: list[int] = []

    async def run() -> None:
        runs.append(1)
        if len(runs) == 2:
            stop.set()

    await asyncio.wait_for(supervise("test", run, stop, health, Backoff(0.01, 0.02)), 5)
    assert health.restarts == 1


async def test_a_wait_ends_on_a_wake_up_or_stop_before_its_timeout() -> None:
    stop = asyncio.Event()
    wakeup = Wakeup(None, [], stop=stop)
    loop = asyncio.get_running_loop()
    started = loop.time()
    loop.call_later(0.05, wakeup.set)
    await wakeup.wait(10)
    loop.call_later(0.05, stop.set)
    await wakeup.wait(10)
    assert loop.time() - started < 2
