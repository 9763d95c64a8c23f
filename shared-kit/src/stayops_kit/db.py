"""The async SQLAlchemy Core engine on asyncpg, and the messaging tables
(outbox, inbox) that every service's first migration creates."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

OUTBOX_CHANNEL = "stayops_outbox"

messaging_metadata = sa.MetaData()

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
    sa.Column("payload", pg.JSONB, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
)
# The relay reads only unsent rows; a partial index keeps that scan small however
# much history is kept.
sa.Index("outbox_unsent", outbox.c.id, postgresql_where=outbox.c.sent_at.is_(None))
sa.Index("outbox_correlation", outbox.c.org_id, outbox.c.correlation_id)

inbox = sa.Table(
    "inbox",
    messaging_metadata,
    sa.Column("consumer_group", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

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


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An engine for one service's database (`postgresql+asyncpg://...`)."""
    if not database_url.startswith("postgresql+asyncpg://"):
        raise ValueError(
            f"database URL must use the asyncpg driver (postgresql+asyncpg://...), got {database_url!r}"
        )
    return create_async_engine(
        database_url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


def asyncpg_dsn(database_url: str) -> str:
    """The plain libpq DSN asyncpg accepts, for connections outside SQLAlchemy (LISTEN)."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
