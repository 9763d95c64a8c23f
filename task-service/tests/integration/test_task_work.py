"""Work on tasks, as people, AI agents and other services do it: tasks requested by
event (once per request id), assigned by role, found in the inbox, started,
completed, decided, and completed from an agent's result or an automation's action."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from stayops_kit.db import inbox, outbox
from stayops_kit.testing import eventually
from stayops_schemas.binding import to_kafka
from stayops_schemas.catalog import event_type
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.agents import AgentResultProduced
from stayops_schemas.events.automations import ActionFinished, ExecutionOutcome
from stayops_schemas.events.base import Payload
from stayops_schemas.events.org import MemberJoined, MemberLeft, UserType
from stayops_schemas.events.tasks import TaskRequested, TaskType
from stayops_schemas.ownership import owner_of
from task_service import store

pytestmark = pytest.mark.stack

Service = tuple[httpx.AsyncClient, Any, str]
EARLY = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
async def producer(stack: Any) -> AsyncIterator[AIOKafkaProducer]:
    kafka = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await kafka.start()
    try:
        yield kafka
    finally:
        await kafka.stop()


def envelope(name: str, payload: Payload, key: str) -> Envelope:
    # As its owner sends it: consumers dead-letter an event from a source that does not own its type.
    return event_type(name).envelope(payload, id=str(uuid.uuid4()), source=owner_of(name),
                                     partitionkey=key, time=datetime.now(UTC))


async def publish(producer: AIOKafkaProducer, event: Envelope) -> None:
    record = to_kafka(event)
    await producer.send_and_wait(event_type(event.type).topic, value=record.value, key=record.key,
                                 headers=record.headers)


def headers(stack: Any, org: str, user: str, role: str, user_type: str = "human") -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.mint_token(org, user, role, user_type=user_type)}"}


async def seed_members(producer: AIOKafkaProducer, runtime: Any, org: str,
                       members: list[tuple[str, UserType, str, datetime]]) -> None:
    for user_id, user_type, role, joined_at in members:
        joined = MemberJoined(org_id=org, user_id=user_id, user_type=user_type, display_name=user_id,
                              role_id=role, role_name=role, joined_at=joined_at)
        await publish(producer, envelope("org.member.joined", joined, org))

    async def in_directory() -> bool:
        async with runtime.engine.connect() as conn:
            return len(await store.list_members(conn, org)) == len(members)

    await eventually(in_directory, what=f"{len(members)} members in the directory")


async def announced(runtime: Any, org: str, name: str) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.payload)
            .where(outbox.c.org_id == org, outbox.c.event_type == name)
            .order_by(outbox.c.id)
        )
        return [row.payload for row in rows]


async def handled(runtime: Any, *events: Envelope) -> None:
    """Wait until task-service has applied (or deliberately ignored) these events."""
    wanted = {event.id for event in events}

    async def all_marked() -> bool:
        async with runtime.engine.connect() as conn:
            rows = await conn.execute(sa.select(inbox.c.event_id).where(inbox.c.event_id.in_(wanted)))
            return {row.event_id for row in rows} == wanted

    await eventually(all_marked, what=f"{len(wanted)} events handled by task-service")


async def tasks_of(client: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    listed = await client.get("/v1/tasks", params={"limit": 200}, headers=auth)
    assert listed.status_code == 200, listed.text
    items: list[dict[str, Any]] = listed.json()["items"]
    return items


def requested(org: str, request_id: str, **fields: Any) -> TaskRequested:
    return TaskRequested(**{"request_id": request_id, "org_id": org, "title": "Analyse prices",
                            "task_type": TaskType.ANALYSIS, "requested_by": "workflow-service",
                            **fields})


async def test_a_request_delivered_three_times_creates_one_task(
    service: Service, stack: Any, producer: AIOKafkaProducer
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    request = requested(org, "run-1:sync:1", task_type=TaskType.AUTOMATED, assigned_to="automation",
                        data={"action": "request_sync"}, workflow_run_id="run-1", workflow_step="sync")
    first = envelope("stayops.task.requested", request, "run-1")
    again = envelope("stayops.task.requested", request, "run-1")  # asked again, new event id
    await publish(producer, first)
    await publish(producer, first)  # the same record redelivered
    await publish(producer, again)
    await handled(runtime, first, again)  # the redelivery sits between them on one partition

    [task] = await tasks_of(client, headers(stack, org, "owner-1", "owner"))
    assert (task["assigned_to"], task["workflow_run_id"], task["request_id"]) == (
        "automation", "run-1", "run-1:sync:1")
    created = await announced(runtime, org, "stayops.task.created")
    assigned = await announced(runtime, org, "stayops.task.assigned")
    assert len(created) == 1 and len(assigned) == 1
    assert (assigned[0]["assigned_to"], assigned[0]["task_type"], assigned[0]["workflow_step"]) == (
        "automation", "automated", "sync")


async def test_a_role_task_goes_to_the_member_with_fewest_open_tasks(
    service: Service, stack: Any, producer: AIOKafkaProducer
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    await seed_members(producer, runtime, org, [
        ("alice", UserType.HUMAN, "revenue-manager", EARLY),
        ("ai-rm", UserType.AI_AGENT, "revenue-manager", EARLY + timedelta(days=10)),
        ("owner-1", UserType.HUMAN, "owner", EARLY),
    ])
    owner = headers(stack, org, "owner-1", "owner")
    busy = await client.post("/v1/tasks", headers=owner,
                             json={"title": "Call guest", "task_type": "manual", "assigned_to": "alice"})
    assert busy.json()["assignee_type"] == "human"

    by_role = {"title": "Analyse prices", "task_type": "analysis", "role_id": "revenue-manager"}
    first = (await client.post("/v1/tasks", json=by_role, headers=owner)).json()
    assert (first["assigned_to"], first["assignee_type"]) == ("ai-rm", "ai_agent")
    # Now one open task each: the oldest membership wins.
    second = (await client.post("/v1/tasks", json=by_role, headers=owner)).json()
    assert second["assigned_to"] == "alice"

    events = {e["task_id"]: e for e in await announced(runtime, org, "stayops.task.assigned")}
    assert events[first["id"]]["assignee_type"] == "ai_agent"
    assert events[first["id"]]["rule"].startswith("role:revenue-manager -> fewest open tasks (0)")
    assert events[busy.json()["id"]]["rule"] == "assigned by user owner-1"


async def test_a_task_queued_for_a_role_goes_to_the_first_member_who_joins_it(
    service: Service, stack: Any, producer: AIOKafkaProducer
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = headers(stack, org, "owner-1", "owner")
    queued = (await client.post("/v1/tasks", headers=owner, json={
        "title": "Analyse prices", "task_type": "analysis", "role_id": "revenue-manager"})).json()
    assert queued["assigned_to"] is None, "nobody holds the role yet"

    await seed_members(producer, runtime, org, [("ai-rm", UserType.AI_AGENT, "revenue-manager", EARLY)])

    async def assigned() -> Any:
        task = (await client.get(f"/v1/tasks/{queued['id']}", headers=owner)).json()
        return task if task["assigned_to"] else None

    task = await eventually(assigned, what="the queued task handed to the new member")
    assert (task["assigned_to"], task["assignee_type"]) == ("ai-rm", "ai_agent")
    events = [e for e in await announced(runtime, org, "stayops.task.assigned") if e["task_id"] == queued["id"]]
    assert [e["assigned_to"] for e in events] == [None, "ai-rm"], "queued, then handed to the new member"


async def test_the_inbox_shows_my_tasks_and_my_roles_queue_only(service: Service, stack: Any) -> None:
    client, _, _ = service
    org, other_org = str(uuid.uuid4()), str(uuid.uuid4())
    owner = headers(stack, org, "owner-1", "owner")
    mine = (await client.post("/v1/tasks", headers=owner, json={
        "title": "Mine", "task_type": "manual", "assigned_to": "bob", "priority": "high"})).json()
    queued = (await client.post("/v1/tasks", headers=owner, json={
        "title": "Cleaners' queue", "task_type": "manual", "role_id": "cleaner"})).json()
    await client.post("/v1/tasks", headers=owner,
                      json={"title": "Carol's", "task_type": "manual", "assigned_to": "carol"})
    await client.post("/v1/tasks", headers=headers(stack, other_org, "owner-2", "owner"),
                      json={"title": "Elsewhere", "task_type": "manual", "assigned_to": "bob"})
    assert queued["assigned_to"] is None

    bob = headers(stack, org, "bob", "cleaner")
    inbox = (await client.get("/v1/inbox", headers=bob)).json()
    assert {t["id"] for t in inbox["items"]} == {mine["id"], queued["id"]}
    assert inbox["total"] == 2
    high = (await client.get("/v1/inbox", params={"priority": "high"}, headers=bob)).json()
    assert [t["id"] for t in high["items"]] == [mine["id"]]
    page = (await client.get("/v1/inbox", params={"limit": 1, "offset": 1}, headers=bob)).json()
    assert (len(page["items"]), page["total"]) == (1, 2)

    await client.post(f"/v1/tasks/{mine['id']}/start", headers=bob)
    started = (await client.get("/v1/inbox", params={"status": "in_progress"}, headers=bob)).json()
    assert [t["id"] for t in started["items"]] == [mine["id"]]


async def test_who_may_act_on_a_task_and_when(service: Service, stack: Any) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = headers(stack, org, "owner-1", "owner")
    task = (await client.post("/v1/tasks", headers=owner, json={
        "title": "Fix the lock", "task_type": "manual", "assigned_to": "bob",
        "role_id": "maintenance"})).json()
    url = f"/v1/tasks/{task['id']}"

    stranger = await client.post(f"{url}/start", headers=headers(stack, org, "eve", "cleaner"))
    assert stranger.status_code == 403
    assert stranger.headers["content-type"] == "application/problem+json"
    elsewhere = await client.post(f"{url}/start", headers=headers(stack, str(uuid.uuid4()), "bob", "maintenance"))
    assert elsewhere.status_code == 404

    bob = headers(stack, org, "bob", "maintenance")
    assert (await client.post(f"{url}/start", headers=bob)).json()["status"] == "in_progress"
    blocked = await client.post(f"{url}/block", json={"reason": "waiting for a part"},
                                headers=headers(stack, org, "dan", "maintenance"))
    assert (blocked.json()["status"], blocked.json()["status_reason"]) == ("blocked", "waiting for a part")
    refused = await client.post(f"{url}/complete", json={"result": {}}, headers=bob)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert "is blocked; it cannot become completed" in refused.json()["detail"]
    await client.post(f"{url}/start", headers=bob)
    done = await client.post(f"{url}/complete", json={"result": {"fixed": True}}, headers=bob)
    assert (done.json()["status"], done.json()["result"]) == ("completed", {"fixed": True})
    assert (await client.post(f"{url}/fail", json={"reason": "late"}, headers=bob)).status_code == 409

    assert [e["started_by"] for e in await announced(runtime, org, "stayops.task.started")] == ["bob", "bob"]
    assert [e["blocked_by"] for e in await announced(runtime, org, "stayops.task.blocked")] == ["dan"]
    [completed] = await announced(runtime, org, "stayops.task.completed")
    assert (completed["completed_by"], completed["result"]) == ("bob", {"fixed": True})


async def test_an_owner_approves_a_decision_with_changes(service: Service, stack: Any) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = headers(stack, org, "owner-1", "owner")
    decision = (await client.post("/v1/tasks", headers=owner, json={
        "title": "Approve prices", "task_type": "decision", "role_id": "owner",
        "data": {"proposal": [{"listing_id": "L1", "date": "2026-12-01", "recommended_price": "130.00"}]},
    })).json()
    manual = (await client.post("/v1/tasks", headers=owner, json={
        "title": "Not a decision", "task_type": "manual", "role_id": "owner"})).json()

    not_decision = await client.post(f"/v1/tasks/{manual['id']}/decision", json={"outcome": "approved"},
                                     headers=owner)
    assert not_decision.status_code == 409
    must_decide = await client.post(f"/v1/tasks/{decision['id']}/complete", json={}, headers=owner)
    assert must_decide.status_code == 409

    changes = [{"listing_id": "L1", "date": "2026-12-01", "price": "125.00"}]
    answered = await client.post(f"/v1/tasks/{decision['id']}/decision", headers=owner,
                                 json={"outcome": "approved", "comment": "a bit less", "changes": changes})
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "completed"
    [completed] = await announced(runtime, org, "stayops.task.completed")
    assert (completed["task_type"], completed["outcome"], completed["comment"]) == (
        "decision", "approved", "a bit less")
    assert completed["changes"] == {"prices": changes}
    assert completed["completed_by"] == "owner-1"


async def test_an_agents_result_completes_its_analysis_task(
    service: Service, stack: Any, producer: AIOKafkaProducer
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    await seed_members(producer, runtime, org, [("ai-rm", UserType.AI_AGENT, "revenue-manager", EARLY)])
    await publish(producer, envelope("stayops.task.requested", requested(
        org, "run-7:analysis:1", role_id="revenue-manager", data={"skill": "pricing"},
        workflow_run_id="run-7", workflow_step="analysis"), "run-7"))
    auth = headers(stack, org, "ai-rm", "revenue-manager", user_type="ai_agent")

    async def assigned() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await client.get("/v1/inbox", headers=auth)).json()["items"]
        return items

    [task] = await eventually(assigned, what="the analysis task in the agent's inbox")
    assert (task["assigned_to"], task["assignee_type"]) == ("ai-rm", "ai_agent")

    def result(agent: str, price: str) -> Envelope:
        return envelope("stayops.agent.result.produced", AgentResultProduced(
            agent_user_id=agent, org_id=org, task_id=task["id"], skill="pricing", summary="done",
            confidence=0.9, result={"max_abs_change_pct": price}), task["id"])

    reports = [result("ai-impostor", "99"), result("ai-rm", "8.5"), result("ai-rm", "12")]
    for report in reports:  # an impostor's (ignored), the assignee's, a late one (ignored)
        await publish(producer, report)
    await handled(runtime, *reports)

    done = (await client.get(f"/v1/tasks/{task['id']}", headers=auth)).json()
    assert (done["status"], done["result"]) == ("completed", {"max_abs_change_pct": "8.5"})
    [event] = await announced(runtime, org, "stayops.task.completed")
    assert (event["completed_by"], event["workflow_run_id"], event["workflow_step"]) == (
        "ai-rm", "run-7", "analysis")


async def test_an_agents_failure_fails_its_task_with_the_reason(
    service: Service, stack: Any, producer: AIOKafkaProducer
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    await seed_members(producer, runtime, org, [("ai-rm", UserType.AI_AGENT, "revenue-manager", EARLY)])
    await publish(producer, envelope("stayops.task.requested", requested(
        org, "run-8:analysis:1", role_id="revenue-manager", data={"skill": "pricing"},
        workflow_run_id="run-8", workflow_step="analysis"), "run-8"))
    auth = headers(stack, org, "ai-rm", "revenue-manager", user_type="ai_agent")
    [task] = await eventually(lambda: tasks_of(client, auth), what="the analysis task")

    report = envelope("stayops.agent.result.produced", AgentResultProduced(
        agent_user_id="ai-rm", org_id=org, task_id=task["id"], skill="pricing", summary="could not run",
        confidence=0.0, failed=True, error="no synced listing matches data.listing_ids"), task["id"])
    await publish(producer, report)
    await handled(runtime, report)

    current = (await client.get(f"/v1/tasks/{task['id']}", headers=auth)).json()
    assert (current["status"], current["status_reason"]) == ("failed", "no synced listing matches data.listing_ids")
    [event] = await announced(runtime, org, "stayops.task.failed")
    assert event["failed_by"] == "ai-rm"
    assert await announced(runtime, org, "stayops.task.completed") == []


async def test_an_automation_failure_fails_the_task_and_late_reports_change_nothing(
    service: Service, stack: Any, producer: AIOKafkaProducer
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    await publish(producer, envelope("stayops.task.requested", requested(
        org, "run-9:publish:1", task_type=TaskType.AUTOMATED, assigned_to="automation",
        data={"action": "publish_prices"}), "run-9"))
    auth = headers(stack, org, "owner-1", "owner")
    [task] = await eventually(lambda: tasks_of(client, auth), what="the automated task")

    def finished(outcome: ExecutionOutcome, error: str | None) -> Envelope:
        return envelope("stayops.automation.action.finished", ActionFinished(
            org_id=org, task_id=task["id"], action="publish_prices", outcome=outcome, error=error),
            task["id"])

    reports = [finished(ExecutionOutcome.FAILURE, "listing L2 refused the price"),
               finished(ExecutionOutcome.SUCCESS, None)]
    for report in reports:
        await publish(producer, report)
    await handled(runtime, *reports)

    current = (await client.get(f"/v1/tasks/{task['id']}", headers=auth)).json()
    assert (current["status"], current["status_reason"]) == ("failed", "listing L2 refused the price")
    [event] = await announced(runtime, org, "stayops.task.failed")
    assert (event["failed_by"], event["reason"]) == ("automation", "listing L2 refused the price")
    assert await announced(runtime, org, "stayops.task.completed") == []



async def test_a_leavers_open_task_goes_to_another_member_of_the_role(
    service: Service, stack: Any, producer: AIOKafkaProducer
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    await seed_members(producer, runtime, org, [
        ("alice", UserType.HUMAN, "cleaner", EARLY),
        ("bob", UserType.HUMAN, "cleaner", EARLY + timedelta(days=1)),
    ])
    owner = headers(stack, org, "owner-1", "owner")
    task = (await client.post("/v1/tasks", headers=owner,
                              json={"title": "Clean", "task_type": "manual", "role_id": "cleaner"})).json()
    assert task["assigned_to"] == "alice"

    left = envelope("org.member.left", MemberLeft(org_id=org, user_id="alice", left_at=datetime.now(UTC)), org)
    await publish(producer, left)
    await handled(runtime, left)

    current = (await client.get(f"/v1/tasks/{task['id']}", headers=owner)).json()
    assert current["assigned_to"] == "bob"
    reassigned = (await announced(runtime, org, "stayops.task.assigned"))[-1]
    assert (reassigned["task_id"], reassigned["assigned_to"]) == (task["id"], "bob")
    assert reassigned["rule"].startswith("alice left the organisation; role:cleaner -> only active member")
