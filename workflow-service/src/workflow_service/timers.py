"""The durable-timer loop: fire due timers by the database clock, then sleep until
the next one is due (at most a second, so timers set meanwhile are not late)."""

from __future__ import annotations

import asyncio
import logging

from stayops_kit.runtime import ServiceRuntime
from workflow_service import handlers, store

log = logging.getLogger(__name__)

MAX_SLEEP_S = 1.0
MIN_SLEEP_S = 0.02


async def fire_timers(runtime: ServiceRuntime) -> None:
    while True:
        try:
            async with runtime.uow.begin() as uow:
                fired = await handlers.fire_due_timers(uow)
            if fired:
                continue
            async with runtime.engine.connect() as conn:
                next_in = await store.seconds_to_next_timer(conn)
            await asyncio.sleep(MAX_SLEEP_S if next_in is None else min(max(next_in, MIN_SLEEP_S), MAX_SLEEP_S))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("firing timers failed; trying again in %.0fs", MAX_SLEEP_S)
            await asyncio.sleep(MAX_SLEEP_S)
