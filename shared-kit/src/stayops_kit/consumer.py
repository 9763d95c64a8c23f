"""The idempotent inbox consumer.

For each batch of Kafka records: decode and validate every event, then apply the
handled ones in one transaction that also records `(consumer group, event id)` in
the inbox; only after that commit is the Kafka offset committed. A redelivered
event finds its inbox mark and has no effect. When the batch transaction fails,
each event is applied on its own: transient errors retry with backoff, and an
event that cannot be decoded, validated or handled goes to `<group>.dlq` with the
reason. If the database itself is unreachable nothing is dead-lettered: the
batch is rewound and fetched again after a pause.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from stayops_kit.errors import PermanentError, TransientError
from stayops_kit.failpoints import failpoint
from stayops_kit.logs import correlation_scope
from stayops_kit.metrics import Metrics
from stayops_kit.outbox import PendingWrites, UnitOfWork, UnitOfWorkFactory
from stayops_schemas.binding import from_kafka
from stayops_schemas.catalog import dead_letter_topic, event_type, parse_payload
from stayops_schemas.envelope import Envelope
from stayops_schemas.errors import SchemaError
from stayops_schemas.ownership import check_source

log = logging.getLogger(__name__)

REDRIVE_HEADER = "stayops_redrive_count"

# One statement for a whole batch, whatever its size (arrays, not a VALUES list).
_MARK_HANDLED = sa.text(
    """
    INSERT INTO inbox (consumer_group, event_id, event_type, org_id)
    SELECT :group, e.id, e.type, e.org
    FROM unnest(CAST(:ids AS text[]), CAST(:types AS text[]), CAST(:orgs AS text[])) AS e(id, type, org)
    ON CONFLICT DO NOTHING
    RETURNING event_id
    """
)


@dataclass(frozen=True)
class EventContext:
    """What a handler gets: the unit of work (its connection and `announce`) and the
    event's envelope. The tenant is `envelope.orgid`, never ambient state."""

    uow: UnitOfWork
    envelope: Envelope

    @property
    def org_id(self) -> str:
        return self.envelope.orgid


Handler = Callable[[EventContext, Any], Awaitable[None]]


class Subscriptions:
    """The event types one consumer group handles, each with its handler."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def on(self, *event_types: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            for name in event_types:
                event_type(name)  # fails at start-up for a type missing from the catalog
                if name in self._handlers:
                    raise ValueError(f"{name} already has a handler")
                self._handlers[name] = handler
            return handler

        return register

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


def is_database_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    cause = exc.__cause__ if isinstance(exc, sa.exc.DBAPIError) else exc
    return isinstance(
        cause,
        OSError
        | ConnectionError
        | asyncpg.CannotConnectNowError
        | asyncpg.ConnectionDoesNotExistError
        | asyncpg.InterfaceError
        | sa.exc.InterfaceError
        | sa.exc.TimeoutError,
    )


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        return getattr(exc.orig, "sqlstate", None) in {"40001", "40P01", "55P03", "57014"}
    return False


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
    ) -> None:
        """`check_sources`: dead-letter an event whose source does not own its type
        (`stayops_schemas.ownership`); off only for the messaging probe."""
        self.group = group
        self._check_sources = check_sources
        self._subscriptions = subscriptions
        self._uow = uow_factory
        self._producer = producer
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._retry_base_s = retry_base_s
        self._unavailable_backoff_s = unavailable_backoff_s
        self._in_flight = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._committing: asyncio.Task[None] | None = None

    async def consume_batch(self, records: Sequence[Any]) -> None:
        """Apply a batch; returns once every record is applied, skipped or dead-lettered.
        Raises `DatabaseUnavailable` when nothing could be applied for now."""
        pending: list[_Pending] = []
        for record in records:
            try:
                item = self._prepare(record)
            except (SchemaError, PermanentError) as exc:
                await self.dead_letter(record, DeadLetter(str(exc), type(exc).__name__, 1))
                continue
            if item is not None:
                pending.append(item)
        if not pending:
            return
        try:
            await self._apply_together(pending)
        except Exception as exc:
            if is_database_unavailable(exc):
                raise DatabaseUnavailable(str(exc)) from exc
            log.info("batch of %d failed (%s); applying one by one", len(pending), exc)
            for item in pending:
                await self._apply_alone(item)

    def _prepare(self, record: Any) -> _Pending | None:
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
        async with self._uow.engine.begin() as conn:
            fresh = await self._mark_handled(conn, pending)
            writes = PendingWrites()
            for item in pending:
                if item.envelope.id in fresh:
                    fresh.discard(item.envelope.id)  # the same event twice in one batch
                    await self._handle(conn, item, writes)
            await writes.flush(conn)
            failpoint("consumer.before_commit")

    async def _mark_handled(self, conn: Any, pending: list[_Pending]) -> set[str]:
        """Record the batch in the inbox in one statement; returns the ids that were
        not there yet (the others are redeliveries)."""
        result = await conn.execute(
            _MARK_HANDLED,
            {
                "group": self.group,
                "ids": [item.envelope.id for item in pending],
                "types": [item.envelope.type for item in pending],
                "orgs": [item.envelope.orgid for item in pending],
            },
        )
        fresh = {row.event_id for row in result}
        self._metrics.events_duplicate.inc(len({item.envelope.id for item in pending}) - len(fresh))
        return fresh

    async def _apply_alone(self, item: _Pending) -> None:
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
                    async with self._uow.engine.begin() as conn:
                        await self._apply(conn, item)
        except Exception as exc:
            if is_database_unavailable(exc):
                raise DatabaseUnavailable(str(exc)) from exc
            log.warning("dead-lettering %s %s after %d attempts: %s",
                        item.envelope.type, item.envelope.id, attempts, exc)
            await self.dead_letter(item.record, DeadLetter(str(exc) or repr(exc),
                                                           type(exc).__name__, attempts))

    async def _apply(self, conn: Any, item: _Pending) -> None:
        if await self._mark_handled(conn, [item]):
            writes = PendingWrites()
            await self._handle(conn, item, writes)
            await writes.flush(conn)

    async def _handle(self, conn: Any, item: _Pending, writes: PendingWrites) -> None:
        envelope = item.envelope
        uow = self._uow.bind(
            conn, correlation_id=envelope.correlationid, causation_id=envelope.id, pending=writes
        )
        with correlation_scope(envelope.correlationid):
            await item.handler(EventContext(uow, envelope), item.payload)
        self._metrics.events_handled.labels(envelope.type).inc()

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
        fetch_max_wait_ms: int = 10,
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
        consumer = AIOKafkaConsumer(
            *self._subscriptions.topics,
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
                await self.consume_batch(records)
            except Exception as exc:  # nothing committed: rewind and fetch the batch again
                log.warning("%s: batch not applied (%s); retrying in %.1fs",
                            self.group, exc, self._unavailable_backoff_s)
                for partition, part in batch.items():
                    consumer.seek(partition, part[0].offset)
                await asyncio.sleep(self._unavailable_backoff_s)
                return
        # The effects are committed; the offset commit may finish while the next batch
        # is fetched. Commits stay in order: each waits for the one before it.
        offsets = {partition: part[-1].offset + 1 for partition, part in batch.items()}
        previous = self._committing
        self._committing = asyncio.create_task(self._commit(consumer, offsets, previous))

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
