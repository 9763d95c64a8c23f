"""The idempotent inbox consumer.

For each batch of Kafka records: decode and validate every event, then apply the
handled ones in one transaction that also records `(consumer group, source, event
id)` in the inbox; only after that commit is the Kafka offset committed. A
redelivered event finds its inbox mark and has no effect. When the batch
transaction fails, each event is applied on its own: transient errors retry with
backoff, and an event that cannot be decoded, validated or handled goes to
`<group>.dlq` with the reason. If the database itself is unreachable (by SQLSTATE
and connection state) nothing is dead-lettered: the batch is rewound and fetched
again after a pause. A record whose dead-letter send fails holds only its own
partition, which tries it again; the other partitions keep moving.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from opentelemetry.trace import SpanKind
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from stayops_kit.claims import ResultReader
from stayops_kit.errors import PermanentError, TransientError
from stayops_kit.failpoints import failpoint
from stayops_kit.logs import correlation_scope
from stayops_kit.metrics import Metrics
from stayops_kit.outbox import PendingWrites, TransactionReads, UnitOfWork, UnitOfWorkFactory
from stayops_kit.settings import FETCH_MAX_WAIT_MS
from stayops_kit.tracing import span
from stayops_schemas.binding import from_kafka
from stayops_schemas.catalog import dead_letter_topic, event_type, parse_payload
from stayops_schemas.envelope import Envelope
from stayops_schemas.ownership import check_source
from stayops_schemas.subscriptions import consumed_by

log = logging.getLogger(__name__)

REDRIVE_HEADER = "stayops_redrive_count"

# One statement for a whole batch, whatever its size (arrays, not a VALUES list).
_MARK_HANDLED = sa.text(
    """
    INSERT INTO inbox (consumer_group, source, event_id, event_type, org_id, occurred_at, correlation_id,
                       causation_id, attempts)
    SELECT :group, e.source, e.id, e.type, e.org, e.occurred, e.correlation, e.causation, :attempts
    FROM unnest(CAST(:sources AS text[]), CAST(:ids AS text[]), CAST(:types AS text[]),
                CAST(:orgs AS text[]), CAST(:times AS timestamptz[]), CAST(:correlations AS text[]),
                CAST(:causations AS text[])) AS e(source, id, type, org, occurred, correlation, causation)
    ON CONFLICT DO NOTHING
    RETURNING source, event_id
    """
)


@dataclass(frozen=True)
class EventContext:
    """What a handler gets: the unit of work (its connection and `announce`) and the
    event's envelope. The tenant is `envelope.orgid`, never ambient state."""

    uow: UnitOfWork
    envelope: Envelope
    # Fetches results stored elsewhere (claim check); None where nothing may fetch.
    results: ResultReader | None = None

    @property
    def org_id(self) -> str:
        return self.envelope.orgid


Handler = Callable[[EventContext, Any], Awaitable[None]]


class Subscriptions:
    """The event types one consumer group handles, each with its handler. Given its
    group, it takes only the types `stayops_schemas.subscriptions` declares for it,
    and `complete()` refuses a declared type left without a handler."""

    def __init__(self, group: str | None = None) -> None:
        self._handlers: dict[str, Handler] = {}
        self._group = group
        self._declared = consumed_by(group) if group is not None else None

    def on(self, *event_types: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            for name in event_types:
                event_type(name)  # fails at start-up for a type missing from the catalog
                if self._declared is not None and name not in self._declared:
                    raise ValueError(f"{self._group} does not declare {name} in stayops_schemas.subscriptions")
                if name in self._handlers:
                    raise ValueError(f"{name} already has a handler")
                self._handlers[name] = handler
            return handler

        return register

    def complete(self) -> Subscriptions:
        """These subscriptions, once every type declared for the group has a handler."""
        missing = sorted((self._declared or frozenset()) - self._handlers.keys())
        if missing:
            raise ValueError(f"{self._group} declares {missing} in stayops_schemas.subscriptions "
                             "but has no handler for them")
        return self

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def handler_for(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    @property
    def topics(self) -> list[str]:
        return sorted({event_type(name).topic for name in self._handlers})

    def __bool__(self) -> bool:
        return bool(self._handlers)


class DatabaseUnavailable(Exception):
    """The consumer's database cannot be reached; the batch will be fetched again."""


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    error_type: str
    attempts: int


@dataclass
class _Pending:
    record: Any
    envelope: Envelope
    handler: Handler
    payload: BaseModel


# SQLSTATEs meaning "the server is going away or not there yet", not "this event
# is wrong": admin/crash shutdown, cannot connect now (starting, shutting down,
# recovering), too many connections, a read-only server (a failover's old primary).
# Class 08 is every connection exception.
UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "25006"})


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, what SQLAlchemy wrapped (`orig`) and its causes, each once."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return seen


def is_database_unavailable(exc: BaseException) -> bool:
    """True when the database cannot be reached or is restarting: by SQLSTATE on
    the driver's error (not SQLAlchemy's wrapper) and by connection state."""
    for cause in _causes(exc):
        if isinstance(cause, sa.exc.DBAPIError) and cause.connection_invalidated:
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and (sqlstate in UNAVAILABLE_SQLSTATES or sqlstate.startswith("08")):
            return True
        if isinstance(cause, OSError | ConnectionError | TimeoutError | sa.exc.TimeoutError
                      | asyncpg.ConnectionDoesNotExistError | asyncpg.CannotConnectNowError):
            return True
        if isinstance(cause, asyncpg.InterfaceError) and not isinstance(cause, asyncpg.DataError) \
                and "closed" in str(cause):
            return True  # "connection is closed": the session died under the driver
    return False


# Serialization failure, deadlock, lock timeout, statement timeout: worth a retry.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014"})


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError):
        return True
    return any(getattr(cause, "sqlstate", None) in TRANSIENT_SQLSTATES for cause in _causes(exc))


class InboxConsumer:
    """Applies events once per consumer group: `consume_batch` applies a batch of
    aiokafka ConsumerRecords, `run` is the consuming loop."""

    def __init__(
        self,
        *,
        group: str,
        subscriptions: Subscriptions,
        uow_factory: UnitOfWorkFactory,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        max_attempts: int = 5,
        retry_base_s: float = 0.1,
        unavailable_backoff_s: float = 1.0,
        check_sources: bool = True,
        engine: AsyncEngine | None = None,
        batch_budget_s: float = 60.0,
        dead_letter_timeout_s: float = 10.0,
        results: ResultReader | None = None,
        replay_topic: str | None = None,
    ) -> None:
        """`check_sources`: dead-letter an event whose source does not own its type
        (`stayops_schemas.ownership`); off only for the messaging probe. `engine`: the
        connections the consumer applies on (the unit of work factory's by default).
        `batch_budget_s`: how long one batch may take before the records not yet
        applied are left for the next fetch, well inside `max.poll.interval.ms`.
        `replay_topic`: a topic only this group reads besides its subscriptions'
        (`stayops replay` re-delivers there)."""
        self.group = group
        self._check_sources = check_sources
        self._subscriptions = subscriptions
        self._uow = uow_factory
        self._producer = producer
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._results = results
        self._replay_topic = replay_topic
        self._retry_base_s = retry_base_s
        self._unavailable_backoff_s = unavailable_backoff_s
        self._engine = engine or uow_factory.engine
        self._batch_budget_s = batch_budget_s
        self._dead_letter_timeout_s = dead_letter_timeout_s
        self._in_flight = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._committing: asyncio.Task[None] | None = None

    async def consume_batch(self, records: Sequence[Any]) -> dict[TopicPartition, int]:
        """Apply a batch; returns, for each partition that must not move past some
        record yet, that record's offset (its dead-letter send failed, or the batch's
        time budget ran out before it). Every other record was applied, skipped or
        dead-lettered. Raises `DatabaseUnavailable` when nothing could be applied."""
        deadline = asyncio.get_running_loop().time() + self._batch_budget_s
        held: dict[TopicPartition, int] = {}
        pending: list[_Pending] = []
        for record in records:
            try:
                item = self._prepare(record)
            except Exception as exc:  # a record that cannot be read: its own problem only
                await self._dead_letter_or_hold(record, DeadLetter(str(exc) or repr(exc),
                                                                   type(exc).__name__, 1), held)
                continue
            if item is not None:
                pending.append(item)
        if not pending:
            return held
        try:
            await self._apply_together(pending)
        except Exception as exc:
            if is_database_unavailable(exc):
                raise DatabaseUnavailable(str(exc)) from exc
            log.info("batch of %d failed (%s); applying one by one", len(pending), exc)
            for item in pending:
                partition = TopicPartition(item.record.topic, item.record.partition)
                if partition in held:
                    continue  # an earlier record of its partition is held: this one comes again
                if asyncio.get_running_loop().time() > deadline:
                    log.warning("%s: batch budget of %.0fs spent; %s@%s comes again", self.group,
                                self._batch_budget_s, partition, item.record.offset)
                    held[partition] = item.record.offset
                    continue
                await self._apply_alone(item, held)
        return held

    async def _dead_letter_or_hold(self, record: Any, letter: DeadLetter,
                                   held: dict[TopicPartition, int]) -> None:
        """Dead-letter a record; when that send fails, hold its partition at it (it is
        fetched and tried again) while the other partitions go on."""
        partition = TopicPartition(record.topic, record.partition)
        if partition in held:
            return
        try:
            await asyncio.wait_for(self.dead_letter(record, letter), self._dead_letter_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._metrics.dead_letter_failures.inc()
            log.error("%s: dead-lettering %s@%s failed (%r); its partition waits and tries again",
                      self.group, partition, record.offset, exc)
            held[partition] = record.offset

    def _prepare(self, record: Any) -> _Pending | None:
        """Decode, check and validate one record; anything it raises is this record's
        problem (it is dead-lettered), never the batch's."""
        envelope = from_kafka(record.key, record.value, record.headers)
        handler = self._subscriptions.handler_for(envelope.type)
        if handler is None:
            return None  # topics carry many types; this group handles only some
        if self._check_sources:
            check_source(envelope)
        payload = parse_payload(envelope)
        payload_org = getattr(payload, "org_id", None)
        if payload_org is not None and payload_org != envelope.orgid:
            raise PermanentError(
                f"orgid extension {envelope.orgid!r} does not match payload org_id {payload_org!r}"
            )
        return _Pending(record, envelope, handler, payload)

    async def _apply_together(self, pending: list[_Pending]) -> None:
        handled: Counter[str] = Counter()
        async with self._engine.begin() as conn:
            fresh = await self._mark_handled(conn, pending)
            writes, reads = PendingWrites(), TransactionReads()
            for item in pending:
                if (item.envelope.source, item.envelope.id) in fresh:
                    fresh.discard((item.envelope.source, item.envelope.id))  # twice in one batch
                    await self._handle(conn, item, writes, reads)
                    handled[item.envelope.type] += 1
            await writes.flush(conn)
            failpoint("consumer.before_commit")
        self._count_handled(handled)

    def _count_handled(self, handled: Counter[str]) -> None:
        """Count committed events once per type and batch (not per event: labels()
        looks its child up under a lock)."""
        for name, count in handled.items():
            self._metrics.events_handled.labels(name).inc(count)

    async def _mark_handled(self, conn: Any, pending: list[_Pending], attempts: int = 1) -> set[tuple[str, str]]:
        """Record the batch in the inbox in one statement (with the try it took);
        returns the (source, id) pairs that were not there yet (the others are
        redeliveries)."""
        result = await conn.execute(
            _MARK_HANDLED,
            {
                "group": self.group,
                "sources": [item.envelope.source for item in pending],
                "ids": [item.envelope.id for item in pending],
                "types": [item.envelope.type for item in pending],
                "orgs": [item.envelope.orgid for item in pending],
                "times": [item.envelope.time for item in pending],
                "correlations": [item.envelope.correlationid for item in pending],
                "causations": [item.envelope.causationid for item in pending],
                "attempts": attempts,
            },
        )
        fresh = {(row.source, row.event_id) for row in result}
        self._metrics.events_duplicate.inc(
            len({(item.envelope.source, item.envelope.id) for item in pending}) - len(fresh))
        return fresh

    async def _apply_alone(self, item: _Pending, held: dict[TopicPartition, int]) -> None:
        attempts = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._max_attempts),
                wait=wait_exponential(multiplier=self._retry_base_s, max=5),
                retry=retry_if_exception(is_transient),
                reraise=True,
            ):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    async with self._engine.begin() as conn:
                        handled = await self._apply(conn, item, attempts)
                    if handled:
                        self._count_handled(Counter({item.envelope.type: 1}))
        except Exception as exc:
            if is_database_unavailable(exc):
                raise DatabaseUnavailable(str(exc)) from exc
            log.warning("dead-lettering %s %s after %d attempts: %s",
                        item.envelope.type, item.envelope.id, attempts, exc)
            await self._dead_letter_or_hold(
                item.record, DeadLetter(str(exc) or repr(exc), type(exc).__name__, attempts), held)

    async def _apply(self, conn: Any, item: _Pending, attempts: int) -> bool:
        """Apply one event; False when its inbox mark was there already."""
        if not await self._mark_handled(conn, [item], attempts):
            return False
        writes = PendingWrites()
        await self._handle(conn, item, writes, TransactionReads())
        await writes.flush(conn)
        return True

    async def _handle(self, conn: Any, item: _Pending, writes: PendingWrites, reads: TransactionReads) -> None:
        envelope = item.envelope
        uow = self._uow.bind(
            conn, correlation_id=envelope.correlationid, causation_id=envelope.id, pending=writes, reads=reads
        )
        with correlation_scope(envelope.correlationid), span(
                f"handle {envelope.type}", service=self.group, kind=SpanKind.CONSUMER, parent=envelope.traceparent,
                attributes={"stayops.event_id": envelope.id, "stayops.org_id": envelope.orgid,
                            "messaging.consumer.group.name": self.group}):
            await item.handler(EventContext(uow, envelope, self._results), item.payload)

    async def dead_letter(self, record: Any, letter: DeadLetter) -> None:
        """Park a record on the group's dead-letter topic with why and where it came from."""
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith("dlq_")]
        orgid = next((v for k, v in headers if k == "ce_orgid"), b"")
        headers += [
            ("dlq_reason", letter.reason[:4000].encode()),
            ("dlq_error_type", letter.error_type.encode()),
            ("dlq_original_topic", str(record.topic).encode()),
            ("dlq_original_partition", str(record.partition).encode()),
            ("dlq_original_offset", str(record.offset).encode()),
            ("dlq_attempts", str(letter.attempts).encode()),
            ("dlq_consumer_group", self.group.encode()),
            ("dlq_orgid", orgid if isinstance(orgid, bytes) else str(orgid).encode()),
            ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        await self._producer.send_and_wait(
            dead_letter_topic(self.group), value=record.value, key=record.key, headers=headers
        )
        self._metrics.events_dead_lettered.labels(letter.error_type).inc()

    def stop(self) -> None:
        """Ask `run` to return after the batch in flight is applied and committed."""
        self._stopping.set()

    @property
    def stopping(self) -> asyncio.Event:
        return self._stopping

    async def run(
        self,
        bootstrap_servers: str,
        *,
        max_records: int = 200,
        fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS["kafka"],
        auto_offset_reset: str = "earliest",
        started: asyncio.Event | None = None,
    ) -> None:
        """Consume until `stop()`. Offsets are committed by hand, per partition, only
        after the batch's database transaction committed.

        This loop sits on aiokafka directly rather than a FastStream subscriber: the
        batch subscriber sleeps its `batch_timeout_ms` again after every empty poll
        (tens of ms added to each hop of a saga), and its ack policies either commit
        first (ACK_FIRST) or commit a failed message (REJECT_ON_ERROR). `getmany`
        here long-polls and returns as soon as records arrive."""
        topics = [*self._subscriptions.topics, *([self._replay_topic] if self._replay_topic else [])]
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap_servers,
            group_id=self.group,
            client_id=f"{self.group}-consumer",
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            fetch_max_wait_ms=fetch_max_wait_ms,
            max_poll_interval_ms=300_000,
        )
        await consumer.start()
        if started is not None:
            started.set()
        try:
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=max_records)
                if batch:
                    await self._consume_and_commit(consumer, batch)
        finally:
            if self._committing is not None:
                await self._committing
            await consumer.stop()

    async def _consume_and_commit(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]]
    ) -> None:
        records = [record for part in batch.values() for record in part]
        async with self._in_flight:
            try:
                held = await self.consume_batch(records)
            except Exception as exc:  # nothing committed: rewind and fetch the batch again
                if is_database_unavailable(exc):
                    self._metrics.database_unavailable.inc()
                log.warning("%s: batch not applied (%s); retrying in %.1fs",
                            self.group, exc, self._unavailable_backoff_s)
                for partition, part in batch.items():
                    consumer.seek(partition, part[0].offset)
                await asyncio.sleep(self._unavailable_backoff_s)
                return
        failpoint("consumer.after_commit")  # effects committed, offsets not yet
        # A held partition is read again from the record it is held at; the records
        # after it that were applied find their inbox marks.
        for partition, offset in held.items():
            consumer.seek(partition, offset)
            self._pause_briefly(consumer, partition)
        # The effects are committed; the offset commit may finish while the next batch
        # is fetched. Commits stay in order: each waits for the one before it.
        offsets = {partition: held.get(partition, part[-1].offset + 1)
                   for partition, part in batch.items()}
        offsets = {partition: offset for partition, offset in offsets.items()
                   if offset > batch[partition][0].offset}
        if offsets:
            previous = self._committing
            self._committing = asyncio.create_task(self._commit(consumer, offsets, previous))

    def _pause_briefly(self, consumer: AIOKafkaConsumer, partition: TopicPartition) -> None:
        """A held partition rests a moment before its record is tried again (no hot
        loop on it); the others are fetched meanwhile."""
        consumer.pause(partition)

        def resume() -> None:
            if partition in consumer.assignment():
                consumer.resume(partition)

        asyncio.get_running_loop().call_later(self._unavailable_backoff_s, resume)

    async def _commit(
        self,
        consumer: AIOKafkaConsumer,
        offsets: dict[TopicPartition, int],
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            await previous
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions; their new owner gets the records
            # again and the inbox absorbs them.
            log.warning("%s: offset commit refused after a rebalance: %s", self.group, exc)
        except Exception as exc:  # the broker is away: the records come again later
            log.warning("%s: offset commit failed: %s", self.group, exc)
