"""Everything one running service holds, wired once at start-up and stopped in
reverse order: engine, producer, outbox relay, inbox consumer, background loops."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from stayops_kit.auth import JwtVerifier
from stayops_kit.claims import ResultReader, result_reader
from stayops_kit.clock import Clock, IdFactory, SystemClock, new_id
from stayops_kit.consumer import InboxConsumer, Subscriptions
from stayops_kit.db import create_engine
from stayops_kit.kafka import create_producer
from stayops_kit.loops import LoopHealth, supervise
from stayops_kit.metrics import Metrics
from stayops_kit.migrations import upgrade_head
from stayops_kit.outbox import UnitOfWorkFactory
from stayops_kit.relay import OutboxRelay, RelayConfig
from stayops_kit.settings import ServiceSettings
from stayops_schemas.catalog import CONSUMER_GROUPS, replay_topic

log = logging.getLogger(__name__)

BackgroundLoop = Callable[["ServiceRuntime"], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ServiceSpec:
    """What makes one service: its name, its migrations, its event handlers and
    its long-running loops (timers, schedulers). Routes are added by the app."""

    name: str
    migrations_dir: Path
    subscriptions: Subscriptions = field(default_factory=Subscriptions)
    background: tuple[BackgroundLoop, ...] = ()


class ServiceRuntime:
    def __init__(
        self,
        spec: ServiceSpec,
        settings: ServiceSettings,
        *,
        clock: Clock | None = None,
        ids: IdFactory = new_id,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.clock = clock or SystemClock()
        self.ids = ids
        self.metrics = Metrics()
        self.verifier = JwtVerifier(
            settings.public_key_pem(),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            algorithms=settings.jwt_algorithms,
        )
        self.engine: AsyncEngine = create_engine(settings.database_url)
        # The consumer's hot path skips the pre-ping round trip (a lost connection
        # fails the batch as "database unavailable" and it is fetched again).
        self.consumer_engine: AsyncEngine = create_engine(settings.database_url, pool_size=5,
                                                          pre_ping=False)
        self.uow = UnitOfWorkFactory(self.engine, f"/{spec.name}", self.clock, ids)
        self.results: ResultReader = result_reader(settings)
        self._producer: AIOKafkaProducer | None = None
        self._relay: OutboxRelay | None = None
        self._consumer: InboxConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.loops: dict[str, LoopHealth] = {}

    def loop_health(self, name: str) -> LoopHealth:
        """The health record of a background loop, reported by /readyz and the metrics."""
        if name not in self.loops:
            health = self.loops[name] = LoopHealth(name)
            self.metrics.loop_up.labels(name).set_function(lambda: float(health.healthy))
            self.metrics.loop_restarts.labels(name).set_function(lambda: float(health.restarts))
        return self.loops[name]

    def relay_state(self) -> str:
        """"ok" while the outbox relay runs and its last pass succeeded, else why not."""
        health = self.loops.get("outbox relay")
        if health is None or not health.running:
            reason = health.last_error if health is not None else None
            return f"unavailable: not running{f' ({reason})' if reason else ''}"
        if health.last_error is not None:
            return f"unavailable: {health.last_error}"
        return "ok"

    @property
    def stopping(self) -> asyncio.Event:
        """Set when the service stops: background loops return when they see it."""
        return self._stopping

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError(f"{self.spec.name} is not started: the Kafka producer is made in start()")
        return self._producer

    def _build_messaging(self) -> tuple[AIOKafkaProducer, OutboxRelay, InboxConsumer]:
        """Kafka clients need the running loop, so they are made in start()."""
        settings = self.settings
        producer = create_producer(settings.kafka_bootstrap_servers, client_id=self.spec.name)
        relay = OutboxRelay(
            self.engine,
            # The relay owns its producer, so it can replace one in a fatal state.
            lambda: create_producer(settings.kafka_bootstrap_servers, client_id=f"{self.spec.name}-relay"),
            RelayConfig(
                database_url=settings.database_url,
                poll_interval_s=settings.relay_poll_interval_s,
                batch_size=settings.relay_batch_size,
                retention=timedelta(days=settings.outbox_retention_days),
            ),
            self.metrics,
            self.clock,
            self.loop_health("outbox relay"),
        )
        consumer = InboxConsumer(
            group=self.spec.name,
            subscriptions=self.spec.subscriptions,
            uow_factory=self.uow,
            producer=producer,
            metrics=self.metrics,
            max_attempts=settings.consumer_max_attempts,
            engine=self.consumer_engine,
            results=self.results,
            replay_topic=replay_topic(self.spec.name) if self.spec.name in CONSUMER_GROUPS else None,
        )
        return producer, relay, consumer

    async def start(self) -> None:
        if self.settings.run_migrations:
            await upgrade_head(self.spec.migrations_dir, self.settings.database_url)
        self._producer, relay, consumer = self._build_messaging()
        self._relay, self._consumer = relay, consumer
        await _start_with_retry(self._producer.start, "Kafka producer")
        self._tasks.append(asyncio.create_task(
            supervise("outbox relay", relay.run, relay.stopping, relay.health), name="outbox-relay"))
        if self.spec.subscriptions:
            started = asyncio.Event()
            self._tasks.append(asyncio.create_task(
                supervise("inbox consumer", lambda: consumer.run(
                    self.settings.kafka_bootstrap_servers,
                    max_records=self.settings.consumer_max_records,
                    fetch_max_wait_ms=self.settings.fetch_max_wait_ms(),
                    started=started,
                ), consumer.stopping, self.loop_health("inbox consumer")),
                name="inbox-consumer",
            ))
            await asyncio.wait_for(started.wait(), timeout=60)
        for loop in self.spec.background:
            self._tasks.append(asyncio.create_task(
                supervise(loop.__name__, functools.partial(loop, self), self._stopping,
                          self.loop_health(loop.__name__)),
                name=loop.__name__,
            ))
        log.info("%s started", self.spec.name)

    async def stop(self) -> None:
        """Finish the batch in flight, then stop consuming, relaying and the loops."""
        self._stopping.set()
        if self._consumer is not None:
            self._consumer.stop()
        if self._relay is not None:
            self._relay.stop()
        for task in self._tasks:
            if task.get_name() not in ("outbox-relay", "inbox-consumer"):
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, timeout=10)
        if self._producer is not None:
            await self._producer.stop()
        await self.consumer_engine.dispose()
        await self.engine.dispose()
        log.info("%s stopped", self.spec.name)


async def _start_with_retry(
    start: Callable[[], Coroutine[Any, Any, Any]], what: str, deadline_s: float = 60.0
) -> None:
    """The broker may still be starting: retry for a while, then fail loudly."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    delay = 0.5
    while True:
        try:
            await start()
            return
        except Exception as exc:
            if loop.time() > give_up:
                raise RuntimeError(f"{what} could not connect within {deadline_s:.0f}s: {exc}") from exc
            log.warning("%s not ready (%s); retrying", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def freeze_startup_heap() -> None:
    """Leave what exists once a service is built (its modules, models, routes and
    SQL metadata: ~160,000 objects) out of the garbage collector's full passes.
    Each full pass walked all of them, 80-100 ms on an idle machine and several times
    that on a busy one, and one fell into a list view every few dozen calls: its p99
    (the task views benchmark in the README). A full pass now walks only what was made since; what is
    frozen lives as long as the process anyway."""
    gc.collect()
    gc.freeze()
