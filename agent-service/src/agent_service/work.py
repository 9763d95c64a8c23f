"""The agents' work loop: analysis tasks queued by the consumer run here, once the
sync data they need has been applied (or after `WAIT_FOR_SYNC`, with what is there).

The wait exists because a sync's data (on `sync.airbnb`) and the next task's
assignment (on `stayops.tasks`) reach this service on different topics, in no
guaranteed order, even though the sync finished first."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from agent_service import handlers, store
from stayops_kit.consumer import EventContext
from stayops_kit.loops import Backoff, Wakeup, run_loop
from stayops_kit.runtime import ServiceRuntime
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.tasks import TaskAssigned

log = logging.getLogger(__name__)

WAIT_FOR_SYNC = dt.timedelta(seconds=30)
RECHECK_S = 0.2  # while work waits for sync data
IDLE_S = 5.0  # NOTIFY wakes the loop sooner
TASKS_PER_PASS = 20


async def work_loop(runtime: ServiceRuntime) -> None:
    """Runs until the service stops: work waits on NOTIFY from the consumer that
    queued it, looking again every RECHECK_S while some waits for its sync data."""

    async def one_pass() -> float:
        return RECHECK_S if await perform_ready_work(runtime) else IDLE_S

    wakeup = Wakeup(runtime.settings.database_url, [store.WORK_CHANNEL], stop=runtime.stopping,
                    application_name="stayops-agent-work")
    await run_loop("agent work", one_pass, wakeup, runtime.stopping, runtime.loop_health(work_loop.__name__),
                   Backoff(RECHECK_S, 10.0))


async def perform_ready_work(runtime: ServiceRuntime) -> bool:
    """Run queued tasks whose data is here, each in a transaction of its own (so a
    kill switch waits for one task at most); True while some work still waits or
    more is queued than one pass takes."""
    waiting = False
    seen: list[tuple[str, str]] = []
    for _ in range(TASKS_PER_PASS):
        async with runtime.engine.begin() as conn:
            claimed = await store.claim_work(conn, limit=1, skip=seen)
            if not claimed:
                return waiting
            row = claimed[0]
            seen.append((row.org_id, row.task_id))
            # Claimed before its agent's row was locked: a kill switch pulled in between
            # is seen here, and one pulled from now on waits for this task to commit.
            if not await store.lock_working_agents(conn, [(row.org_id, row.assignee)]):
                continue  # held until its agent takes work again
            assignment = TaskAssigned.model_validate(row.assignment)
            if not await _ready(conn, row, assignment, runtime.clock.now()):
                waiting = True
                continue
            try:
                async with conn.begin_nested():
                    uow = runtime.uow.bind(conn, correlation_id=row.correlation_id, causation_id=row.event_id)
                    await handlers.perform_assigned_task(
                        EventContext(uow, _envelope(row)), assignment,
                        inline_limit_bytes=runtime.settings.result_inline_limit_bytes)
                    await uow.flush()
            except Exception as exc:
                # Never block the queue on one task: the task fails with the reason,
                # visible to the people of its role.
                log.exception("agent work: task %s failed", assignment.task_id)
                async with conn.begin_nested():
                    uow = runtime.uow.bind(conn, correlation_id=row.correlation_id, causation_id=row.event_id)
                    await handlers.report_failure(EventContext(uow, _envelope(row)), assignment, exc)
                    await uow.flush()
            await store.finish_work(conn, row.org_id, assignment.task_id, runtime.clock.now())
    return True  # more may be queued than this pass took


async def _ready(conn: Any, row: Any, assignment: TaskAssigned, now: dt.datetime) -> bool:
    if assignment.data.get("skill") != "pricing" or now - row.received_at > WAIT_FOR_SYNC:
        return True
    listing_ids = assignment.data.get("listing_ids")
    if not isinstance(listing_ids, list):
        return True  # the skill says what is wrong with the task's data
    # The run's own sync: its data carries the run's correlation id, as this task does.
    return await store.listings_synced(conn, row.org_id, [str(i) for i in listing_ids], row.correlation_id)


def _envelope(row: Any) -> Envelope:
    return Envelope(
        id=row.event_id, type="stayops.task.assigned", source="/task-service", orgid=row.org_id,
        partitionkey=row.task_id, data=row.assignment, time=row.assigned_at, correlationid=row.correlation_id,
    )
