"""The outbox relay: publishes committed outbox rows to Kafka and marks them sent.

It claims rows by their own state (`sent_at IS NULL`), never by a remembered id,
so a transaction that took a lower id and committed late is still published.
Per-key order holds because handlers lock their aggregate before writing (rows of
one key are inserted in commit order), the relay publishes in id order through an
idempotent producer keyed by the aggregate, and only one relay per database runs
at a time (a session advisory lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from stayops_kit.clock import Clock, SystemClock
from stayops_kit.db import OUTBOX_CHANNEL, asyncpg_dsn, outbox
from stayops_kit.failpoints import failpoint
from stayops_kit.metrics import Metrics
from stayops_schemas.binding import to_kafka
from stayops_schemas.envelope import Envelope

log = logging.getLogger(__name__)

_RELAY_LOCK_KEY = 7_311_001
_SELECT_UNSENT = """
SELECT id, event_id, event_type, topic, partition_key, org_id, source, correlation_id,
       causation_id, dataschema, subject, payload, occurred_at
FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1
"""
_MARK_SENT = "UPDATE outbox SET sent_at = $1 WHERE id = ANY($2::bigint[])"
_MARK_FAILED = "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1"
LISTENER_APPLICATION_NAME = "stayops-relay-listener"


@dataclass(frozen=True)
class RelayConfig:
    database_url: str
    poll_interval_s: float = 1.0
    batch_size: int = 500
    retention: timedelta = timedelta(days=30)
    retry_backoff_s: float = 0.5
    max_backoff_s: float = 10.0


class OutboxRelay:
    """Run with `await relay.run()`; `stop()` finishes the batch in flight, then returns."""

    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        config: RelayConfig,
        metrics: Metrics,
        clock: Clock | None = None,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._config = config
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._lock_conn: asyncpg.Connection | None = None
        self.published = 0

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        try:
            await self._acquire_leadership()
            backoff = self._config.retry_backoff_s
            last_prune = 0.0
            while not self._stopping.is_set():
                if self._lock_conn is None or self._lock_conn.is_closed():
                    await self._acquire_leadership()
                await self._ensure_listener()
                try:
                    while await self.publish_pending() and not self._stopping.is_set():
                        pass
                    backoff = self._config.retry_backoff_s
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("relay: publishing failed, retrying in %.1fs", backoff)
                    self._metrics.relay_errors.inc()
                    await self._wait(backoff)
                    backoff = min(backoff * 2, self._config.max_backoff_s)
                    continue
                loop_time = asyncio.get_running_loop().time()
                if loop_time - last_prune > 3600:
                    last_prune = loop_time
                    await self.prune_sent()
                await self._wait(self._config.poll_interval_s)
        finally:
            await self._close_connections()

    async def _wait(self, seconds: float) -> None:
        """Wait for a NOTIFY, the poll interval or stop, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()

    async def publish_pending(self) -> bool:
        """Publish one batch of unsent rows in id order. True when the batch was full.

        It reads and marks rows on the connection that holds the relay lock: if that
        session dies, the lock goes with it and this relay stops writing."""
        conn = self._lock_conn
        if conn is None or conn.is_closed():
            raise RuntimeError("the relay lost its database session; it takes the lock again")
        rows = await conn.fetch(_SELECT_UNSENT, self._config.batch_size)
        if not rows:
            self._metrics.outbox_pending.set(0)
            return False
        failpoint("relay.before_send")
        sent_ids, failure = await self._send(rows)
        failpoint("relay.after_send")
        now = self._clock.now()
        async with conn.transaction():
            if sent_ids:
                await conn.execute(_MARK_SENT, now, sent_ids)
            if failure is not None:
                await conn.execute(_MARK_FAILED, failure[0], failure[1][:2000])
        for row in rows:
            if row["id"] in sent_ids:
                self._metrics.outbox_lag.observe((now - row["occurred_at"]).total_seconds())
        self.published += len(sent_ids)
        self._metrics.outbox_published.inc(len(sent_ids))
        if failure is not None:
            raise RuntimeError(f"outbox row {failure[0]} could not be published: {failure[1]}")
        return len(rows) == self._config.batch_size

    async def _send(self, rows: Sequence[Any]) -> tuple[list[int], tuple[int, str] | None]:
        """Send every row, then await the acks. Rows acked before the first failure
        of their key count as sent; the failed row and later rows of its key stay
        unsent and go again (the consumers' inbox absorbs the repeats)."""
        futures = []
        for row in rows:
            record = to_kafka(_envelope(row))
            futures.append(
                await self._producer.send(
                    row["topic"], value=record.value, key=record.key, headers=record.headers
                )
            )
        results = await asyncio.gather(*futures, return_exceptions=True)
        sent: list[int] = []
        failed_keys: set[str] = set()
        failure: tuple[int, str] | None = None
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException) or row["partition_key"] in failed_keys:
                failed_keys.add(row["partition_key"])
                if failure is None and isinstance(result, BaseException):
                    failure = (row["id"], repr(result))
            else:
                sent.append(row["id"])
        return sent, failure

    async def prune_sent(self) -> int:
        """Delete sent rows older than the retention period (history kept until then)."""
        cutoff = self._clock.now() - self._config.retention
        async with self._engine.begin() as conn:
            result = await conn.execute(
                outbox.delete().where(outbox.c.sent_at.is_not(None), outbox.c.sent_at < cutoff)
            )
        return int(result.rowcount or 0)

    async def _acquire_leadership(self) -> None:
        """Only one relay per database publishes; the others wait here (a replica
        takes over when the leader's session ends)."""
        while not self._stopping.is_set():
            try:
                if self._lock_conn is None or self._lock_conn.is_closed():
                    self._lock_conn = await asyncpg.connect(asyncpg_dsn(self._config.database_url))
                    await self._lock_conn.set_type_codec(
                        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
                    )
                if await self._lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", _RELAY_LOCK_KEY):
                    return
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("relay: cannot reach the database for the relay lock: %s", exc)
            await self._wait(self._config.poll_interval_s)

    async def _ensure_listener(self) -> None:
        """(Re)open the LISTEN connection; after a reconnect, poll at once, since
        notifications sent while it was down are lost."""
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            self._listener = await asyncpg.connect(
                asyncpg_dsn(self._config.database_url),
                server_settings={"application_name": LISTENER_APPLICATION_NAME},
            )
            await self._listener.add_listener(OUTBOX_CHANNEL, self._on_notify)
            self._listener.add_termination_listener(lambda _conn: self._wakeup.set())
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("relay: LISTEN connection failed (%s); polling every %.1fs", exc,
                        self._config.poll_interval_s)
            self._listener = None
        self._wakeup.set()

    def _on_notify(self, *_args: object) -> None:
        self._wakeup.set()

    async def _close_connections(self) -> None:
        for conn in (self._listener, self._lock_conn):
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.close()


def _envelope(row: Any) -> Envelope:
    return Envelope(
        id=str(row["event_id"]),
        type=row["event_type"],
        source=row["source"],
        orgid=row["org_id"],
        partitionkey=row["partition_key"],
        data=row["payload"],
        time=row["occurred_at"],
        correlationid=row["correlation_id"],
        causationid=row["causation_id"],
        dataschema=row["dataschema"],
        subject=row["subject"],
    )
