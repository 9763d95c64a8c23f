"""`stayops replay` on the real system, after a weekly pricing run the owner approved.

To a group: the run's task events re-delivered to workflow-service are all found
already applied (its inbox), none is applied twice, and no other group sees them; an
event whose inbox mark is gone is applied as new, a forged one is parked.

Into a sandbox: task-service's handlers, fed the run's events on a scratch
database, build the tasks the real task-service built for that run, and announce
the events it announced, without publishing any."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from stayops_infra.replay import Selection, read_topic, replay_to_group, sandbox_replay
from stayops_infra.scenario import OrgHandle, PricingClient
from stayops_infra.system import LocalSystem
from stayops_kit.db import create_engine, inbox, outbox
from stayops_schemas.binding import to_kafka
from stayops_schemas.catalog import TASKS, event_type, replay_topic
from stayops_schemas.events.tasks import TaskCompleted, TaskType

pytestmark = pytest.mark.stack

BY_OWNER = 0.0  # every change reaches the owner, who decides


async def rows(url: str, query: Any) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings()]
    finally:
        await engine.dispose()


async def approved_run(pricing: PricingClient, org: OrgHandle) -> str:
    run_id = await pricing.start_run(org, threshold_pct=BY_OWNER, monitor_days=0)
    decision = await pricing.decision_task(org, run_id, timeout_s=180)
    await pricing.decide(org, decision["id"], "approved", "Go ahead")
    run = await pricing.wait_until(org, run_id, timeout_s=180)
    assert run["status"] == "completed"
    return run_id


async def stayops(stack: Any, *args: str, **env: str) -> dict[str, Any]:
    """`stayops ARGS --json` against the test stack, its output parsed."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "stayops"), *args, "--json", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "STAYOPS_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
             "STAYOPS_PG_PORT": str(stack.pg_port), **env})
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


def database(system: LocalSystem, service: str) -> str:
    return system.processes[service].env["STAYOPS_DATABASE_URL"]


async def test_replay_to_a_group_applies_nothing_twice_and_reports_each_event(
    system: LocalSystem, pricing: PricingClient, org: OrgHandle, stack: Any
) -> None:
    run_id = await approved_run(pricing, org)
    workflow_db = database(system, "workflow-service")
    automation_db = database(system, "automation-service")
    seen_by_automation = await rows(automation_db, sa.select(inbox).where(inbox.c.correlation_id == run_id))
    run_before = (await pricing.run(org, run_id))

    since = datetime.now(UTC) - timedelta(hours=1)
    selection = Selection(TASKS, since=since, correlation_id=run_id)
    report = await replay_to_group(stack.kafka_bootstrap, workflow_db, "workflow-service", selection, wait_s=120)
    counts = report.summary()
    assert counts["replayed"] > 0 and counts["selected"] > counts["replayed"], counts  # only the types it handles
    assert counts["already_applied"] == counts["replayed"] and counts["new"] == counts["parked"] == 0, counts
    assert counts["pending"] == 0, counts
    # Nothing applied twice: one inbox mark per event, the run as it was.
    marks = await rows(workflow_db, sa.select(inbox.c.event_id).where(inbox.c.consumer_group == "workflow-service",
                                                                     inbox.c.event_id.in_(report.already_applied)))
    assert sorted(m["event_id"] for m in marks) == sorted(report.already_applied)
    run_after = await pricing.run(org, run_id)
    assert run_after["status"] == run_before["status"] and run_after.get("steps") == run_before.get("steps")
    # No other group saw the replay: automation-service's inbox of the run is unchanged.
    assert await rows(automation_db, sa.select(inbox).where(inbox.c.correlation_id == run_id)) \
        == seen_by_automation
    replayed = await read_topic(stack.kafka_bootstrap, Selection(replay_topic("workflow-service"),
                                                                 correlation_id=run_id))
    assert len(replayed) == counts["replayed"]

    # An event whose inbox mark is gone (as if never applied) is applied as new; a
    # forged one (a source that does not own the type) is parked.
    forgotten = report.already_applied[-1]
    engine = create_engine(workflow_db)
    async with engine.begin() as conn:
        await conn.execute(inbox.delete().where(inbox.c.consumer_group == "workflow-service",
                                                inbox.c.event_id == forgotten))
    await engine.dispose()
    forged = await forge_task_completed(stack.kafka_bootstrap, org, run_id)
    again = await replay_to_group(stack.kafka_bootstrap, workflow_db, "workflow-service",
                                  Selection(TASKS, since=since, correlation_id=run_id), wait_s=120)
    assert again.new == [forgotten], again.summary()
    assert again.parked == [forged], again.summary()
    assert set(again.already_applied) == set(report.already_applied) - {forgotten}
    assert (await pricing.run(org, run_id))["status"] == "completed"

    # The command says the same: all applied once now, the forgery parked again.
    said = await stayops(stack, "replay", "--topic", TASKS, "--correlation", run_id, "--to-group",
                         "workflow-service", "--database-url", workflow_db)
    assert (said["new"], said["parked"], said["already_applied"]) == (0, 1, counts["replayed"]), said


async def forge_task_completed(bootstrap: str, org: OrgHandle, run_id: str) -> str:
    """A task.completed from a source that does not own the type, in the run's correlation."""
    entry = event_type("stayops.task.completed")
    task_id = str(uuid.uuid4())
    payload = TaskCompleted(org_id=org.org_id, task_id=task_id, task_type=TaskType.ANALYSIS,
                            completed_by="intruder", workflow_run_id=run_id, workflow_step="analyse")
    envelope = entry.envelope(payload, id=str(uuid.uuid4()), source="/intruder", partitionkey=task_id,
                              time=datetime.now(UTC), correlationid=run_id)
    record = to_kafka(envelope)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(entry.topic, record.value, key=record.key, headers=record.headers)
    finally:
        await producer.stop()
    return envelope.id


# What a task is, apart from the ids and times a service gives it when it makes it.
TASK_FIELDS = ("task_type", "title", "status", "priority", "workflow_step", "listing_id", "assigned_to",
               "department_id", "role_id", "request_id")


async def test_a_sandbox_replay_of_a_run_rebuilds_the_tasks_task_service_made(
    system: LocalSystem, pricing: PricingClient, org: OrgHandle, stack: Any
) -> None:
    run_id = await approved_run(pricing, org)
    task_db = database(system, "task-service")
    real = await rows(task_db, sa.text("SELECT * FROM tasks WHERE workflow_run_id = :run").bindparams(run=run_id))
    real_events = await rows(task_db, sa.select(outbox.c.event_type, outbox.c.payload, outbox.c.sent_at)
                             .where(outbox.c.correlation_id == run_id))

    result = await sandbox_replay(stack.kafka_bootstrap, run_id, "task-service",
                                  create_database=stack.create_database,
                                  result_urls={"agent-service": system.url("agent-service")})
    assert not result.parked, result.parked
    assert result.fed and all(f["correlationid"] == run_id or f["type"].startswith("org.") for f in result.fed)
    sandboxed = [t for t in result.tables["tasks"] if t["workflow_run_id"] == run_id]

    # The sandbox's tasks have ids of their own; it says which production task each one is.
    assert {result.ids.get(t["id"]) for t in sandboxed} == {t["id"] for t in real}

    def shape(task: dict[str, Any], ids: dict[str, str] = result.ids) -> tuple[Any, ...]:
        return (ids.get(task["id"], task["id"]), *(str(task[name]) for name in TASK_FIELDS))

    # The decision is a person's REST call, not an event: the sandbox leaves it open
    # where the real service has it approved. Every other field, and every other task, is the same.
    decided = [t for t in real if t["task_type"] == "decision"]
    assert decided and all(t["status"] == "completed" for t in decided)
    assert sorted(shape(t) for t in sandboxed if t["task_type"] != "decision") \
        == sorted(shape(t) for t in real if t["task_type"] != "decision"), (sandboxed, real)
    assert sorted(shape({**t, "status": "x"}) for t in sandboxed if t["task_type"] == "decision") \
        == sorted(shape({**t, "status": "x"}) for t in decided)
    assert all(t["status"] == "pending" for t in sandboxed if t["task_type"] == "decision")

    # What it would have emitted: the real service's events of the run, less the
    # decision's completion (made by the REST call); none of them published.
    by_rest = Counter(e["event_type"] for e in real_events
                      if e["event_type"] == "stayops.task.completed" and e["payload"].get("task_type") == "decision")
    assert Counter(e["type"] for e in result.emitted) == Counter(e["event_type"] for e in real_events) - by_rest
    sandbox_outbox = await rows(result.database_url, sa.select(outbox.c.sent_at))
    assert sandbox_outbox and all(row["sent_at"] is None for row in sandbox_outbox)

    # The command: a sandbox of its own, the same tasks.
    said = await stayops(stack, "replay", "--correlation", run_id, "--sandbox", "task-service",
                         STAYOPS_AGENT_SERVICE_URL=system.url("agent-service"))
    assert sorted(shape(t, said["ids"]) for t in said["tables"]["tasks"] if t["task_type"] != "decision") \
        == sorted(shape(t) for t in real if t["task_type"] != "decision")
