"""What writing a transaction's outbox rows costs, per row, three ways: SQLAlchemy's
executemany (one INSERT per row: how every deferred row went in before, and how rows
COPY cannot take still do), one INSERT of all rows from arrays (`unnest`: how a
transaction's events go in when they are its first statement), and binary COPY on
the driver's connection (how a transaction's deferred rows go in once it has begun).
Counts the client's CPU (this process, only the writing) and the server backend's
(user + system from /proc), on one embedded PostgreSQL:
25 rows of ~1 KB per transaction, as the messaging benchmark's writers write them,
each transaction begun by a `SELECT 1` standing in for the handler's own statements
(its cost is in all three figures).

    python benchmarks/outbox_write.py [--rows 20000] [--per-transaction 25] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from stayops_infra.cpumeter import cpu_seconds
from stayops_infra.testing import start_test_stack
from stayops_kit.db import create_engine, outbox
from stayops_kit.migrations import create_messaging_tables
from stayops_kit.outbox import _INSERT_OUTBOX, _OUTBOX_COLUMNS

WAYS = ("executemany", "unnest", "copy")



def transactions(rows: int, per_transaction: int) -> list[list[dict[str, Any]]]:
    """The rows `announce` would make, grouped by transaction."""
    now = datetime.now(UTC)
    padding = "x" * 900
    made = [{"event_id": str(uuid.uuid4()), "event_type": "stayops.task.created", "topic": "stayops.tasks",
             "partition_key": f"k{i % 8}", "org_id": "org-1", "source": "/bench", "correlation_id": str(uuid.uuid4()),
             "causation_id": None, "dataschema": "urn:stayops:schema:stayops.task.created:v1", "subject": None,
             "payload": f'{{"org_id": "org-1", "seq": {i}, "padding": "{padding}"}}', "traceparent": None,
             "occurred_at": now} for i in range(rows)]
    return [made[i:i + per_transaction] for i in range(0, rows, per_transaction)]


async def measure(url: str, way: str, rows: int, per_transaction: int) -> str:
    engine = create_engine(url, pool_size=1)
    async with engine.begin() as conn:
        await conn.run_sync(create_messaging_tables)
    batches = transactions(rows, per_transaction)
    async with engine.connect() as conn:
        pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        await conn.commit()
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        server, client = cpu_seconds(pid), time.process_time()
        for batch in batches:
            async with conn.begin():
                # A handler's own statements begin the transaction before its events go in.
                await conn.execute(sa.text("SELECT 1"))
                if way == "executemany":
                    await conn.execute(outbox.insert(), batch)
                elif way == "unnest":
                    await conn.execute(_INSERT_OUTBOX, {name: [row[name] for row in batch] for name in _OUTBOX_COLUMNS})
                else:
                    await driver.copy_records_to_table("outbox", columns=_OUTBOX_COLUMNS, records=[
                        tuple(row[name] for name in _OUTBOX_COLUMNS) for row in batch])
        client, server = time.process_time() - client, cpu_seconds(pid) - server
        written = (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one()
    await engine.dispose()
    assert written == rows, f"{way}: {written} of {rows} rows"
    return f"{way:<12} client {client / rows * 1e6:6.1f} us/row   server {server / rows * 1e6:6.1f} us/row"


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="stayops-bench-") as data_dir:
        stack = await asyncio.to_thread(start_test_stack, Path(data_dir))
        try:
            for round_ in range(args.rounds):
                for way in WAYS:
                    url = await stack.create_database(f"write_{way}_{round_}")
                    print(await measure(url, way, args.rows, args.per_transaction), flush=True)
        finally:
            stack.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--per-transaction", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
