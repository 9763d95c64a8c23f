"""Task views benchmark: loads tasks over 100 orgs (one org with a fifth of them)
into task-service's schema on an embedded PostgreSQL, with a spread of status,
assignee, labels, priority and due dates, then times, on the big org, the queries
the routes run (the same `store` functions): the inbox's first page, a kanban
board (counts and six first pages), a calendar month, the 50th page of a filtered
list by cursor, and a full-text search. Prints p50/p99 of each and its plan
(EXPLAIN ANALYZE), which names the indexes that serve it.

    python benchmarks/tasks.py [--tasks 1000000] [--repeat 200] [--no-freeze]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from stayops_infra.ports import free_port
from stayops_infra.postgres import EmbeddedPostgres, create_database
from stayops_kit import pages
from stayops_kit.db import create_engine
from stayops_kit.migrations import upgrade_head
from stayops_kit.runtime import freeze_startup_heap
from stayops_schemas.events.tasks import TaskStatus
from task_service import store
from task_service.api import BOARD_COUNT_CAP
from task_service.app import MIGRATIONS_DIR

BIG = "org-big"
# user-5 holds tasks in the big org (its tasks are every fifth: user-0, -5, ..., -35 only).
USER, ROLE, DEPARTMENT = "user-5", "housekeeping", "ops"

# One chunk of generated tasks: g runs over the chunk's numbers. A fifth of all
# tasks are the big org's; the rest spread over 99 orgs.
LOAD = """
INSERT INTO tasks (id, org_id, title, description, task_type, status, priority, role_id, department_id,
                   assigned_to, assignee_type, assignment_rule, due_at, data, created_by, created_at, updated_at,
                   labels, required, version, listing_id, search)
SELECT 'bench-' || g,
       CASE WHEN g % 5 = 0 THEN 'org-big' ELSE 'org-' || (g % 99) END,
       t.title, t.description, 'manual',
       CASE WHEN h < 55 THEN 'completed' WHEN h < 60 THEN 'cancelled' WHEN h < 82 THEN 'pending'
            WHEN h < 94 THEN 'in_progress' WHEN h < 97 THEN 'blocked' ELSE 'failed' END,
       (ARRAY['low','medium','medium','high','urgent'])[1 + (g * 31) % 5],
       CASE WHEN g % 7 < 3 THEN 'housekeeping' WHEN g % 7 < 5 THEN 'maintenance' ELSE 'guest-relations' END,
       CASE WHEN g % 7 < 5 THEN 'ops' ELSE 'guests' END,
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'user-' || (g * 13) % 40 END,
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'human' END,
       'bench', CASE WHEN g % 11 = 0 THEN NULL
                     ELSE now() - interval '200 days' + ((g * 7) % 400) * interval '1 day'
                          + (g % 24) * interval '1 hour' END,
       '{}'::jsonb, 'bench', c.at, c.at + ((g * 17) % 72) * interval '1 hour',
       ARRAY[(ARRAY['plumbing','linen','electric','garden','paint','wifi'])[1 + g % 6]]
           || CASE WHEN g % 4 = 0 THEN ARRAY['vip'] ELSE ARRAY[]::text[] END,
       true, 1, 'listing-' || (g % 300),
       setweight(to_tsvector('english', t.title), 'A') || setweight(to_tsvector('english', t.description), 'B')
FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS g,
     LATERAL (SELECT (g * 7919) % 100 AS h) AS spread,
     LATERAL (SELECT now() - (CAST(:total AS bigint) - g) * interval '30 seconds' AS at) AS c,
     LATERAL (SELECT
        (ARRAY['Clean','Inspect','Repair','Restock','Photograph','Check','Replace','Paint'])[1 + g % 8] || ' ' ||
        (ARRAY['kitchen','bathroom','boiler','garden','terrace','bedroom','wifi router','entrance'])[1 + (g / 8) % 8]
        || ' at listing ' || (g % 300) AS title,
        (ARRAY['guests reported it','before the next check-in','seen at the last inspection',
               'the owner asked','part of the seasonal round'])[1 + (g / 64) % 5]
        || CASE WHEN g % 997 = 0 THEN ' the chandelier is flickering' ELSE '' END AS description) AS t
"""


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class FullPasses:
    """The garbage collector's full passes (generation 2) and how long each took."""

    def __init__(self) -> None:
        self.took_ms: list[float] = []
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.took_ms.append((time.perf_counter() - self._began) * 1000)

    def summary(self) -> str:
        longest = max(self.took_ms, default=0.0)
        return f"{len(self.took_ms)} full gc passes, longest {longest:.1f} ms"


class Recorder:
    """The SQL statements a call ran, to EXPLAIN them afterwards."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []
        self.on = False

    def __call__(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                 _many: bool) -> None:
        if self.on and not statement.startswith("SET "):
            self.statements.append((statement, parameters))


async def load(conn: AsyncConnection, total: int) -> None:
    chunk = 50_000
    # A bulk load, not a request: the service's statement timeout does not apply.
    await conn.execute(sa.text("SET statement_timeout = 0"))
    for start in range(1, total + 1, chunk):
        stop = min(total, start + chunk - 1)
        began = time.perf_counter()
        await conn.execute(sa.text(LOAD), {"start": start, "stop": stop, "total": total})
        await conn.commit()
        say(f"loaded tasks {start:,}..{stop:,} in {time.perf_counter() - began:.1f}s")
    # What autovacuum does after a bulk load: statistics, and the GIN index's pending
    # list merged (else every search scans it).
    await conn.commit()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="stayops-tasks-bench-") as scratch:
        postgres = EmbeddedPostgres(Path(scratch), free_port())
        say("starting embedded PostgreSQL")
        postgres.start()
        try:
            url = await create_database(postgres.port, "task_bench")
            await upgrade_head(MIGRATIONS_DIR, url)
            engine = create_engine(url)  # as the service makes it (its session settings)
            recorder = Recorder()
            event.listen(engine.sync_engine, "before_cursor_execute", recorder)
            async with engine.connect() as conn:
                say(f"loading {args.tasks:,} tasks over 100 orgs ({args.tasks // 5:,} in {BIG})")
                await load(conn, args.tasks)
            async with engine.connect() as vacuum:
                await vacuum.execution_options(isolation_level="AUTOCOMMIT")
                await vacuum.execute(sa.text("SET statement_timeout = 0"))
                await vacuum.execute(sa.text("VACUUM ANALYZE tasks"))
                # The bulk load's dirty pages written out now, not by the
                # checkpointer during the timings: the views of a database at rest.
                await vacuum.execute(sa.text("CHECKPOINT"))
            async with engine.connect() as conn:
                big = (await conn.execute(sa.text("SELECT count(*) FROM tasks WHERE org_id = :o"), {"o": BIG})
                       ).scalar_one()
                say(f"{BIG} holds {big:,} tasks")
                indexes = (await conn.execute(sa.text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tasks' ORDER BY indexname"))).all()
                print("indexes on tasks:")
                for name, definition in indexes:
                    print(f"    {name}: {definition.split(' USING ', 1)[-1]}")
                # As a service process does once it is built (stayops_kit.app.serve): its
                # startup objects left out of the collector's full passes.
                if not args.no_freeze:
                    freeze_startup_heap()
                await measure(conn, recorder, args.repeat)
            await engine.dispose()
        finally:
            postgres.stop()


async def measure(conn: AsyncConnection, recorder: Recorder, repeat: int) -> None:
    now = dt.datetime.now(dt.UTC)
    open_work = store.TaskFilter(statuses=("pending", "in_progress"), labels=("vip",))

    async def inbox() -> Any:
        return await store.inbox(conn, BIG, user_id=USER, role_id=ROLE, department_id=DEPARTMENT, limit=50)

    async def board() -> Any:
        # Every status column: its count (capped as the route caps it) and first page, in one statement.
        return await store.board_columns(conn, BIG, store.TaskFilter(), "status", [s.value for s in TaskStatus],
                                         sort="-created", limit=20, cap=BOARD_COUNT_CAP)

    start = dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)

    async def calendar() -> Any:
        # A person's month (`assignee=me`): the org/assignee prefix, then the due range.
        return await store.due_between(conn, BIG, store.TaskFilter(assignees=(USER,)), start,
                                       start + dt.timedelta(days=31), limit=501)

    async def org_calendar() -> Any:
        # The whole org's month: ~500 tasks fall due each day, so the first 500 (the limit) of it.
        return await store.due_between(conn, BIG, store.TaskFilter(), start, start + dt.timedelta(days=31),
                                       limit=501)

    say("walking 49 pages of open vip tasks by due date for the 50th page's cursor")
    after: Any = None
    for number in range(1, 50):
        _, end = await store.list_page(conn, BIG, open_work, sort="due", limit=50, after=after)
        if end is None:
            say(f"only {number} pages with this many tasks: timing page {number} instead")
            break
        after = end
    assert after is not None, "not even two pages"
    cursor = pages.encode_cursor("due", [after[0]], after[1])
    keys, last = pages.decode_cursor(cursor, "due", 1)

    async def fiftieth_page() -> Any:
        return await store.list_page(conn, BIG, open_work, sort="due", limit=50, after=(keys[0], last))

    async def search() -> Any:
        return await store.list_page(conn, BIG, store.TaskFilter(q="flickering chandelier"), sort="-created",
                                     limit=50)

    queries: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("inbox, first page", inbox), ("board by status", board), ("calendar month, one assignee", calendar),
        ("calendar month, whole org (first 500)", org_calendar),
        ("filtered list, 50th page by cursor", fiftieth_page), ("full-text search", search)]
    results = []
    for name, run in queries:
        for _ in range(3):
            await run()
        samples = []
        passes = FullPasses()
        gc.callbacks.append(passes)
        for _ in range(repeat):
            began = time.perf_counter()
            await run()
            samples.append((time.perf_counter() - began) * 1000)
        gc.callbacks.remove(passes)
        recorder.statements.clear()
        recorder.on = True
        await run()
        recorder.on = False
        plans = []
        for statement, parameters in list(recorder.statements):
            rows = (await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters)).all()
            plans.append("\n".join("    " + row[0] for row in rows))
        await conn.rollback()
        results.append((name, percentile(samples, 0.5), percentile(samples, 0.99), passes.summary()))

        print(f"\n== {name}: p50 {results[-1][1]:.1f} ms, p99 {results[-1][2]:.1f} ms "
              f"({len(plans)} statement(s))")
        for plan in plans:
            print(plan)
            print("    --")
    print()
    for name, p50, p99, gc_passes in results:
        print(f"{name:<54} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   ({gc_passes})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--no-freeze", action="store_true",
                        help="time the views without freezing the startup heap (as before)")
    asyncio.run(main(parser.parse_args()))
