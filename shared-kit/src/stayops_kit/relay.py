"""The outbox relay: publishes committed outbox rows to Kafka and marks them sent.

It claims rows by their own state (`sent_at IS NULL`), never by a remembered id,
so a transaction that took a lower id and committed late is still published.
Per-key order holds because handlers lock their aggregate before writing (rows of
one key are inserted in commit order), the relay publishes in id order through an
idempotent producer keyed by the aggregate, and only one relay per database runs
at a time (a session advisory lock).

Failures are handled per row. A row Kafka refuses (too large, an unknown topic)
records its attempts and error and waits for a retry; after `max_attempts` it is
parked (`stayops outbox list` / `retry`), so the rows behind it keep flowing. A
waiting row holds back the later rows of its key, a parked one no longer does.
Broker trouble (timeouts, a lost connection) charges no row: the pass backs off.
A producer in a fatal state (fenced, out of sequence) is replaced.

A pass is pipelined: the next batch is read (leaving out the rows still in
flight) and sent while the previous batch's acks are awaited, when the previous
batch was full or a commit notified meanwhile; a batch is marked sent only after
its acks, on a session that does not wait for the WAL flush.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncEngine

from stayops_kit.clock import Clock, SystemClock
from stayops_kit.db import OUTBOX_CHANNEL, outbox
from stayops_kit.failpoints import failpoint
from stayops_kit.loops import Backoff, LoopHealth, Wakeup, connect_session, run_loop
from stayops_kit.metrics import Metrics
from stayops_kit.tracing import span
from stayops_schemas.binding import binary_headers

log = logging.getLogger(__name__)

_RELAY_LOCK_KEY = 7_311_001
_SELECT_UNSENT = """
SELECT id, event_id::text AS event_id, event_type, topic, partition_key, org_id, source, correlation_id,
       causation_id, dataschema, subject, payload::text AS payload, traceparent, occurred_at, attempts, retry_at
FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL AND id <> ALL($2::bigint[]) ORDER BY id LIMIT $1
"""
_MARK_SENT = "UPDATE outbox SET sent_at = $1 WHERE id = ANY($2::bigint[])"
# One statement for every failed row of a pass; a row reaching the limit is parked.
_MARK_FAILED = """
UPDATE outbox o SET attempts = o.attempts + 1, last_error = f.error, retry_at = f.retry_at,
       parked_at = CASE WHEN o.attempts + 1 >= $2::int THEN $3::timestamptz END
FROM unnest($1::bigint[], $4::text[], $5::timestamptz[]) AS f(id, error, retry_at)
WHERE o.id = f.id
"""
_BACKLOG = """
SELECT count(*) AS pending, min(created_at) AS oldest, now() AS now
FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL
"""
_PARKED = "SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL AND sent_at IS NULL"
# Pruning deletes in small batches, each its own short transaction, through the
# indexes on sent_at and handled_at: never one long transaction over the history.
_PRUNE_OUTBOX = """
DELETE FROM outbox WHERE id IN (
  SELECT id FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1 ORDER BY sent_at LIMIT $2)
"""
_PRUNE_INBOX = """
DELETE FROM inbox WHERE ctid IN (SELECT ctid FROM inbox WHERE handled_at < $1 LIMIT $2)
"""
LISTENER_APPLICATION_NAME = "stayops-relay-listener"
LOCK_APPLICATION_NAME = "stayops-relay"

# Errors that are the row's own (Kafka will refuse it however often it is sent).
ROW_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidTopicError,
    kafka_errors.UnknownTopicOrPartitionError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.CorruptRecordException,
    ValueError,
    TypeError,
)
# Errors after which the producer can send nothing more: it is replaced.
FATAL_PRODUCER_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.OutOfOrderSequenceNumber,
    kafka_errors.ProducerFenced,
    kafka_errors.InvalidProducerEpoch,
    kafka_errors.UnknownProducerId,
    kafka_errors.IllegalStateError,
    kafka_errors.ProducerClosed,
)


@dataclass(frozen=True)
class RelayConfig:
    database_url: str
    poll_interval_s: float = 1.0
    batch_size: int = 500
    # Batches read and sent in one pass, each while the one before awaits its acks.
    pipeline_batches: int = 20
    retention: timedelta = timedelta(days=30)
    # Longer than the topics' retention (7 days): an event still on the broker must
    # still find its inbox mark, or a redelivery would apply it twice.
    inbox_retention: timedelta = timedelta(days=14)
    prune_every_s: float = 3600.0
    prune_batch: int = 1000
    retry_backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    max_attempts: int = 5  # a row Kafka refuses this often is parked
    send_timeout_s: float = 10.0  # a send waiting on metadata for a missing topic
    # A leader whose client vanished is ended by the server after this long idle
    # (with TCP keepalives), releasing the lock for a replica in seconds.
    lock_idle_timeout_s: float = 30.0


@dataclass
class _Outcome:
    sent: list[int] = field(default_factory=list)
    failed: list[tuple[Any, BaseException]] = field(default_factory=list)
    broker_error: BaseException | None = None
    fatal: BaseException | None = None


@dataclass
class _Batch:
    """Rows read in one go: those sent wait for their acks in `in_flight`."""

    rows: list[Any]
    now: datetime
    wait_s: float
    full: bool
    outcome: _Outcome = field(default_factory=_Outcome)
    in_flight: list[tuple[Any, asyncio.Future[Any]]] = field(default_factory=list)
    held_keys: set[str] = field(default_factory=set)


ProducerFactory = Callable[[], AIOKafkaProducer]


class OutboxRelay:
    """Run with `await relay.run()`; `stop()` finishes the batch in flight, then returns."""

    def __init__(
        self,
        engine: AsyncEngine,
        producer_factory: ProducerFactory,
        config: RelayConfig,
        metrics: Metrics,
        clock: Clock | None = None,
        health: LoopHealth | None = None,
    ) -> None:
        self._engine = engine
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self._config = config
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._stopping = asyncio.Event()
        self._wakeup = Wakeup(config.database_url, [OUTBOX_CHANNEL], stop=self._stopping,
                              application_name=LISTENER_APPLICATION_NAME)
        self._lock_conn: asyncpg.Connection | None = None
        self._last_prune = 0.0
        self._last_gauges = 0.0
        self.health = health or LoopHealth("outbox relay")
        self.published = 0
        self.is_leader = False

    @property
    def stopping(self) -> asyncio.Event:
        return self._stopping

    def stop(self) -> None:
        self._stopping.set()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        try:
            await run_loop("outbox relay", self._pass, self._wakeup, self._stopping, self.health,
                           Backoff(self._config.retry_backoff_s, self._config.max_backoff_s))
        finally:
            await self._close()

    async def _pass(self) -> float:
        """Publish while there is a full batch; returns how long to wait for the next."""
        if not await self._lead():
            return self._config.poll_interval_s
        await self._ensure_producer()
        wait_s = self._config.poll_interval_s
        while not self._stopping.is_set():
            more, wait_s = await self.publish_pending()
            if not more:
                break
        if time.monotonic() - self._last_prune > self._config.prune_every_s:
            self._last_prune = time.monotonic()
            await self.prune()
        return wait_s

    async def publish_pending(self) -> tuple[bool, float]:
        """Publish unsent rows in id order, a batch at a time, pipelined: batch N+1 is
        read and sent while N's acks are awaited, then N is marked (a row is marked
        only after its ack). Returns (the last batch was full, seconds until a waiting
        row is due again, at most the poll interval).

        It reads and marks rows on the connection that holds the relay lock: if that
        session dies, the lock goes with it and this relay stops writing."""
        conn = self._lock_conn
        if conn is None or conn.is_closed():
            raise RuntimeError("the relay lost its database session; it takes the lock again")
        in_flight: collections.deque[_Batch] = collections.deque()
        wait_s = self._config.poll_interval_s
        full = False
        try:
            for _ in range(self._config.pipeline_batches):
                # Rows committed from here on notify again: if any did by the time this
                # batch is sent, the next is read now, while this one awaits its acks,
                # not after its acks and marks (a one-row batch at a time otherwise
                # waits a Kafka round trip and a mark behind the one before it).
                self._wakeup.take()
                batch = await self._start_batch(conn, in_flight[-1] if in_flight else None)
                in_flight.append(batch)
                wait_s, full = min(wait_s, batch.wait_s), batch.full
                if len(in_flight) > 1:  # the batch before this one: its acks, its marks
                    wait_s = min(wait_s, await self._finish(conn, in_flight.popleft()))
                notified = self._wakeup.take()
                if not (full or (notified and batch.rows)) or self._stopping.is_set():
                    if notified:
                        self._wakeup.set()  # not taken up here: the next wait returns at once
                    break
            while in_flight:
                wait_s = min(wait_s, await self._finish(conn, in_flight.popleft()))
        finally:
            while in_flight:  # batches in flight behind a failure: settle them
                with contextlib.suppress(Exception):
                    await self._finish(conn, in_flight.popleft())
        await self._update_gauges(conn)
        return full, max(wait_s, 0.0)

    async def _start_batch(self, conn: asyncpg.Connection, previous: _Batch | None) -> _Batch:
        """Read the next unsent rows (not those of the batch still in flight) and send
        those that are ready. A row that waits for its retry, or that send() refused,
        holds back the later rows of its key, in this batch and the next."""
        held_keys = set(previous.held_keys) if previous is not None else set()
        exclude = [row["id"] for row in previous.rows] if previous is not None else []
        rows = await conn.fetch(_SELECT_UNSENT, self._config.batch_size, exclude)
        now = self._clock.now()
        batch = _Batch(rows=list(rows), now=now, wait_s=self._config.poll_interval_s,
                       full=len(rows) == self._config.batch_size)
        ready: list[Any] = []
        for row in rows:
            if row["partition_key"] in held_keys:
                continue  # behind a row of its key that waits for a retry
            if row["retry_at"] is not None and row["retry_at"] > now:
                held_keys.add(row["partition_key"])
                batch.wait_s = min(batch.wait_s, (row["retry_at"] - now).total_seconds())
                continue
            ready.append(row)
        batch.full = batch.full and bool(ready)
        if ready:
            failpoint("relay.before_send")
            await self._send(ready, batch, held_keys)
        batch.held_keys = held_keys
        return batch

    async def _send(self, rows: Sequence[Any], batch: _Batch, held_keys: set[str]) -> None:
        """Queue each row in the producer (its ack is awaited in `_finish`). A row
        send() refuses (too large, an unknown topic) holds back the later rows of its
        key (they go again, in order, with it)."""
        producer = self._producer
        assert producer is not None
        for row in rows:
            if row["partition_key"] in held_keys:
                continue
            try:
                with span(f"publish {row['topic']}", service=row["source"].lstrip("/"), kind=SpanKind.PRODUCER,
                          parent=row["traceparent"], attributes={"stayops.event_id": row["event_id"],
                                                                 "stayops.event_type": row["event_type"]}):
                    # The payload goes out as PostgreSQL wrote it: read as text, never decoded.
                    send = producer.send(row["topic"], value=row["payload"].encode(),
                                         key=row["partition_key"].encode(), headers=_headers(row))
                    if producer.client.cluster.partitions_for_topic(row["topic"]) is None:
                        # Only a send that must fetch metadata can wait long (a missing topic).
                        future = await asyncio.wait_for(send, self._config.send_timeout_s)
                    else:
                        future = await send
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # raised by send() itself: too large, unknown topic
                held_keys.add(row["partition_key"])
                self._classify(batch.outcome, row, exc)
                continue
            batch.in_flight.append((row, future))

    async def _finish(self, conn: asyncpg.Connection, batch: _Batch) -> float:
        """Await a batch's acks and mark it; returns how soon to look again."""
        results = await asyncio.gather(*(f for _, f in batch.in_flight), return_exceptions=True)
        outcome = batch.outcome
        for (row, _), result in zip(batch.in_flight, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                self._classify(outcome, row, result)
            else:
                outcome.sent.append(row["id"])
        batch.in_flight = []
        failpoint("relay.after_send")
        await self._record(conn, batch.rows, outcome, batch.now)
        return self._config.retry_backoff_s if outcome.failed else self._config.poll_interval_s

    @staticmethod
    def _classify(outcome: _Outcome, row: Any, exc: BaseException) -> None:
        if isinstance(exc, FATAL_PRODUCER_ERRORS):
            outcome.fatal = outcome.fatal or exc
        elif isinstance(exc, ROW_ERRORS):
            outcome.failed.append((row, exc))
        else:
            outcome.broker_error = outcome.broker_error or exc

    async def _record(self, conn: asyncpg.Connection, rows: Sequence[Any], outcome: _Outcome,
                      now: datetime) -> None:
        # One statement each, on a session that does not wait for the WAL flush (`_lead`).
        if outcome.sent:
            await conn.execute(_MARK_SENT, now, outcome.sent)
        if outcome.failed:
            await conn.execute(
                        _MARK_FAILED,
                [row["id"] for row, _ in outcome.failed],
                self._config.max_attempts,
                now,
                [repr(exc)[:2000] for _, exc in outcome.failed],
                [now + timedelta(seconds=self._retry_delay(row["attempts"])) for row, _ in outcome.failed],
            )
        sent = set(outcome.sent)
        for row in rows:
            if row["id"] in sent:
                self._metrics.outbox_lag.observe((now - row["occurred_at"]).total_seconds())
        self.published += len(sent)
        self._metrics.outbox_published.inc(len(sent))
        for row, exc in outcome.failed:
            parked = row["attempts"] + 1 >= self._config.max_attempts
            self._metrics.outbox_send_failures.labels(type(exc).__name__).inc()
            log.error("relay: outbox row %s (%s, key %s) refused by Kafka%s: %r", row["id"], row["event_type"],
                      row["partition_key"], "; parked" if parked else "; will retry", exc)
        if outcome.fatal is not None:
            log.error("relay: the producer is in a fatal state (%r); replacing it", outcome.fatal)
            await self._replace_producer()
            raise RuntimeError(f"producer replaced after {outcome.fatal!r}") from outcome.fatal
        if outcome.broker_error is not None:
            raise RuntimeError(f"Kafka did not take the batch: {outcome.broker_error!r}") from outcome.broker_error

    def _retry_delay(self, attempts: int) -> float:
        return float(min(self._config.retry_backoff_s * 2 ** attempts, self._config.max_backoff_s))

    async def _update_gauges(self, conn: asyncpg.Connection, *, force: bool = False) -> None:
        """outbox_pending and the oldest unsent row's age, at most once a second."""
        if not force and time.monotonic() - self._last_gauges < 1.0:
            return
        self._last_gauges = time.monotonic()
        backlog = await conn.fetchrow(_BACKLOG)
        assert backlog is not None
        self._metrics.outbox_pending.set(backlog["pending"])
        oldest = backlog["oldest"]
        age = 0.0 if oldest is None else max((backlog["now"] - oldest).total_seconds(), 0.0)
        self._metrics.outbox_oldest_unsent_age.set(age)
        self._metrics.outbox_parked.set(await conn.fetchval(_PARKED))

    async def prune(self) -> tuple[int, int]:
        """Delete sent outbox rows older than the retention period (history is kept
        until then) and inbox marks older than theirs; returns (outbox, inbox) counts."""
        now = self._clock.now()
        outbox_rows = await self._prune(_PRUNE_OUTBOX, now - self._config.retention)
        inbox_rows = await self._prune(_PRUNE_INBOX, now - self._config.inbox_retention)
        return outbox_rows, inbox_rows

    async def _prune(self, statement: str, cutoff: datetime) -> int:
        conn = self._lock_conn
        if conn is None or conn.is_closed():
            return 0
        total = 0
        while not self._stopping.is_set():
            status = await conn.execute(statement, cutoff, self._config.prune_batch)
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < self._config.prune_batch:
                break
        return total

    async def _lead(self) -> bool:
        """Only one relay per database publishes; the others look again each poll
        interval (a replica takes over when the leader's session ends)."""
        if self._lock_conn is None or self._lock_conn.is_closed():
            self.is_leader = False
            self._lock_conn = await connect_session(
                self._config.database_url, application_name=LOCK_APPLICATION_NAME,
                idle_session_timeout_s=self._config.lock_idle_timeout_s,
            )
            # Its writes are the relay's marks and prunes: a mark lost in a crash only
            # means the row is published again (the consumers' inbox absorbs it), so
            # they need not wait for the WAL flush.
            await self._lock_conn.execute("SET synchronous_commit = off")
        if not self.is_leader:
            self.is_leader = bool(await self._lock_conn.fetchval("SELECT pg_try_advisory_lock($1)",
                                                                  _RELAY_LOCK_KEY))
        return self.is_leader

    async def _ensure_producer(self) -> None:
        if self._producer is None:
            producer = self._producer_factory()
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer

    async def _replace_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return  # replaced already (a batch behind the one that found it fatal)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 10)
        self._metrics.producer_restarts.inc()

    async def _close(self) -> None:
        await self._wakeup.close()
        conn, self._lock_conn = self._lock_conn, None
        self.is_leader = False
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)


def _headers(row: Any) -> list[tuple[str, bytes]]:
    return binary_headers(
        id=row["event_id"], type=row["event_type"], source=row["source"], time=row["occurred_at"],
        orgid=row["org_id"], partitionkey=row["partition_key"], correlationid=row["correlation_id"],
        causationid=row["causation_id"], traceparent=row["traceparent"],
        dataschema=row["dataschema"], subject=row["subject"],
    )


@dataclass(frozen=True)
class ParkedRow:
    """An outbox row the relay set aside after Kafka refused it `max_attempts` times."""

    id: int
    event_id: str
    event_type: str
    topic: str
    partition_key: str
    org_id: str
    attempts: int
    last_error: str | None
    parked_at: datetime


async def parked_rows(engine: AsyncEngine, limit: int = 100) -> list[ParkedRow]:
    """The parked rows of one service's outbox, oldest first (`stayops outbox list`)."""
    query = sa.select(
        outbox.c.id, outbox.c.event_id, outbox.c.event_type, outbox.c.topic, outbox.c.partition_key,
        outbox.c.org_id, outbox.c.attempts, outbox.c.last_error, outbox.c.parked_at,
    ).where(outbox.c.parked_at.is_not(None), outbox.c.sent_at.is_(None)).order_by(outbox.c.id).limit(limit)
    async with engine.connect() as conn:
        return [ParkedRow(**row._asdict()) for row in await conn.execute(query)]


async def requeue_parked(engine: AsyncEngine, ids: Sequence[int] | None = None) -> int:
    """Put parked rows (all, or those of `ids`) back in the relay's queue with their
    attempts reset (`stayops outbox retry`); returns how many. A re-queued row goes
    out after the rows of its key written since: its key's order was already given up."""
    statement = (
        outbox.update()
        .where(outbox.c.parked_at.is_not(None), outbox.c.sent_at.is_(None))
        .values(parked_at=None, retry_at=None, attempts=0)
    )
    if ids is not None:
        statement = statement.where(outbox.c.id.in_(list(ids)))
    async with engine.begin() as conn:
        result = await conn.execute(statement)
        await conn.execute(sa.select(sa.func.pg_notify(OUTBOX_CHANNEL, "")))
    return int(result.rowcount or 0)
