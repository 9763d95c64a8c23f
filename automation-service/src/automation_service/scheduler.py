"""The scheduler: a background loop that fires due schedules (and fails the runs
asked for a day ago that no run ever answered), then sleeps until the
earliest next fire time (at most MAX_SLEEP_S), a wake-up from a changed schedule
(PostgreSQL NOTIFY) or the service's stop — never a busy loop. The waiting, the
re-LISTEN and the restarts are the kit's loop helper (`stayops_kit.loops`)."""

from __future__ import annotations

import logging

from automation_service import handlers, store
from stayops_kit.loops import Backoff, Wakeup, run_loop
from stayops_kit.outbox import UnitOfWorkFactory
from stayops_kit.runtime import ServiceRuntime

log = logging.getLogger(__name__)

# The longest sleep: bounds how late a schedule fires if a wake-up is lost.
MAX_SLEEP_S = 5.0
# When the earliest schedule is already due, another scheduler holds it: look again soon.
HELD_ELSEWHERE_S = 0.5
ERROR_BACKOFF_S = 2.0


class Scheduler:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def fire_due(self) -> float:
        """Fire everything due now; returns how long to sleep before looking again."""
        while True:
            async with self._uow.begin() as uow:
                claimed = await handlers.fire_due_automations(uow)
            if claimed < handlers.FIRE_BATCH:
                break
        async with self._uow.begin() as uow:
            await handlers.fail_unanswered_runs(uow)
        async with self._uow.begin() as uow:
            seconds = await handlers.seconds_until_next_fire(uow)
        if seconds is None:
            return MAX_SLEEP_S
        if seconds <= 0:
            return HELD_ELSEWHERE_S
        return min(seconds, MAX_SLEEP_S)


async def run_scheduler(runtime: ServiceRuntime) -> None:
    """The background loop of the service: runs until the service stops."""
    wakeup = Wakeup(runtime.settings.database_url, [store.SCHEDULE_CHANNEL], stop=runtime.stopping,
                    application_name="stayops-scheduler")
    await run_loop("scheduler", Scheduler(runtime.uow).fire_due, wakeup, runtime.stopping,
                   runtime.loop_health(run_scheduler.__name__), Backoff(ERROR_BACKOFF_S, 30.0))
