"""Keep the services running: restart one that dies, with backoff, until asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from stayops_infra.services import ServiceProcess

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
# A service that stayed up this long is healthy again: its next crash restarts quickly.
STABLE_AFTER_S = 60.0
CHECK_INTERVAL_S = 0.5


@dataclass
class _Watch:
    process: ServiceProcess
    started_at: float
    backoff_s: float = FIRST_BACKOFF_S
    restart_at: float | None = None


class Supervisor:
    """Watches service processes; `run` returns when `stop` is set, after stopping them."""

    def __init__(
        self,
        processes: list[ServiceProcess],
        report: Callable[[str], None],
        terminate_timeout_s: float = 15,
    ) -> None:
        self.processes = processes
        self.report = report
        self.terminate_timeout_s = terminate_timeout_s

    def start_all(self) -> None:
        for process in self.processes:
            process.start()

    async def run(self, stop: asyncio.Event) -> None:
        now = time.monotonic()
        watches = [_Watch(process, now) for process in self.processes]
        try:
            while not stop.is_set():
                self._check(watches, time.monotonic())
                # Wake on stop or after the check interval, whichever comes first.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), CHECK_INTERVAL_S)
        finally:
            await self.stop_all()

    async def stop_all(self) -> None:
        """Terminate every service at once, so the slowest sets the shutdown time."""
        await asyncio.gather(*(asyncio.to_thread(p.terminate, self.terminate_timeout_s) for p in self.processes))

    def _check(self, watches: list[_Watch], now: float) -> None:
        for watch in watches:
            process = watch.process
            if process.is_alive():
                if now - watch.started_at >= STABLE_AFTER_S:
                    watch.backoff_s = FIRST_BACKOFF_S
                continue
            if watch.restart_at is None:
                watch.restart_at = now + watch.backoff_s
                self.report(
                    f"{process.name} exited with code {process.returncode}; restarting in {watch.backoff_s:.0f}s"
                )
                watch.backoff_s = min(watch.backoff_s * 2, MAX_BACKOFF_S)
            elif now >= watch.restart_at:
                watch.restart_at = None
                watch.started_at = now
                process.start()
