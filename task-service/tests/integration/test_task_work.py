"""Work on tasks, as people, AI agents and other services do it: tasks requested by
event (once per request id), assigned by role, found in the inbox, started,
completed, decided, and completed from an agent's result or an automation's action."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from stayops_kit.db import inbox, outbox
from stayops_kit.testing import announced, event_envelope, eventually, send
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.agents import AgentResultProduced
from stayops_schemas.events.automations import ActionFinished, ExecutionOutcome
from stayops_schemas.events.org import MemberJoined, MemberLeft, OrgPolicyUpdated, PriceGuardrails, UserType
from stayops_schemas.events.tasks import TaskRequested, TaskType
from stayops_schemas.ownership import WORKFLOW_SERVICE
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


def headers(stack: Any, org: str, user: str, role: str, user_type: str = "human") -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.mint_token(org, user, role, user_type=user_type)}"}


async def seed_members(producer: AIOKafkaProducer, runtime: Any, org: str,
                       members: list[tuple[str, UserType, str, datetime]]) -> None:
    for user_id, user_type, role, joined_at in members:
        joined = MemberJoined(org_id=org, user_id=user_id, user_type=user_type, display_name=user_id,
                              role_id=role, role_name=role, joined_at=joined_at)
        await send(producer, event_envelope("org.member.joined", joined, org))

    async def in_directory() -> bool:
        async with runtime.engine.connect() as conn:
            return len(await store.list_members(conn, org)) == len(members)

    await eventually(in_directory, what=f"{len(members)} members in the directory")


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
    first = event_envelope("stayops.task.requested", request, "run-1", WORKFLOW_SERVICE)
    again = event_envelope("stayops.task.requested", request, "run-1", WORKFLOW_SERVICE)  # asked again, new id
    await send(producer, first)
    await send(producer, first)  # the same record redelivered
    await send(producer, again)
    await handled(runtime, first, again)  # the redelivery sits between them on one partition

    [task] = await tasks_of(client, headers(stack, org, "owner-1", "owner"))
    assert (task["assigned_to"], task["workflow_run_id"], task["request_id"]) == (
        "automation", "run-1", "run-1:sync:1")
    created = await announced(runtime.engine, org, "stayops.task.created")
    assigned = await announced(runtime.engine, org, "stayops.task.assigned")
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

    events = {e["task_id"]: e for e in await announced(runtime.engine, org, "stayops.task.assigned")}
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
    events = [e for e in await announced(runtime.engine, org, "stayops.task.assigned") if e["task_id"] == queued["id"]]
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
    assert inbox["next_cursor"] is None
    high = (await client.get("/v1/inbox", params={"priority": "high"}, headers=bob)).json()
    assert [t["id"] for t in high["items"]] == [mine["id"]]
    first = (await client.get("/v1/inbox", params={"limit": 1}, headers=bob)).json()
    second = (await client.get("/v1/inbox", params={"limit": 1, "cursor": first["next_cursor"]}, headers=bob)).json()
    assert {t["id"] for t in first["items"] + second["items"]} == {mine["id"], queued["id"]}
    assert second["next_cursor"] is None

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
    dan = headers(stack, org, "dan", "maintenance")  # bob's colleague in the role
    for action, body in (("block", {"reason": "x"}), ("fail", {"reason": "x"}), ("complete", {"result": {}})):
        not_his = await client.post(f"{url}/{action}", json=body, headers=dan)
        assert not_his.status_code == 403, (action, not_his.text)
        assert "only its assignee may act on it" in not_his.json()["detail"]
    blocked = await client.post(f"{url}/block", json={"reason": "waiting for a part"}, headers=bob)
    assert (blocked.json()["status"], blocked.json()["status_reason"]) == ("blocked", "waiting for a part")
    refused = await client.post(f"{url}/complete", json={"result": {}}, headers=bob)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert "is blocked; it cannot become completed" in refused.json()["detail"]
    await client.post(f"{url}/start", headers=bob)
    done = await client.post(f"{url}/complete", json={"result": {"fixed": True}}, headers=bob)
    assert (done.json()["status"], done.json()["result"], done.json()["completed_by"]) == (
        "completed", {"fixed": True}, "bob")
    assert (await client.post(f"{url}/fail", json={"reason": "late"}, headers=bob)).status_code == 409

    assert [e["started_by"] for e in await announced(runtime.engine, org, "stayops.task.started")] == ["bob", "bob"]
    assert [e["blocked_by"] for e in await announced(runtime.engine, org, "stayops.task.blocked")] == ["bob"]
    [completed] = await announced(runtime.engine, org, "stayops.task.completed")
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
        "title": "Not a decision", "task_type": "manual", "assigned_to": "owner-1"})).json()
    # Nobody holds the owner role in the directory: the decision waits in its queue,
    # and the owner claims it before answering.
    queued = await client.post(f"/v1/tasks/{decision['id']}/decision", json={"outcome": "approved"},
                               headers=owner)
    assert queued.status_code == 403 and "claims it with POST" in queued.json()["detail"]
    claimed = await client.post(f"/v1/tasks/{decision['id']}/start", headers=owner)
    assert (claimed.json()["assigned_to"], claimed.json()["status"]) == ("owner-1", "in_progress")

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
    [completed] = await announced(runtime.engine, org, "stayops.task.completed")
    assert (completed["task_type"], completed["outcome"], completed["comment"]) == (
        "decision", "approved", "a bit less")
    assert completed["changes"] == {"prices": changes}
    assert completed["completed_by"] == answered.json()["completed_by"] == "owner-1"
    claim = [e for e in await announced(runtime.engine, org, "stayops.task.assigned") if e["task_id"] == decision["id"]]
    assert [(e["assigned_to"], e["rule"]) for e in claim] == [
        (None, "role:owner -> role queue (no active member)"),
        ("owner-1", "claimed by owner-1 from the queue of role owner")]


async def test_an_agents_result_completes_its_analysis_task(
    service: Service, stack: Any, producer: AIOKafkaProducer
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    await seed_members(producer, runtime, org, [("ai-rm", UserType.AI_AGENT, "revenue-manager", EARLY)])
    await send(producer, event_envelope("stayops.task.requested", requested(
        org, "run-7:analysis:1", role_id="revenue-manager", data={"skill": "pricing"},
        workflow_run_id="run-7", workflow_step="analysis"), "run-7"))
    auth = headers(stack, org, "ai-rm", "revenue-manager", user_type="ai_agent")

    async def assigned() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await client.get("/v1/inbox", headers=auth)).json()["items"]
        return items

    [task] = await eventually(assigned, what="the analysis task in the agent's inbox")
    assert (task["assigned_to"], task["assignee_type"]) == ("ai-rm", "ai_agent")

    def result(agent: str, change_pct: float) -> Envelope:
        return event_envelope("stayops.agent.result.produced", AgentResultProduced(
            agent_user_id=agent, org_id=org, task_id=task["id"], skill="pricing", summary="done",
            confidence=0.9, result=pricing_result(change_pct)), task["id"])

    reports = [result("ai-impostor", 0.0), result("ai-rm", 8.5), result("ai-rm", 12.0)]
    for report in reports:  # an impostor's (ignored), the assignee's, a late one (ignored)
        await send(producer, report)
    await handled(runtime, *reports)

    done = (await client.get(f"/v1/tasks/{task['id']}", headers=auth)).json()
    assert (done["status"], done["result"], done["completed_by"]) == ("completed", pricing_result(8.5), "ai-rm")
    [event] = await announced(runtime.engine, org, "stayops.task.completed")
    assert (event["completed_by"], event["workflow_run_id"], event["workflow_step"]) == (
        "ai-rm", "run-7", "analysis")


def pricing_result(change_pct: float, *, max_abs_change_pct: float | None = None) -> dict[str, Any]:
    """A pricing skill result of one night moved by `change_pct` from 100.00."""
    night = {"listing_id": "L1", "date": "2026-12-01", "current_price": "100.00",
             "recommended_price": f"{100 + change_pct:.2f}", "change_pct": change_pct, "confidence": 0.9,
             "factors": [{"name": "season", "effect_pct": change_pct, "detail": "December"}],
             "currency": "EUR", "min_price": "50.00", "max_price": "200.00"}
    return {"recommendations": [night], "needs_review": False, "min_confidence": 0.9, "currency": "EUR",
            "max_abs_change_pct": abs(change_pct) if max_abs_change_pct is None else max_abs_change_pct}


async def test_an_agents_failure_fails_its_task_with_the_reason(
    service: Service, stack: Any, producer: AIOKafkaProducer
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    await seed_members(producer, runtime, org, [("ai-rm", UserType.AI_AGENT, "revenue-manager", EARLY)])
    await send(producer, event_envelope("stayops.task.requested", requested(
        org, "run-8:analysis:1", role_id="revenue-manager", data={"skill": "pricing"},
        workflow_run_id="run-8", workflow_step="analysis"), "run-8"))
    auth = headers(stack, org, "ai-rm", "revenue-manager", user_type="ai_agent")
    [task] = await eventually(lambda: tasks_of(client, auth), what="the analysis task")

    report = event_envelope("stayops.agent.result.produced", AgentResultProduced(
        agent_user_id="ai-rm", org_id=org, task_id=task["id"], skill="pricing", summary="could not run",
        confidence=0.0, failed=True, error="no synced listing matches data.listing_ids"), task["id"])
    await send(producer, report)
    await handled(runtime, report)

    current = (await client.get(f"/v1/tasks/{task['id']}", headers=auth)).json()
    assert (current["status"], current["status_reason"]) == ("failed", "no synced listing matches data.listing_ids")
    [event] = await announced(runtime.engine, org, "stayops.task.failed")
    assert event["failed_by"] == "ai-rm"
    assert await announced(runtime.engine, org, "stayops.task.completed") == []


async def test_an_automation_failure_fails_the_task_and_late_reports_change_nothing(
    service: Service, stack: Any, producer: AIOKafkaProducer
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    await send(producer, event_envelope("stayops.task.requested", requested(
        org, "run-9:publish:1", task_type=TaskType.AUTOMATED, assigned_to="automation",
        data={"action": "publish_prices"}), "run-9", WORKFLOW_SERVICE))
    auth = headers(stack, org, "owner-1", "owner")
    [task] = await eventually(lambda: tasks_of(client, auth), what="the automated task")

    def finished(outcome: ExecutionOutcome, error: str | None) -> Envelope:
        return event_envelope("stayops.automation.action.finished", ActionFinished(
            org_id=org, task_id=task["id"], action="publish_prices", outcome=outcome, error=error),
            task["id"])

    reports = [finished(ExecutionOutcome.FAILURE, "listing L2 refused the price"),
               finished(ExecutionOutcome.SUCCESS, None)]
    for report in reports:
        await send(producer, report)
    await handled(runtime, *reports)

    current = (await client.get(f"/v1/tasks/{task['id']}", headers=auth)).json()
    assert (current["status"], current["status_reason"]) == ("failed", "listing L2 refused the price")
    [event] = await announced(runtime.engine, org, "stayops.task.failed")
    assert (event["failed_by"], event["reason"]) == ("automation", "listing L2 refused the price")
    assert await announced(runtime.engine, org, "stayops.task.completed") == []


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

    left = event_envelope("org.member.left", MemberLeft(org_id=org, user_id="alice", left_at=datetime.now(UTC)), org)
    await send(producer, left)
    await handled(runtime, left)

    current = (await client.get(f"/v1/tasks/{task['id']}", headers=owner)).json()
    assert current["assigned_to"] == "bob"
    reassigned = (await announced(runtime.engine, org, "stayops.task.assigned"))[-1]
    assert (reassigned["task_id"], reassigned["assigned_to"]) == (task["id"], "bob")
    assert reassigned["rule"].startswith("alice left the organisation; role:cleaner -> only active member")


# --- Guards: who may start side effects, act on a task, report a result, edit prices ---


async def org_rows(runtime: Any, org: str) -> tuple[int, int]:
    """(tasks, announced events) the org has: what a refused request must leave at (0, 0)."""
    async with runtime.engine.connect() as conn:
        tasks = (await conn.execute(sa.select(sa.func.count()).select_from(store.tasks)
                                    .where(store.tasks.c.org_id == org))).scalar_one()
        events = (await conn.execute(sa.select(sa.func.count()).select_from(outbox)
                                     .where(outbox.c.org_id == org))).scalar_one()
    return int(tasks), int(events)


FORGED_PUBLISH = {"title": "Publish", "task_type": "automated", "assigned_to": "automation",
                  "data": {"action": "publish_prices", "platform": "airbnb", "approved_by": "owner",
                           "prices": [{"listing_id": "L1", "date": "2026-12-01", "price": "0.00",
                                       "currency": "EUR"}]}}


@pytest.mark.parametrize(
    ("user", "role", "user_type"),
    [("owner-1", "owner", "human"), ("ai-rm", "revenue-manager", "ai_agent")],
    ids=["owner", "ai-agent"],
)
@pytest.mark.parametrize("action", ["publish_prices", "request_sync"])
async def test_no_caller_creates_a_side_effecting_automated_task_over_rest(
    service: Service, stack: Any, user: str, role: str, user_type: str, action: str
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    body = {**FORGED_PUBLISH, "data": {**FORGED_PUBLISH["data"], "action": action}}
    refused = await client.post("/v1/tasks", json=body, headers=headers(stack, org, user, role, user_type))

    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert f"action '{action}'" in refused.json()["detail"]
    assert "only by a workflow run" in refused.json()["detail"]
    assert await org_rows(runtime, org) == (0, 0)
    notify = {"title": "Tell me", "task_type": "automated", "assigned_to": "automation",
              "data": {"action": "notify", "user_id": user, "subject": "hello"}}
    allowed = await client.post("/v1/tasks", json=notify, headers=headers(stack, org, user, role, user_type))
    assert allowed.status_code == 201, allowed.text


async def test_only_workflow_service_may_request_a_side_effecting_task(
    service: Service, stack: Any, producer: AIOKafkaProducer
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    forged = event_envelope("stayops.task.requested", requested(
        org, "alert:1", task_type=TaskType.AUTOMATED, assigned_to="automation", requested_by="workflow-service",
        data=FORGED_PUBLISH["data"], workflow_run_id="run-x"), org, "/agent-service")
    harmless = event_envelope("stayops.task.requested", requested(
        org, "alert:2", task_type=TaskType.MANUAL, title="Revenue fell short", requested_by="ai-rm"),
        org, "/agent-service")
    await send(producer, forged)
    await send(producer, harmless)
    await handled(runtime, harmless)  # one key, one partition: the forged request came first

    [task] = await tasks_of(client, headers(stack, org, "owner-1", "owner"))
    assert task["request_id"] == "alert:2"
    async with runtime.engine.connect() as conn:
        marked = await conn.execute(sa.select(inbox.c.event_id).where(inbox.c.event_id == forged.id))
        assert marked.first() is None, "the forged request was dead-lettered, not applied"


async def test_a_queued_task_is_claimed_before_anyone_acts_on_it_and_only_by_its_role(
    service: Service, stack: Any
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = headers(stack, org, "owner-1", "owner")
    task = (await client.post("/v1/tasks", headers=owner, json={
        "title": "Clean flat 2", "task_type": "manual", "role_id": "cleaner"})).json()
    url = f"/v1/tasks/{task['id']}"
    alice, bob = headers(stack, org, "alice", "cleaner"), headers(stack, org, "bob", "cleaner")

    unclaimed = await client.post(f"{url}/complete", json={"result": {}}, headers=alice)
    outsider = await client.post(f"{url}/start", headers=headers(stack, org, "eve", "maintenance"))
    assert unclaimed.status_code == 403 and "claims it with POST" in unclaimed.json()["detail"]
    assert outsider.status_code == 403 and "only its members may claim it" in outsider.json()["detail"]
    assert (await client.get(url, headers=owner)).json()["assigned_to"] is None

    claimed = await client.post(f"{url}/start", headers=alice)
    assert (claimed.json()["assigned_to"], claimed.json()["status"]) == ("alice", "in_progress")
    for action, body in (("complete", {"result": {"clean": True}}), ("fail", {"reason": "no"}),
                         ("block", {"reason": "no"}), ("start", None)):
        taken = await client.post(f"{url}/{action}", json=body, headers=bob)
        assert taken.status_code == 403, (action, taken.text)
    done = await client.post(f"{url}/complete", json={"result": {"clean": True}}, headers=alice)
    assert (done.json()["status"], done.json()["completed_by"]) == ("completed", "alice")

    assigned = [e for e in await announced(runtime.engine, org, "stayops.task.assigned") if e["task_id"] == task["id"]]
    assert [(e["assigned_to"], e["assignee_type"], e["rule"]) for e in assigned][-1] == (
        "alice", "human", "claimed by alice from the queue of role cleaner")
    assert [e["completed_by"] for e in await announced(runtime.engine, org, "stayops.task.completed")] == ["alice"]


async def test_a_result_that_does_not_fit_the_skill_is_refused_and_an_agents_fails_the_task(
    service: Service, stack: Any, producer: AIOKafkaProducer
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = headers(stack, org, "owner-1", "owner")
    analysis = {"title": "Analyse prices", "task_type": "analysis", "data": {"skill": "pricing"}}
    by_hand = (await client.post("/v1/tasks", headers=owner, json={**analysis, "assigned_to": "alice"})).json()
    alice = headers(stack, org, "alice", "revenue-manager")

    made_up = await client.post(f"/v1/tasks/{by_hand['id']}/complete", headers=alice,
                                json={"result": pricing_result(40.0, max_abs_change_pct=0)})
    incomplete = await client.post(f"/v1/tasks/{by_hand['id']}/complete", headers=alice,
                                   json={"result": {"recommendations": [{"listing_id": "L1"}]}})
    assert made_up.status_code == 422, made_up.text
    assert made_up.headers["content-type"] == "application/problem+json"
    assert "max_abs_change_pct 0.0 is not the largest change of the recommendations (40.0)" in (
        made_up.json()["detail"])
    assert incomplete.status_code == 422
    for field_name in ("recommendations.0.currency", "recommendations.0.recommended_price",
                       "max_abs_change_pct", "needs_review"):
        assert field_name in incomplete.json()["detail"], field_name
    assert (await client.get(f"/v1/tasks/{by_hand['id']}", headers=owner)).json()["status"] == "pending"

    await seed_members(producer, runtime, org, [("ai-rm", UserType.AI_AGENT, "revenue-manager", EARLY)])
    by_agent = (await client.post("/v1/tasks", headers=owner, json={**analysis, "role_id": "revenue-manager"})).json()
    assert by_agent["assigned_to"] == "ai-rm"
    report = event_envelope("stayops.agent.result.produced", AgentResultProduced(
        agent_user_id="ai-rm", org_id=org, task_id=by_agent["id"], skill="pricing", summary="done",
        confidence=0.9, result=pricing_result(40.0, max_abs_change_pct=0)), by_agent["id"])
    await send(producer, report)
    await handled(runtime, report)

    failed = (await client.get(f"/v1/tasks/{by_agent['id']}", headers=owner)).json()
    assert (failed["status"], failed["completed_by"]) == ("failed", "ai-rm")
    assert "does not fit the 'pricing' skill" in failed["status_reason"]
    assert await announced(runtime.engine, org, "stayops.task.completed") == []
    [event] = await announced(runtime.engine, org, "stayops.task.failed")
    assert (event["task_id"], event["failed_by"]) == (by_agent["id"], "ai-rm")


async def test_edited_prices_must_name_proposed_nights_and_pass_the_orgs_guardrails(
    service: Service, stack: Any, producer: AIOKafkaProducer
) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    policy = OrgPolicyUpdated(org_id=org, updated_at=datetime.now(UTC), pricing=PriceGuardrails(max_change_pct=20),
                              listings={"L2": PriceGuardrails(floor=Decimal("90.00"), currency="USD")})
    announced_policy = event_envelope("org.policy.updated", policy, org)
    await send(producer, announced_policy)
    await handled(runtime, announced_policy)
    night = {"current_price": "100.00", "recommended_price": "110.00", "change_pct": 10.0, "date": "2026-12-01",
             "min_price": "60.00", "max_price": "150.00"}
    proposal = [{**night, "listing_id": "L1", "currency": "EUR"}, {**night, "listing_id": "L2", "currency": "USD"}]
    owner = headers(stack, org, "owner-1", "owner")
    decision = (await client.post("/v1/tasks", headers=owner, json={
        "title": "Approve prices", "task_type": "decision", "assigned_to": "owner-1",
        "data": {"proposal": proposal}})).json()
    url = f"/v1/tasks/{decision['id']}/decision"

    edits = [{"listing_id": "L1", "date": "2026-12-01", "price": "0.00"},
             {"listing_id": "L1", "date": "2026-12-02", "price": "105.00"},
             {"listing_id": "L2", "date": "2026-12-01", "price": "85.00"},
             {"listing_id": "L1", "date": "2026-12-01", "price": "130.00"}]
    refused = await client.post(url, headers=owner, json={"outcome": "approved", "changes": edits})

    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    detail = refused.json()["detail"]
    for says in ("L1 2026-12-02: no such night in the proposal",
                 "L1 2026-12-01 at 0.00: price 0.00 is not above zero",
                 "L2 2026-12-01 at 85.00: price 85.00 is below the org's floor of 90.00",
                 "L1 2026-12-01 at 130.00: a change of +30.0 % from 100.00 is more than the 20 % a night may move"):
        assert says in detail, says
    assert (await client.get(f"/v1/tasks/{decision['id']}", headers=owner)).json()["status"] == "pending"
    assert await announced(runtime.engine, org, "stayops.task.completed") == []

    accepted = await client.post(url, headers=owner, json={"outcome": "approved", "changes": {"prices": [
        {"listing_id": "L2", "date": "2026-12-01", "price": "95.00"}]}})
    assert accepted.status_code == 200, accepted.text
    [completed] = await announced(runtime.engine, org, "stayops.task.completed")
    assert completed["changes"] == {"prices": [{"listing_id": "L2", "date": "2026-12-01", "price": "95.00"}]}


async def test_approving_proposed_prices_needs_prices_publish(service: Service, stack: Any) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = headers(stack, org, "owner-1", "owner")
    proposal = [{"listing_id": "L1", "date": "2026-12-01", "current_price": "100.00",
                 "recommended_price": "104.00", "currency": "EUR"}]
    decider = {"Authorization": "Bearer " + stack.mint_token(
        org, "gm", "general-manager", permissions=["tasks.act", "decisions.decide"])}
    decisions = [(await client.post("/v1/tasks", headers=owner, json={
        "title": "Approve prices", "task_type": "decision", "assigned_to": "gm",
        "data": {"proposal": proposal}})).json() for _ in range(2)]

    approve = await client.post(f"/v1/tasks/{decisions[0]['id']}/decision", headers=decider,
                                json={"outcome": "approved"})
    assert approve.status_code == 403, approve.text
    assert "prices.publish" in approve.json()["detail"]
    assert await announced(runtime.engine, org, "stayops.task.completed") == []
    reject = await client.post(f"/v1/tasks/{decisions[1]['id']}/decision", headers=decider,
                               json={"outcome": "rejected", "comment": "not this week"})
    assert reject.status_code == 200, reject.text


async def test_only_an_automated_task_is_assigned_to_automation(service: Service, stack: Any) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    refused = await client.post("/v1/tasks", headers=headers(stack, org, "owner-1", "owner"), json={
        "title": "Clean", "task_type": "manual", "assigned_to": "automation", "role_id": "cleaner"})

    assert refused.status_code == 422, refused.text
    # The request schema says so (OpenAPI's if/then), so the edge refuses it naming the field.
    assert refused.json()["code"] == "validation-failed", refused.text
    assert "system user that runs automated tasks" in str(refused.json()["errors"]), refused.text
    assert await org_rows(runtime, org) == (0, 0)
