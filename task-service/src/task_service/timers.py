"""The due-timer loop: fire the SLA stages due now (by the database clock), then
sleep until the next timer's fire time, a wake-up from a timer armed meanwhile
(PostgreSQL NOTIFY on `task_due_timers`) or the service's stop — never a busy loop.
The waiting, the re-LISTEN and the restarts are the kit's loop helper
(`stayops_kit.loops`), as for workflow-service's timers and automation-service's
scheduler."""

from __future__ import annotations

from stayops_kit.loops import Backoff, Wakeup, run_loop
from stayops_kit.runtime import ServiceRuntime
from task_service import handlers, store

# The longest sleep: bounds how late a timer fires if a wake-up is lost.
MAX_SLEEP_S = 30.0
# A due timer whose task another transaction holds is skipped: look again soon.
HELD_ELSEWHERE_S = 0.5
MIN_SLEEP_S = 0.02
BATCH = 20


async def fire_due_timers(runtime: ServiceRuntime) -> None:
    async def one_pass() -> float:
        while True:
            async with runtime.uow.begin() as uow:
                fired = await handlers.fire_due_timers(uow, BATCH)
            if fired < BATCH:
                break
        async with runtime.engine.connect() as conn:
            next_in = await store.seconds_to_next_timer(conn)
        if next_in is None:
            return MAX_SLEEP_S
        if next_in <= 0:
            return HELD_ELSEWHERE_S
        return min(max(next_in, MIN_SLEEP_S), MAX_SLEEP_S)

    wakeup = Wakeup(runtime.settings.database_url, [store.TIMER_CHANNEL], stop=runtime.stopping,
                    application_name="task-due-timers")
    await run_loop("due timers", one_pass, wakeup, runtime.stopping, runtime.loop_health(fire_due_timers.__name__),
                   Backoff(1.0, 30.0))
