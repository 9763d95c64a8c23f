"""The durable-timer loop: fire due timers by the database clock, then sleep until
the next one is due (at most a second, so timers set meanwhile are not late). The
waiting and the restarts are the kit's loop helper (`stayops_kit.loops`)."""

from __future__ import annotations

import logging

from stayops_kit.loops import Backoff, Wakeup, run_loop
from stayops_kit.runtime import ServiceRuntime
from workflow_service import handlers, store

log = logging.getLogger(__name__)

MAX_SLEEP_S = 1.0
MIN_SLEEP_S = 0.02


async def fire_timers(runtime: ServiceRuntime) -> None:
    async def one_pass() -> float:
        while True:
            async with runtime.uow.begin() as uow:
                fired = await handlers.fire_due_timers(uow, runtime.results)
            if not fired:
                break
        async with runtime.engine.connect() as conn:
            next_in = await store.seconds_to_next_timer(conn)
        return MAX_SLEEP_S if next_in is None else min(max(next_in, MIN_SLEEP_S), MAX_SLEEP_S)

    # No LISTEN channel: timers are set in this service's own transactions, and the
    # one-second bound is the promise (a wake-up channel can be added here).
    wakeup = Wakeup(None, [], stop=runtime.stopping)
    await run_loop("timers", one_pass, wakeup, runtime.stopping, runtime.loop_health(fire_timers.__name__),
                   Backoff(MAX_SLEEP_S, 10.0))
