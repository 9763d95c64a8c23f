"""Alembic helpers shared by the services: the async env runner, the messaging
tables' migration step, and `upgrade_head` for start-up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from stayops_kit.db import NOTIFY_FUNCTION_SQL, NOTIFY_TRIGGER_SQL, messaging_metadata

# Two replicas starting together must not both run the same migration.
_MIGRATION_LOCK_KEY = 7_311_010


def create_messaging_tables(connection: Connection) -> None:
    """The first migration of every service: outbox, inbox and the NOTIFY trigger."""
    messaging_metadata.create_all(connection)
    connection.execute(sa.text(NOTIFY_FUNCTION_SQL))
    connection.execute(sa.text(NOTIFY_TRIGGER_SQL))


# Brings the messaging tables of an older first migration to today's shape; each
# statement is a no-op on a database whose first migration already made it.
_UPGRADE_MESSAGING = (
    "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS retry_at timestamptz",
    "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS parked_at timestamptz",
    "DROP INDEX IF EXISTS outbox_unsent",
    "CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL AND parked_at IS NULL",
    "CREATE INDEX IF NOT EXISTS outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL",
    "ALTER TABLE inbox ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT ''",
    "ALTER TABLE inbox DROP CONSTRAINT inbox_pkey, ADD PRIMARY KEY (consumer_group, source, event_id)",
    "CREATE INDEX IF NOT EXISTS inbox_handled_at ON inbox (handled_at)",
)


def upgrade_messaging_tables(connection: Connection) -> None:
    """A service's `_messaging` migration: per-row relay retries and parking, the
    indexes pruning uses, and inbox identity by (source, id)."""
    for statement in _UPGRADE_MESSAGING:
        connection.execute(sa.text(statement))


# The columns and indexes GET /v1/events reads (stayops_kit.history); no-ops on a
# database whose first migration already made them.
_EVENT_HISTORY = (
    "ALTER TABLE inbox ADD COLUMN IF NOT EXISTS occurred_at timestamptz",
    "ALTER TABLE inbox ADD COLUMN IF NOT EXISTS correlation_id text",
    "ALTER TABLE inbox ADD COLUMN IF NOT EXISTS causation_id text",
    "ALTER TABLE inbox ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 1",
    "CREATE INDEX IF NOT EXISTS outbox_correlation ON outbox (org_id, correlation_id)",
    "CREATE INDEX IF NOT EXISTS outbox_subject ON outbox (org_id, subject)",
    "CREATE INDEX IF NOT EXISTS outbox_partition_key ON outbox (org_id, partition_key)",
    "CREATE INDEX IF NOT EXISTS inbox_correlation ON inbox (org_id, correlation_id)",
    "CREATE INDEX IF NOT EXISTS inbox_event ON inbox (event_id)",
)


def add_event_history(connection: Connection) -> None:
    """A service's `_event_history` migration: the inbox keeps each event's time,
    correlation, cause and attempts, and the outbox and inbox are indexed by what
    GET /v1/events filters on."""
    for statement in _EVENT_HISTORY:
        connection.execute(sa.text(statement))


def add_trace_context(connection: Connection) -> None:
    """A service's `_trace_context` migration: the outbox keeps each event's W3C
    `traceparent` (stayops_kit.tracing); a no-op where the first migration made it."""
    connection.execute(sa.text("ALTER TABLE outbox ADD COLUMN IF NOT EXISTS traceparent text"))


def run_env(target_metadata: sa.MetaData | None) -> None:
    """Body of a service's `migrations/env.py`: online migrations over asyncpg."""
    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set: call upgrade_head(migrations_dir, url)")

    def run(connection: Connection) -> None:
        connection.execute(sa.text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})"))
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(run)
        await engine.dispose()

    asyncio.run(main())


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


async def upgrade_head(migrations_dir: Path, database_url: str) -> None:
    """Apply every migration; runs Alembic in a thread because its env owns a loop."""
    if not (migrations_dir / "env.py").exists():
        raise FileNotFoundError(f"no Alembic env.py in {migrations_dir}")
    await asyncio.to_thread(command.upgrade, alembic_config(migrations_dir, database_url), "head")
