"""The scheduler: a background loop that fires due schedules, then sleeps until the
earliest next fire time (at most MAX_SLEEP_S), a wake-up from a changed schedule
(PostgreSQL NOTIFY) or the service's stop — never a busy loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from automation_service import handlers, store
from stayops_kit.db import asyncpg_dsn
from stayops_kit.outbox import UnitOfWorkFactory
from stayops_kit.runtime import ServiceRuntime

log = logging.getLogger(__name__)

# The longest sleep: bounds how late a schedule fires if a wake-up is lost.
MAX_SLEEP_S = 5.0
# When the earliest schedule is already due, another scheduler holds it: look again soon.
HELD_ELSEWHERE_S = 0.5
ERROR_BACKOFF_S = 2.0


class Scheduler:
    def __init__(self, uow: UnitOfWorkFactory, database_url: str) -> None:
        self._uow = uow
        self._database_url = database_url
        self._wakeup = asyncio.Event()
        self._listener: asyncpg.Connection | None = None

    async def run(self) -> None:
        try:
            while True:
                await self._ensure_listener()
                try:
                    sleep = await self.fire_due()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("scheduler: firing due automations failed; retrying in %.1fs",
                                  ERROR_BACKOFF_S)
                    sleep = ERROR_BACKOFF_S
                await self._wait(sleep)
        finally:
            if self._listener is not None and not self._listener.is_closed():
                with contextlib.suppress(Exception):
                    await self._listener.close()

    async def fire_due(self) -> float:
        """Fire everything due now; returns how long to sleep before looking again."""
        while True:
            async with self._uow.begin() as uow:
                claimed = await handlers.fire_due_automations(uow)
            if claimed < handlers.FIRE_BATCH:
                break
        async with self._uow.begin() as uow:
            seconds = await handlers.seconds_until_next_fire(uow)
        if seconds is None:
            return MAX_SLEEP_S
        if seconds <= 0:
            return HELD_ELSEWHERE_S
        return min(seconds, MAX_SLEEP_S)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()

    async def _ensure_listener(self) -> None:
        """(Re)open the LISTEN connection; without it the scheduler still looks every
        MAX_SLEEP_S."""
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            self._listener = await asyncpg.connect(asyncpg_dsn(self._database_url))
            await self._listener.add_listener(store.SCHEDULE_CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("scheduler: LISTEN connection failed (%s); looking every %.1fs", exc, MAX_SLEEP_S)
            self._listener = None

    def _on_notify(self, *_args: object) -> None:
        self._wakeup.set()


async def run_scheduler(runtime: ServiceRuntime) -> None:
    """The background loop of the service: runs until the service stops."""
    await Scheduler(runtime.uow, runtime.settings.database_url).run()
