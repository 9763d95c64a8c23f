"""The async SQLAlchemy Core engine on asyncpg, and the messaging tables
(outbox, inbox) that every service's first migration creates."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

OUTBOX_CHANNEL = "stayops_outbox"

messaging_metadata = sa.MetaData()


class JsonText(sa.types.TypeDecorator[Any]):
    """JSONB that takes JSON text as written (`announce` has the payload in JSON
    already: encoding its dict again would cost the writers a second serialisation)
    or a Python value to encode; read back as Python values."""

    impl = pg.JSONB
    cache_ok = True

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
        encode = self.impl_instance.bind_processor(dialect)

        def process(value: Any) -> Any:
            if isinstance(value, str) or encode is None:
                return value
            return encode(value)

        return process


outbox = sa.Table(
    "outbox",
    messaging_metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("event_id", pg.UUID(as_uuid=False), nullable=False, unique=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("partition_key", sa.Text, nullable=False),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("correlation_id", sa.Text),
    sa.Column("causation_id", sa.Text),
    sa.Column("dataschema", sa.Text),
    sa.Column("subject", sa.Text),
    sa.Column("payload", JsonText, nullable=False),
    # W3C trace context of the span that announced the event (CloudEvents distributed
    # tracing), null when tracing is off.
    sa.Column("traceparent", sa.Text),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("retry_at", sa.DateTime(timezone=True)),  # a refused row waits until then
    sa.Column("parked_at", sa.DateTime(timezone=True)),  # refused too often: set aside
)
# The relay reads only unsent, unparked rows; a partial index keeps that scan (and
# the mark-sent update) small however much history is kept.
sa.Index("outbox_unsent", outbox.c.id,
         postgresql_where=sa.and_(outbox.c.sent_at.is_(None), outbox.c.parked_at.is_(None)))
sa.Index("outbox_sent_at", outbox.c.sent_at, postgresql_where=outbox.c.sent_at.is_not(None))
sa.Index("outbox_correlation", outbox.c.org_id, outbox.c.correlation_id)
# GET /v1/events by subject: an event's subject or its aggregate (partition key).
sa.Index("outbox_subject", outbox.c.org_id, outbox.c.subject)
sa.Index("outbox_partition_key", outbox.c.org_id, outbox.c.partition_key)

inbox = sa.Table(
    "inbox",
    messaging_metadata,
    sa.Column("consumer_group", sa.Text, primary_key=True),
    # CloudEvents identity is (source, id): two sources may reuse an id.
    sa.Column("source", sa.Text, primary_key=True, server_default=""),
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # For GET /v1/events: the event's time, correlation and cause (so an event no
    # StayOps outbox holds, a sync platform's, still has its place in a trace), and
    # the tries its application took.
    sa.Column("occurred_at", sa.DateTime(timezone=True)),
    sa.Column("correlation_id", sa.Text),
    sa.Column("causation_id", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
)
sa.Index("inbox_handled_at", inbox.c.handled_at)  # pruning by age
sa.Index("inbox_correlation", inbox.c.org_id, inbox.c.correlation_id)
sa.Index("inbox_event", inbox.c.event_id)

# One payload-less NOTIFY per inserting statement: PostgreSQL folds identical
# notifications of one transaction into one, and delivers it at commit.
NOTIFY_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION stayops_outbox_notify() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('{OUTBOX_CHANNEL}', '');
  RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
NOTIFY_TRIGGER_SQL = """
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
FOR EACH STATEMENT EXECUTE FUNCTION stayops_outbox_notify()
"""


# Every session gets bounds, so that one stuck statement, a lock queue or a
# transaction left open by a crashed task cannot hold rows (and the relay) forever.
STATEMENT_TIMEOUT_MS = 30_000
LOCK_TIMEOUT_MS = 10_000
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000


def session_settings() -> dict[str, str]:
    """Server settings of every StayOps session (pool connections and plain ones)."""
    return {
        "statement_timeout": str(STATEMENT_TIMEOUT_MS),
        "lock_timeout": str(LOCK_TIMEOUT_MS),
        "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_TIMEOUT_MS),
    }


# A pooled connection idle longer than this is pinged (one round trip) before use:
# a peer that vanished without closing the socket is found then — a ping unanswered
# within PING_TIMEOUT_S, since such a socket never errors (TCP gives up after minutes).
# A connection the server closed (a restart, a failover, a terminated backend) is found
# for free.
PING_AFTER_IDLE_S = 30.0
PING_TIMEOUT_S = 5.0


def create_engine(database_url: str, *, pool_size: int = 10, pre_ping: bool = True) -> AsyncEngine:
    """An engine for one service's database (`postgresql+asyncpg://...`).

    `pre_ping` checks each connection as it leaves the pool, without a round trip
    where it can: one the server closed (a restart) is replaced, and one idle for
    `PING_AFTER_IDLE_S` is pinged first. (SQLAlchemy's own pre-ping costs asyncpg
    three round trips, BEGIN, `;` and ROLLBACK, on every checkout: half of a
    one-statement transaction's.) A ping unanswered within `PING_TIMEOUT_S` (a peer
    gone silent) replaces the connection too. The consumer's hot path turns it off: a connection
    lost in a restart fails its batch, which is classified as the database being
    unavailable and fetched again."""
    if not database_url.startswith("postgresql+asyncpg://"):
        raise ValueError(
            f"database URL must use the asyncpg driver (postgresql+asyncpg://...), got {database_url!r}"
        )
    engine = create_async_engine(
        database_url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False,
        connect_args={"server_settings": session_settings(), "timeout": 10},
    )
    if pre_ping:
        sa.event.listen(engine.sync_engine, "checkin", _note_checkin)
        sa.event.listen(engine.sync_engine, "checkout", _check_on_checkout)
    return engine


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _check_on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Refuse a dead connection as it leaves the pool (the pool then opens another)."""
    driver = dbapi_connection.driver_connection  # the asyncpg connection
    if driver is None or driver.is_closed():
        raise sa.exc.DisconnectionError("the server closed the connection")
    idle_since = record.info.get("checked_in_at")
    if idle_since is not None and time.monotonic() - idle_since > PING_AFTER_IDLE_S:
        try:
            await_only(driver.fetchrow(";", timeout=PING_TIMEOUT_S))  # one round trip, outside any transaction
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"ping failed: {exc!r}") from exc


def asyncpg_dsn(database_url: str) -> str:
    """The plain libpq DSN asyncpg accepts, for connections outside SQLAlchemy (LISTEN)."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
