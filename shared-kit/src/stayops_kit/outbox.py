"""Writing events: the unit of work that holds a handler's state change and the
outbox rows announcing it in one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import pydantic_core
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stayops_kit.clock import Clock, IdFactory, SystemClock, new_id
from stayops_kit.db import outbox
from stayops_kit.errors import StayOpsError
from stayops_kit.kafka import MAX_RECORD_BYTES
from stayops_kit.tracing import span, traceparent
from stayops_schemas.catalog import event_type as catalog_entry
from stayops_schemas.envelope import Envelope

# Room left in a record for its key and CloudEvents headers.
_HEADER_ROOM = 16_384
MAX_EVENT_DATA_BYTES = MAX_RECORD_BYTES - _HEADER_ROOM

T = TypeVar("T")


class EventTooLarge(StayOpsError):
    """An event whose data would not fit in one Kafka record. Keep the detail in the
    service's own tables and announce its id and a summary (claim check)."""


@dataclass
class PendingWrites:
    """Rows waiting to be inserted at the end of a transaction, one statement per
    table: the outbox rows, and inserts a handler deferred. Several units of work
    (one per event of a consumer batch) may share one."""

    rows: dict[sa.Table, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, table: sa.Table, values: dict[str, Any]) -> None:
        self.rows.setdefault(table, []).append(values)

    async def flush(self, conn: AsyncConnection) -> None:
        pending, self.rows = self.rows, {}
        for table, rows in pending.items():
            await _write_rows(conn, table, rows)


# The columns `announce` fills; the others take their defaults.
_OUTBOX_COLUMNS = ("event_id", "event_type", "topic", "partition_key", "org_id", "source", "correlation_id",
                   "causation_id", "dataschema", "subject", "payload", "traceparent", "occurred_at")
# All of a transaction's events in one statement (and one NOTIFY), whatever their number.
_INSERT_OUTBOX = sa.text(
    f"""
    INSERT INTO outbox ({", ".join(_OUTBOX_COLUMNS)})
    SELECT {", ".join(f"e.{name}::jsonb" if name == "payload" else f"e.{name}" for name in _OUTBOX_COLUMNS)}
    FROM unnest(CAST(:event_id AS uuid[]), CAST(:event_type AS text[]), CAST(:topic AS text[]),
                CAST(:partition_key AS text[]), CAST(:org_id AS text[]), CAST(:source AS text[]),
                CAST(:correlation_id AS text[]), CAST(:causation_id AS text[]), CAST(:dataschema AS text[]),
                CAST(:subject AS text[]), CAST(:payload AS text[]), CAST(:traceparent AS text[]),
                CAST(:occurred_at AS timestamptz[])) AS e({", ".join(_OUTBOX_COLUMNS)})
    """
)


async def _write_rows(conn: AsyncConnection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Write a transaction's deferred rows of one table in one statement. Binary COPY
    is the cheapest (against an INSERT per row, about a quarter less CPU for the client
    and a third less for the server: `benchmarks/outbox_write.py`); it goes to the
    driver's connection, so it is used only once the transaction has begun there
    (SQLAlchemy begins it with its first statement, and a COPY outside it would commit
    on its own), and only for rows that need nothing a Core INSERT would add (the same
    columns in each, no Python-side default left out). Otherwise the outbox's rows go
    in one INSERT from arrays, which begins the transaction (when they name exactly
    the columns it writes), and other rows by an INSERT per row."""
    driver = (await conn.get_raw_connection()).driver_connection
    columns = _copyable_columns(table, rows)
    if columns is not None and driver is not None and driver.is_in_transaction():
        processors = [(name, column.type._cached_bind_processor(conn.dialect)) for name, column in columns]
        await driver.copy_records_to_table(
            table.name, schema_name=table.schema, columns=[column.name for _, column in columns],
            records=[tuple(row[name] if process is None else process(row[name]) for name, process in processors)
                     for row in rows])
    elif table is outbox and columns is not None and {name for name, _ in columns} == set(_OUTBOX_COLUMNS):
        await conn.execute(_INSERT_OUTBOX, {name: [row[name] for row in rows] for name in _OUTBOX_COLUMNS})
    else:
        await conn.execute(table.insert(), rows)


def _copyable_columns(table: sa.Table, rows: list[dict[str, Any]]) -> list[tuple[str, sa.Column[Any]]] | None:
    """The (key, column) pairs the rows fill, when every row fills the same ones and
    each column left out has no Python-side default; else None."""
    keys = rows[0].keys()
    if any(row.keys() != keys for row in rows) or not keys <= set(table.c.keys()):
        return None
    if any(column.default is not None for key, column in table.c.items() if key not in keys):
        return None
    return [(key, table.c[key]) for key in keys]


@dataclass
class TransactionReads:
    """Reads a transaction makes once and reuses. A consumer batch's units of work
    share one, so the org policy or the event automations a handler reads for every
    event are read once for all of the batch's events of an org. That is fresh
    enough: every event of a batch was published before its transaction began, so a
    read made in it sees whatever was committed before any of those events. A
    handler that writes what is remembered forgets it (`forget`), so that the
    batch's later events read the new value."""

    known: dict[Hashable, Any] = field(default_factory=dict)

    async def once(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """What `read` returned the first time this transaction asked for `key`."""
        if key not in self.known:
            self.known[key] = await read()
        return cast(T, self.known[key])

    def forget(self, key: Hashable) -> None:
        self.known.pop(key, None)


@dataclass
class UnitOfWork:
    """One transaction: `conn` for the handler's reads and writes, `announce` for
    its events. Nothing is visible to anyone until the transaction commits."""

    conn: AsyncConnection
    source: str
    clock: Clock
    ids: IdFactory
    correlation_id: str | None = None
    causation_id: str | None = None
    announced: list[Envelope] = field(default_factory=list)
    pending: PendingWrites = field(default_factory=PendingWrites)
    reads: TransactionReads = field(default_factory=TransactionReads)

    async def announce(
        self,
        event_type: str,
        payload: BaseModel,
        *,
        org_id: str,
        key: str,
        correlation_id: str | None = None,
        subject: str | None = None,
    ) -> Envelope:
        """Add an event to the outbox (written by `flush`, in this transaction). Its topic
        and schema come from the catalog, so a type missing there fails here, in tests;
        an event too big for one Kafka record raises `EventTooLarge` here too."""
        entry = catalog_entry(event_type)
        if not isinstance(payload, entry.model):
            raise TypeError(f"{event_type} carries {entry.model.__name__}, not {type(payload).__name__}")
        data = payload.model_dump_json()  # the row's payload, as it is, and its size
        size = len(data)
        if size > MAX_EVENT_DATA_BYTES:
            raise EventTooLarge(
                f"{event_type} for key {key!r} carries {size:,} bytes of data; an event may carry at "
                f"most {MAX_EVENT_DATA_BYTES:,} (Kafka refuses bigger records). Store the detail and "
                "announce its id and a summary instead."
            )
        event_id = self.ids()
        # The announcing span is the parent of the handlers' spans (W3C trace context).
        with span(f"announce {event_type}", service=self.source.lstrip("/"),
                  attributes={"stayops.event_id": event_id, "stayops.org_id": org_id}):
            context = traceparent()
        envelope = Envelope(
            id=event_id,
            type=event_type,
            source=self.source,
            orgid=org_id,
            partitionkey=key,
            # The data as the row stores it (decoding the JSON is cheaper than dumping
            # the model a second time).
            data=pydantic_core.from_json(data),
            time=self.clock.now(),
            correlationid=correlation_id or self.correlation_id,
            causationid=self.causation_id,
            dataschema=entry.dataschema,
            subject=subject,
            traceparent=context,
        )
        self.pending.add(outbox, _row(envelope, entry.topic, data))
        self.announced.append(envelope)
        return envelope

    def defer_insert(self, table: sa.Table, values: dict[str, Any]) -> None:
        """Insert a row at the end of the transaction, batched with others of its
        table. Only for rows nothing reads back before the commit (logs, effects)."""
        self.pending.add(table, values)

    async def flush(self) -> None:
        """Write the announced events and deferred rows. Runs before the commit;
        whoever commits a bound unit of work must call it."""
        await self.pending.flush(self.conn)


def _row(envelope: Envelope, topic: str, data: str) -> dict[str, Any]:
    return {
        "event_id": envelope.id,
        "event_type": envelope.type,
        "topic": topic,
        "partition_key": envelope.partitionkey,
        "org_id": envelope.orgid,
        "source": envelope.source,
        "correlation_id": envelope.correlationid,
        "causation_id": envelope.causationid,
        "dataschema": envelope.dataschema,
        "subject": envelope.subject,
        "payload": data,
        "traceparent": envelope.traceparent,
        "occurred_at": envelope.time,
    }


@dataclass(frozen=True)
class UnitOfWorkFactory:
    """Opens units of work on one service's engine."""

    engine: AsyncEngine
    source: str
    clock: Clock = field(default_factory=SystemClock)
    ids: IdFactory = new_id

    @asynccontextmanager
    async def begin(
        self, *, correlation_id: str | None = None, causation_id: str | None = None
    ) -> AsyncIterator[UnitOfWork]:
        """Commit when the block ends normally, roll back when it raises."""
        async with self.engine.begin() as conn:
            uow = self.bind(conn, correlation_id=correlation_id, causation_id=causation_id)
            yield uow
            await uow.flush()

    def bind(
        self,
        conn: AsyncConnection,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        pending: PendingWrites | None = None,
        reads: TransactionReads | None = None,
    ) -> UnitOfWork:
        """A unit of work on a transaction someone else opened and will commit;
        units of work on one transaction may share its `pending` writes and `reads`."""
        return UnitOfWork(
            conn=conn,
            source=self.source,
            clock=self.clock,
            ids=self.ids,
            correlation_id=correlation_id,
            causation_id=causation_id,
            pending=pending or PendingWrites(),
            reads=reads or TransactionReads(),
        )
