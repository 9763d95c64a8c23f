"""The one building block of every background loop (the relay, the scheduler, the
timers, the agents' work loop): wait on PostgreSQL NOTIFY, a poll interval or stop,
whichever comes first; LISTEN again after a lost connection; restart a crashed loop
with backoff; and say how each loop is doing, for `/readyz` and the metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from stayops_kit.db import asyncpg_dsn, session_settings

log = logging.getLogger(__name__)

# A dead client's session (and the advisory lock it holds) is noticed by the server
# in about idle + interval * count seconds, not the kernel's default two hours.
KEEPALIVE_SETTINGS = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}


async def connect_session(
    database_url: str, *, application_name: str, idle_session_timeout_s: float | None = None
) -> asyncpg.Connection:
    """A plain asyncpg session outside the pool (LISTEN, a session advisory lock),
    with TCP keepalives and the kit's timeouts; `idle_session_timeout_s` ends it
    server-side when its client stops talking."""
    settings = {**session_settings(), **KEEPALIVE_SETTINGS, "application_name": application_name}
    if idle_session_timeout_s is not None:
        settings["idle_session_timeout"] = str(int(idle_session_timeout_s * 1000))
    return await asyncpg.connect(asyncpg_dsn(database_url), server_settings=settings, timeout=10)


class Wakeup:
    """LISTEN on some channels, with the poll interval as the fallback. `wait`
    returns on a notification, after `seconds`, on `set()` or when `stop` is set.

    A NOTIFY is a hint, never the only trigger: when the LISTEN session is lost,
    `wait` opens it again and returns at once (notifications sent meanwhile are
    lost, so the caller looks now); when it cannot be opened, the poll interval
    still wakes the caller."""

    def __init__(
        self,
        database_url: str | None,
        channels: Sequence[str],
        *,
        stop: asyncio.Event,
        application_name: str = "stayops-listener",
    ) -> None:
        self._database_url = database_url
        self._channels = tuple(channels)
        self._stop = stop
        self._application_name = application_name
        self._event = asyncio.Event()
        self._listener: asyncpg.Connection | None = None

    def set(self) -> None:
        self._event.set()

    def take(self) -> bool:
        """Whether a notification (or `set()`) came since the last `wait` or `take`;
        clears it. A loop that takes one before it looks may look again at once
        instead of finishing its pass and waiting."""
        was_set = self._event.is_set()
        self._event.clear()
        return was_set

    @property
    def listening(self) -> bool:
        return self._listener is not None and not self._listener.is_closed()

    async def wait(self, seconds: float) -> None:
        if self._stop.is_set():
            return
        if self._channels and self._database_url and not self.listening and await self._listen():
            return  # (re)connected: whatever was notified meanwhile is lost, look now
        stop_wait = asyncio.ensure_future(self._stop.wait())
        event_wait = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({stop_wait, event_wait}, timeout=max(seconds, 0.0),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
            event_wait.cancel()
        self._event.clear()

    async def _listen(self) -> bool:
        assert self._database_url is not None
        await self.close()
        try:
            listener = await connect_session(self._database_url, application_name=self._application_name)
            for channel in self._channels:
                await listener.add_listener(channel, self._on_notify)
            listener.add_termination_listener(self._on_terminated)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("LISTEN %s failed (%s); polling meanwhile", ",".join(self._channels), exc)
            return False
        self._listener = listener
        return True

    def _on_notify(self, *_args: object) -> None:
        self._event.set()

    def _on_terminated(self, _conn: object) -> None:
        self._event.set()  # wait() notices the lost session and listens again

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.close(), 5)


@dataclass
class LoopHealth:
    """How one background loop is doing: seen by `/readyz` and `stayops_loop_up`."""

    name: str
    running: bool = False
    last_error: str | None = None
    restarts: int = 0
    last_pass_at: float | None = None  # time.monotonic() of the last pass that succeeded

    def ok(self) -> None:
        self.running = True
        self.last_error = None
        self.last_pass_at = time.monotonic()

    def failed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"

    @property
    def healthy(self) -> bool:
        return self.running and self.last_error is None


@dataclass
class Backoff:
    first_s: float = 0.5
    max_s: float = 10.0
    _next: float = field(default=0.0, init=False)

    def reset(self) -> None:
        self._next = self.first_s

    def next(self) -> float:
        delay = self._next or self.first_s
        self._next = min(delay * 2, self.max_s)
        return delay


Pass = Callable[[], Awaitable[float]]


async def run_loop(
    name: str,
    one_pass: Pass,
    wakeup: Wakeup,
    stop: asyncio.Event,
    health: LoopHealth | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Run `one_pass` until `stop`; it returns how long to wait before the next pass
    (a NOTIFY may come sooner). A pass that raises is logged, recorded in `health`
    and tried again after a growing pause; it never ends the loop."""
    health = health or LoopHealth(name)
    backoff = backoff or Backoff()
    backoff.reset()
    try:
        while not stop.is_set():
            try:
                wait_s = await one_pass()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                wait_s = backoff.next()
                health.failed(exc)
                log.exception("%s: a pass failed; trying again in %.1fs", name, wait_s)
            else:
                backoff.reset()
                health.ok()
            await wakeup.wait(wait_s)
    finally:
        await wakeup.close()


async def supervise(
    name: str,
    run: Callable[[], Coroutine[Any, Any, None]],
    stop: asyncio.Event,
    health: LoopHealth | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Keep a loop running until `stop`: a crash (the broker unreachable at start, a
    bug outside a pass) is logged, counted, and the loop started again after a pause."""
    health = health or LoopHealth(name)
    backoff = backoff or Backoff()
    while not stop.is_set():
        try:
            health.running = True
            await run()
            if stop.is_set():
                return
            raise RuntimeError(f"{name} returned before the service stopped")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            health.running = False
            health.failed(exc)
            health.restarts += 1
            delay = backoff.next()
            log.exception("%s crashed; restarting in %.1fs", name, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        finally:
            health.running = False
