"""Everything one running service holds, wired once at start-up and stopped in
reverse order: engine, producer, outbox relay, inbox consumer, background loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from stayops_kit.auth import JwtVerifier
from stayops_kit.clock import Clock, IdFactory, SystemClock, new_id
from stayops_kit.consumer import InboxConsumer, Subscriptions
from stayops_kit.db import create_engine
from stayops_kit.kafka import create_producer
from stayops_kit.metrics import Metrics
from stayops_kit.migrations import upgrade_head
from stayops_kit.outbox import UnitOfWorkFactory
from stayops_kit.relay import OutboxRelay, RelayConfig
from stayops_kit.settings import ServiceSettings

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
        self.uow = UnitOfWorkFactory(self.engine, f"/{spec.name}", self.clock, ids)
        self._producer: AIOKafkaProducer | None = None
        self._relay: OutboxRelay | None = None
        self._consumer: InboxConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

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
            producer,
            RelayConfig(
                database_url=settings.database_url,
                poll_interval_s=settings.relay_poll_interval_s,
                batch_size=settings.relay_batch_size,
                retention=timedelta(days=settings.outbox_retention_days),
            ),
            self.metrics,
            self.clock,
        )
        consumer = InboxConsumer(
            group=self.spec.name,
            subscriptions=self.spec.subscriptions,
            uow_factory=self.uow,
            producer=producer,
            metrics=self.metrics,
            max_attempts=settings.consumer_max_attempts,
        )
        return producer, relay, consumer

    async def start(self) -> None:
        if self.settings.run_migrations:
            await upgrade_head(self.spec.migrations_dir, self.settings.database_url)
        self._producer, relay, consumer = self._build_messaging()
        self._relay, self._consumer = relay, consumer
        await _start_with_retry(self._producer.start, "Kafka producer")
        self._tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
        if self.spec.subscriptions:
            started = asyncio.Event()
            self._tasks.append(asyncio.create_task(
                _restarting(lambda: consumer.run(
                    self.settings.kafka_bootstrap_servers,
                    max_records=self.settings.consumer_max_records,
                    fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
                    started=started,
                ), "inbox consumer", consumer.stopping),
                name="inbox-consumer",
            ))
            await asyncio.wait_for(started.wait(), timeout=60)
        for loop in self.spec.background:
            self._tasks.append(asyncio.create_task(loop(self), name=loop.__name__))
        log.info("%s started", self.spec.name)

    async def stop(self) -> None:
        """Finish the batch in flight, then stop consuming, relaying and the loops."""
        if self._consumer is not None:
            self._consumer.stop()
        if self._relay is not None:
            self._relay.stop()
        for task in self._tasks:
            if task.get_name() not in ("outbox-relay", "inbox-consumer"):
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
        if self._producer is not None:
            await self._producer.stop()
        await self.engine.dispose()
        log.info("%s stopped", self.spec.name)


async def _restarting(
    run: Callable[[], Coroutine[Any, Any, None]], what: str, stopping: asyncio.Event
) -> None:
    """Keep a loop running: a crash (the broker unreachable at start, say) is logged
    and the loop started again after a pause, until the service stops."""
    delay = 0.5
    while not stopping.is_set():
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting in %.1fs", what, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


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
