"""A probe for testing and benchmarking the messaging kit on real PostgreSQL and
Kafka: a table of effects, a handler that writes one effect per event, and relay
and consumer processes (`python -m stayops_kit.testing relay|consumer ...`) that a
test can kill with SIGKILL and start again."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from stayops_kit.consumer import EventContext, InboxConsumer, Subscriptions
from stayops_kit.db import create_engine, outbox
from stayops_kit.kafka import REQUEST_TIMEOUT_MS, create_producer
from stayops_kit.loops import supervise
from stayops_kit.metrics import Metrics
from stayops_kit.migrations import create_messaging_tables
from stayops_kit.outbox import UnitOfWorkFactory
from stayops_kit.relay import OutboxRelay, RelayConfig
from stayops_kit.runtime import freeze_startup_heap
from stayops_kit.settings import FETCH_MAX_WAIT_MS, ServiceSettings
from stayops_schemas.binding import from_kafka, to_kafka
from stayops_schemas.catalog import event_type
from stayops_schemas.envelope import Envelope
from stayops_schemas.errors import SchemaError
from stayops_schemas.events.base import Payload
from stayops_schemas.events.tasks import Priority, TaskCreated, TaskStatus, TaskType
from stayops_schemas.ownership import owner_of

PROBE_EVENT = "stayops.task.created"

probe_metadata = sa.MetaData()
probe_effects = sa.Table(
    "probe_effects",
    probe_metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("sent_at_ns", sa.BigInteger),
    sa.Column("applied_at", sa.DateTime(timezone=True), server_default=sa.func.clock_timestamp()),
)
probe_keys = sa.Table(
    "probe_keys",
    probe_metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
)


async def prepare_database(engine: AsyncEngine) -> None:
    """Messaging tables and probe tables, as the real migrations would create them."""

    def create(connection: sa.Connection) -> None:
        if not sa.inspect(connection).has_table("outbox"):
            create_messaging_tables(connection)
        probe_metadata.create_all(connection)

    async with engine.begin() as conn:
        await conn.run_sync(create)


def probe_payload(org_id: str, key: str, seq: int, *, sent_at_ns: int | None = None,
                  padding: str = "") -> TaskCreated:
    return TaskCreated(
        task_id=key,
        org_id=org_id,
        title=f"probe {seq}",
        task_type=TaskType.MANUAL,
        status=TaskStatus.PENDING,
        priority=Priority.LOW,
        data={"seq": seq, "sent_at_ns": sent_at_ns, "padding": padding},
        created_by="probe",
    )


async def write_probe_events(uow: UnitOfWorkFactory, org_id: str, key: str, seqs: Sequence[int]) -> None:
    """Write events for one key in one transaction, holding the key's row lock the
    way a handler holds its aggregate's lock."""
    async with uow.begin() as unit:
        await unit.conn.execute(
            sa.text("INSERT INTO probe_keys (key, seq) VALUES (:k, 0) ON CONFLICT DO NOTHING"),
            {"k": key},
        )
        await unit.conn.execute(sa.text("SELECT 1 FROM probe_keys WHERE key = :k FOR UPDATE"), {"k": key})
        for seq in seqs:
            await unit.announce(PROBE_EVENT, probe_payload(org_id, key, seq), org_id=org_id, key=key)


async def record_effect(ctx: EventContext, event: TaskCreated) -> None:
    ctx.uow.defer_insert(
        probe_effects,
        {
            "org_id": event.org_id,
            "event_id": ctx.envelope.id,
            "key": ctx.envelope.partitionkey,
            "seq": int(event.data.get("seq", -1)),
            "sent_at_ns": event.data.get("sent_at_ns"),
        },
    )


def probe_subscriptions() -> Subscriptions:
    subs = Subscriptions()
    subs.on(PROBE_EVENT)(record_effect)
    return subs


async def effects_of(engine: AsyncEngine, org_id: str) -> list[tuple[str, int, str]]:
    """(key, seq, event id) of every effect applied for an org, in the order applied."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(probe_effects.c.key, probe_effects.c.seq, probe_effects.c.event_id)
            .where(probe_effects.c.org_id == org_id)
            .order_by(probe_effects.c.id)
        )
        return [(r.key, r.seq, r.event_id) for r in rows]


@contextlib.asynccontextmanager
async def running_relay(
    engine: AsyncEngine, database_url: str, bootstrap: str, *, poll_interval_s: float = 1.0,
    metrics: Metrics | None = None, request_timeout_ms: int = REQUEST_TIMEOUT_MS, **config: Any,
) -> AsyncIterator[OutboxRelay]:
    """A relay on the probe database, supervised as a service runs it; `config`
    overrides `RelayConfig` fields (max_attempts, retry_backoff_s, ...), and
    `request_timeout_ms` the producer's."""
    relay = OutboxRelay(
        engine,
        lambda: create_producer(bootstrap, client_id="probe-relay", request_timeout_ms=request_timeout_ms),
        RelayConfig(database_url, poll_interval_s=poll_interval_s, **config), metrics or Metrics(),
    )
    task = asyncio.create_task(supervise("probe relay", relay.run, relay.stopping, relay.health))
    try:
        yield relay
    finally:
        relay.stop()
        await task


@contextlib.asynccontextmanager
async def running_consumer(
    engine: AsyncEngine, bootstrap: str, group: str, *, subscriptions: Subscriptions | None = None,
    max_records: int = 200, auto_offset_reset: str = "earliest", metrics: Metrics | None = None,
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS["kafka"], **options: Any,
) -> AsyncIterator[InboxConsumer]:
    """A consumer of the probe's events; `options` override InboxConsumer's."""
    producer = create_producer(bootstrap, client_id=f"{group}-dlq")
    await producer.start()
    consumer = InboxConsumer(
        group=group,
        subscriptions=subscriptions or probe_subscriptions(),
        uow_factory=UnitOfWorkFactory(engine, "/probe"),
        producer=producer,
        metrics=metrics or Metrics(),
        **{
            "max_attempts": 3,
            "retry_base_s": 0.05,
            "unavailable_backoff_s": 0.5,
            # The probe's events are a vehicle for testing delivery, from the probe itself.
            "check_sources": False,
            **options,
        },
    )
    started = asyncio.Event()
    task = asyncio.create_task(consumer.run(bootstrap, max_records=max_records, fetch_max_wait_ms=fetch_max_wait_ms,
                                            auto_offset_reset=auto_offset_reset, started=started))
    await asyncio.wait_for(started.wait(), timeout=60)
    try:
        yield consumer
    finally:
        consumer.stop()
        await task
        await producer.stop()


T = TypeVar("T")


@dataclass
class ProbeDb:
    url: str
    engine: AsyncEngine
    uow: UnitOfWorkFactory
    org_id: str
    bootstrap: str
    group: str


def decoded(record: Any) -> Envelope | None:
    """A record's event, or None for a record that is not one: the session's topics
    carry other tests' malformed records too."""
    try:
        return from_kafka(record.key, record.value, list(record.headers))
    except SchemaError:
        return None


async def announced(engine: AsyncEngine, org_id: str, event_type: str) -> list[dict[str, Any]]:
    """The payloads of the `event_type` events a service wrote to announce for an org
    (its outbox, sent yet or not), oldest first: what a test reads instead of a topic."""
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(outbox.c.payload).where(
            outbox.c.org_id == org_id, outbox.c.event_type == event_type).order_by(outbox.c.id))
        return [dict(row.payload) for row in rows]


def event_envelope(type_: str, payload: Payload, key: str, source: str | None = None, *,
                   time: datetime | None = None, correlation_id: str | None = None) -> Envelope:
    """The event as its owner sends it (`stayops_schemas.ownership`: consumers
    dead-letter another source's), unless `source` names another publisher; now
    unless `time` says when."""
    return event_type(type_).envelope(payload, id=str(uuid.uuid4()), source=source or owner_of(type_),
                                      partitionkey=key, time=time or datetime.now(UTC), correlationid=correlation_id)


async def send(producer: AIOKafkaProducer, envelope: Envelope) -> None:
    """Send an event to its type's topic, as a service's relay would."""
    record = to_kafka(envelope)
    await producer.send_and_wait(event_type(envelope.type).topic, value=record.value, key=record.key,
                                 headers=record.headers)


async def ensure_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 20.0,
                     interval: float = 0.05, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy, or fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: T | None = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last value: {last!r})")


class ProbeProcess:
    """A relay or consumer in its own process, so a test can SIGKILL it."""

    def __init__(self, role: str, probe: ProbeDb, failpoints: str = "", offset_reset: str = "earliest",
                 fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS["kafka"]) -> None:
        env = {**os.environ, "STAYOPS_FAILPOINTS": failpoints}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stayops_kit.testing", role, "--database-url", probe.url,
             "--bootstrap", probe.bootstrap, "--group", probe.group, "--offset-reset", offset_reset,
             "--fetch-max-wait-ms", str(fetch_max_wait_ms)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )

    async def wait_ready(self, timeout: float = 120.0) -> None:
        """Read the process's output until it says "ready" (logs may come first). On a
        loaded machine its imports alone have taken 50 s."""
        assert self.process.stdout is not None
        stdout = self.process.stdout

        def read_until_ready() -> bool:
            return any(line.strip() == "ready" for line in stdout)

        ready = await asyncio.wait_for(asyncio.to_thread(read_until_ready), timeout)
        assert ready, f"probe process did not start (exit {self.process.poll()})"
        # Keep draining its output so a chatty process never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in stdout], daemon=True).start()

    async def wait_killed(self, timeout: float = 30.0) -> int:
        code = await asyncio.wait_for(asyncio.to_thread(self.process.wait), timeout)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()



@contextlib.asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Start a service app (its lifespan: migrations, relay, consumer) and talk to
    it over ASGI, as a client would over HTTP."""
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://service"
    ) as client:
        yield client


@dataclass
class ServiceUnderTest:
    """A service app running its lifespan on the test stack: a client for its REST
    API, its runtime, and a producer to send it events as other services would."""

    client: httpx.AsyncClient
    runtime: Any
    producer: AIOKafkaProducer
    stack: Any
    settings: ServiceSettings

    def auth(self, org: str, user: str = "u-owner", role: str = "owner", *,
             permissions: Iterable[str] | None = None, user_type: str = "human",
             ai_may_decide: bool = False) -> dict[str, str]:
        """Headers of a caller; their grants are the role's unless `permissions` names them."""
        token = self.stack.mint_token(org, user, role, permissions=permissions, user_type=user_type,
                                      ai_may_decide=ai_may_decide)
        return {"Authorization": f"Bearer {token}"}

    async def publish(self, type_: str, payload: Payload, *, key: str, time: datetime | None = None,
                      source: str | None = None, correlation_id: str | None = None) -> None:
        """Send an event as its owner would (`stayops_schemas.ownership`), unless
        `source` names another publisher (to test that a forgery is refused)."""
        await send(self.producer, event_envelope(type_, payload, key, source, time=time or self.runtime.clock.now(),
                                                 correlation_id=correlation_id))


@contextlib.asynccontextmanager
async def service_under_test(create_app: Callable[..., FastAPI], name: str, stack: Any) -> AsyncIterator[
        ServiceUnderTest]:
    """Run a service on a fresh database of the session's stack (its migrations,
    relay, consumer and loops), with fast relay polling for tests."""
    settings = ServiceSettings(
        service_name=name,
        database_url=await stack.create_database(f"{name.replace('-', '_')}_{uuid.uuid4().hex[:10]}"),
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        jwt_public_key_file=stack.jwt_public_key_file,
        relay_poll_interval_s=0.2,
        log_json=False,
    )
    app = create_app(settings=settings)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        async with app_client(app) as client:
            yield ServiceUnderTest(client, app.state.runtime, producer, stack, settings)
    finally:
        await producer.stop()


async def _serve(role: str, database_url: str, bootstrap: str, group: str, offset_reset: str,
                 fetch_max_wait_ms: int) -> None:
    # As a service's runtime: the consumer's engine skips the pre-ping on its hot path.
    engine = create_engine(database_url, pre_ping=role == "relay")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if role == "relay":
        async with running_relay(engine, database_url, bootstrap, poll_interval_s=0.5):
            print("ready", flush=True)
            await stop.wait()
    else:
        async with running_consumer(engine, bootstrap, group, max_records=500, auto_offset_reset=offset_reset,
                                    fetch_max_wait_ms=fetch_max_wait_ms):
            print("ready", flush=True)
            await stop.wait()
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["relay", "consumer"])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", default="probe")
    parser.add_argument("--offset-reset", default="earliest", choices=["earliest", "latest"])
    parser.add_argument("--fetch-max-wait-ms", type=int, default=FETCH_MAX_WAIT_MS["kafka"])
    args = parser.parse_args()
    freeze_startup_heap()  # as a service's process does (stayops_kit.app.serve)
    asyncio.run(_serve(args.role, args.database_url, args.bootstrap, args.group, args.offset_reset,
                       args.fetch_max_wait_ms))


if __name__ == "__main__":
    main()
