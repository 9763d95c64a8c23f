"""What PostgreSQL spends on the outbox's mark-sent update, per row: today's table
(`sent_at` in two partial indexes, so the update is never HOT) against the same table
with `sent_at` in no index and fillfactor 50 (room in each page, so the update is a
HOT one). The second layout has no fast way to find unsent rows, so both measure the
mark alone: what a layout keeping the unsent state out of every index could save.

Counts the server backend's own CPU (user + system from /proc), not the client's,
on one embedded PostgreSQL: rows inserted 25 per statement as the writers do, then
marked in batches of 256 as the relay does (`synchronous_commit = off`).

    python benchmarks/outbox_mark.py [--rows 20000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import asyncpg
import sqlalchemy as sa

from stayops_infra.cpumeter import cpu_seconds
from stayops_infra.testing import start_test_stack
from stayops_kit.db import asyncpg_dsn, create_engine
from stayops_kit.migrations import create_messaging_tables

PER_INSERT = 25
PER_MARK = 256

# 1 KB of JSONB per row, as the messaging benchmark's events carry.
_INSERT = """
INSERT INTO outbox (event_id, event_type, topic, partition_key, org_id, source, correlation_id,
                    dataschema, payload, occurred_at)
SELECT gen_random_uuid(), 'stayops.task.created', 'stayops.tasks', 'k' || (g % 128), 'org-1', '/bench',
       gen_random_uuid()::text, 'urn:stayops:schema:stayops.task.created:v1',
       jsonb_build_object('seq', g, 'padding', repeat('x', 900)), now()
FROM generate_series($1::int, $2::int) AS g
"""
_MARK_SENT = "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])"
# No index names sent_at (nor parked_at, which shares the unsent index's predicate).
_HOT_ABLE = (
    "DROP INDEX outbox_unsent",
    "DROP INDEX outbox_sent_at",
    "ALTER TABLE outbox SET (fillfactor = 50)",
)



async def measure(url: str, layout: str, rows: int) -> str:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(create_messaging_tables)
        if layout == "hot-able":
            for statement in _HOT_ABLE:
                await conn.execute(sa.text(statement))
    await engine.dispose()
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        await conn.execute("SET synchronous_commit = off")
        started = cpu_seconds(pid)
        for first in range(1, rows + 1, PER_INSERT):
            await conn.execute(_INSERT, first, min(first + PER_INSERT - 1, rows))
        inserted = cpu_seconds(pid)
        ids = [row["id"] for row in await conn.fetch("SELECT id FROM outbox ORDER BY id")]
        read = cpu_seconds(pid)
        for start in range(0, len(ids), PER_MARK):
            await conn.execute(_MARK_SENT, ids[start:start + PER_MARK])
        marked = cpu_seconds(pid)
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await asyncio.sleep(1.5)  # the statistics collector's counts arrive late
        updates, hot = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'outbox'")
        size = await conn.fetchval("SELECT pg_total_relation_size('outbox')")
    finally:
        await conn.close()
    return (f"{layout:<9} insert {(inserted - started) / rows * 1e6:5.1f} us/row   "
            f"mark {(marked - read) / rows * 1e6:5.1f} us/row   "
            f"HOT {hot:,} of {updates:,} updates   table and indexes {size / 1e6:.0f} MB")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="stayops-bench-") as data_dir:
        stack = await asyncio.to_thread(start_test_stack, Path(data_dir))
        try:
            for round_ in range(args.rounds):
                for layout in ("today", "hot-able"):
                    url = await stack.create_database(f"mark_{layout.replace('-', '_')}_{round_}")
                    print(await measure(url, layout, args.rows), flush=True)
        finally:
            stack.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
