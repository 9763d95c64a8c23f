"""workflow-service through its public entries, on real PostgreSQL and Apache Kafka:
authentication, definitions and their versions, the dynamic-pricing saga advancing
on task outcomes and its durable timer, compensation, retries, idempotent starts,
org isolation, and the guards: the org's price policy, parameter defaults, and
definitions refused at publish."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer

from stayops_kit.db import outbox
from stayops_kit.policies import policy_of
from stayops_kit.testing import ServiceUnderTest, eventually, service_under_test
from stayops_schemas.binding import from_kafka
from stayops_schemas.catalog import TASKS, event_type
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.org import OrgPolicyUpdated, PriceGuardrails
from stayops_schemas.events.tasks import DecisionOutcome, TaskCompleted, TaskFailed, TaskType
from stayops_schemas.events.workflows import WorkflowRunRequested
from workflow_service import store
from workflow_service.app import NAME, create_app
from workflow_service.definitions import builtin_documents
from workflow_service.domain import WorkflowDefinition

pytestmark = pytest.mark.stack


@dataclass
class RunningService(ServiceUnderTest):
    seen: list[Envelope] = field(default_factory=list)

    def task_requests(self, run_id: str) -> list[Envelope]:
        return [e for e in self.seen if e.type == "stayops.task.requested" and e.correlationid == run_id]

    async def run(self, org: str, run_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/runs/{run_id}", headers=self.auth(org))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def run_waiting_at(self, org: str, run_id: str, step: str) -> dict[str, Any]:
        async def at_step() -> dict[str, Any] | None:
            run = await self.run(org, run_id)
            return run if run["status"] == "waiting" and run["current_step"] == step else None
        return await eventually(at_step, timeout=30, what=f"run {run_id} waiting at {step}")

    async def run_finished(self, org: str, run_id: str) -> dict[str, Any]:
        async def finished() -> dict[str, Any] | None:
            run = await self.run(org, run_id)
            return run if run["status"] in ("completed", "failed", "needs_attention", "cancelled") else None
        return await eventually(finished, timeout=30, what=f"run {run_id} finished")

    async def request_of(self, org: str, run_id: str, step: str) -> str:
        """The request id of the attempt the run waits for at `step`, as task-service
        would name it on the task's events."""
        async def waiting() -> str | None:
            waiting_for = (await self.run(org, run_id))["waiting_for"] or {}
            return waiting_for.get("request_id") if waiting_for.get("step") == step else None
        return await eventually(waiting, timeout=30, what=f"run {run_id} waiting for a task at {step}")

    async def complete(self, org: str, run_id: str, step: str, *, task_type: TaskType = TaskType.AUTOMATED,
                       result: dict[str, Any] | None = None, outcome: DecisionOutcome | None = None,
                       by: str = "automation", changes: dict[str, Any] | None = None,
                       request_id: str | None = None) -> None:
        await self.publish("stayops.task.completed", TaskCompleted(
            task_id=f"task-{run_id}-{step}", org_id=org, workflow_run_id=run_id, workflow_step=step,
            request_id=request_id or await self.request_of(org, run_id, step),
            task_type=task_type, completed_by=by, result=result or {}, outcome=outcome, changes=changes or {},
        ), key=run_id)

    async def fail(self, org: str, run_id: str, step: str, reason: str, *, request_id: str | None = None) -> None:
        await self.publish("stayops.task.failed", TaskFailed(
            task_id=f"task-{run_id}-{step}", org_id=org, workflow_run_id=run_id, workflow_step=step,
            request_id=request_id or await self.request_of(org, run_id, step), reason=reason, failed_by="automation",
        ), key=run_id)

    async def waiting_for_request(self, org: str, run_id: str, request_id: str) -> str:
        async def waiting() -> str | None:
            waiting_for = (await self.run(org, run_id))["waiting_for"] or {}
            return request_id if waiting_for.get("request_id") == request_id else None
        return await eventually(waiting, timeout=30, what=f"run {run_id} waiting for {request_id}")

    async def task_request(self, run_id: str, request_id: str) -> list[Envelope]:
        """The task request the run announced with this request id, once it is on the topic."""
        def named() -> list[Envelope]:
            return [e for e in self.task_requests(run_id) if e.data["request_id"] == request_id]
        return await eventually(lambda: _async(named()), timeout=30, what=f"the task request {request_id}")

    def requested(self, run_id: str, step: str) -> list[Envelope]:
        return [e for e in self.task_requests(run_id) if e.data["workflow_step"] == step]


async def _collect(consumer: AIOKafkaConsumer, seen: list[Envelope]) -> None:
    async for record in consumer:
        with contextlib.suppress(Exception):
            seen.append(from_kafka(record.key, record.value, record.headers))


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[RunningService]:
    consumer = AIOKafkaConsumer(TASKS, bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="latest")
    await consumer.start()
    seen: list[Envelope] = []
    collecting = asyncio.create_task(_collect(consumer, seen))
    try:
        async with service_under_test(create_app, NAME, stack) as running:
            yield RunningService(**vars(running), seen=seen)
    finally:
        collecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collecting
        await consumer.stop()


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


def analysis(max_change: float, needs_review: bool = False) -> dict[str, Any]:
    return {"recommendations": [{"listing_id": "l-1", "date": "2025-03-10", "current_price": 100.0,
                                 "recommended_price": 100.0 + max_change, "change_pct": max_change,
                                 "confidence": 0.9, "factors": []}],
            "max_abs_change_pct": max_change, "min_confidence": 0.9, "needs_review": needs_review,
            "currency": "EUR"}


async def start_pricing(service: RunningService, org: str, **parameters: Any) -> str:
    response = await service.client.post("/v1/workflows/dynamic-pricing/runs", headers=service.auth(org),
                                         json={"parameters": {"listing_ids": ["l-1"], **parameters}})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


TURNOVER = {"key": "turnover", "name": "Turnover cleaning", "steps": [
    {"name": "clean", "type": "task", "task_type": "manual", "title": "Clean", "role_id": "cleaner"}]}


async def test_routes_need_a_token(service: RunningService) -> None:
    response = await service.client.get("/v1/workflows")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_definitions_are_validated_versioned_per_org_and_listed_with_the_builtin(
    service: RunningService,
) -> None:
    mine, theirs = new_org(), new_org()
    schema = await service.client.get("/v1/workflow-schema", headers=service.auth(mine))
    assert schema.json()["title"] == "StayOps workflow definition"

    bad = await service.client.post("/v1/workflows", headers=service.auth(mine),
                                    json={**TURNOVER, "steps": [{"name": "clean", "type": "task"}]})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["errors"][0]["path"].startswith("$.steps[0]")

    first = await service.client.post("/v1/workflows", headers=service.auth(mine), json=TURNOVER)
    yaml_body = "key: turnover\nname: Turnover v2\nsteps:\n  - {name: clean, type: task, task_type: manual, title: C}\n"
    second = await service.client.post("/v1/workflows", content=yaml_body,
                                       headers={**service.auth(mine), "content-type": "application/yaml"})
    other = await service.client.post("/v1/workflows", headers=service.auth(theirs), json=TURNOVER)
    assert [r.status_code for r in (first, second, other)] == [201, 201, 201]
    assert [r.json()["version"] for r in (first, second, other)] == [1, 2, 1]

    listed = await service.client.get("/v1/workflows", headers=service.auth(mine))
    assert {(w["key"], w["version"], w["builtin"]) for w in listed.json()["items"]} == {
        ("turnover", 2, False), ("dynamic-pricing", 4, True), ("portfolio-pricing", 1, True),
        ("segment-pricing", 1, True)}


async def test_a_started_run_asks_automation_to_sync_correlated_by_the_run_id(service: RunningService) -> None:
    org = new_org()
    run_id = await start_pricing(service, org, owner_user_id="u-owner")

    [request] = await eventually(lambda: _async(service.task_requests(run_id)), timeout=30,
                                 what="stayops.task.requested for the sync step")
    data = request.data
    assert (data["request_id"], data["task_type"], data["assigned_to"], data["workflow_step"]) == (
        f"{run_id}:sync:1", "automated", "automation", "sync")
    assert data["data"] == {"action": "request_sync", "platform": "airbnb", "listing_ids": ["l-1"]}
    assert request.orgid == org
    run = await service.run(org, run_id)
    assert (run["status"], run["current_step"], run["workflow_version"]) == ("waiting", "sync", 4)


async def test_a_small_change_is_approved_by_rule_and_the_run_completes(service: RunningService) -> None:
    org = new_org()
    run_id = await start_pricing(service, org, monitor_days=0, threshold_pct=10)

    await service.run_waiting_at(org, run_id, "sync")
    await service.complete(org, run_id, "sync")
    await service.run_waiting_at(org, run_id, "analysis")
    await service.complete(org, run_id, "analysis", task_type=TaskType.ANALYSIS, result=analysis(3.0),
                           by="u-agent-rm")
    await service.run_waiting_at(org, run_id, "publish")
    await service.complete(org, run_id, "publish")
    await service.run_waiting_at(org, run_id, "review")  # the 0-day monitor timer fired
    await service.complete(org, run_id, "review", task_type=TaskType.ANALYSIS, by="u-agent-rm")
    await service.run_waiting_at(org, run_id, "summary")
    await service.complete(org, run_id, "summary")

    run = await service.run_finished(org, run_id)
    assert (run["status"], run["result"]) == ("completed", {"decision": "approved"})
    log = [(e["actor"], e["message"]) for e in run["log"]]
    assert any(actor == "rule" and "approved by rule" in message for actor, message in log)
    assert ("timer", "step monitor: wait over") in log
    publish = next(e for e in service.task_requests(run_id) if e.data["workflow_step"] == "publish")
    assert publish.data["data"]["prices"] == [{"listing_id": "l-1", "date": "2025-03-10", "price": 103.0,
                                               "currency": "EUR", "previous_price": 100.0}]
    rule = builtin_documents()["dynamic-pricing"]["steps"][2]["rule"]
    assert (publish.data["data"]["approved_by"], publish.data["data"]["approval_step"]) == (f"rule:{rule}",
                                                                                           "decision")


async def test_a_big_change_asks_the_owner_whose_changes_are_published(service: RunningService) -> None:
    org = new_org()
    run_id = await start_pricing(service, org)
    await service.run_waiting_at(org, run_id, "sync")
    await service.complete(org, run_id, "sync")
    await service.run_waiting_at(org, run_id, "analysis")
    await service.complete(org, run_id, "analysis", task_type=TaskType.ANALYSIS, result=analysis(25.0))

    await service.run_waiting_at(org, run_id, "decision")
    decision = await eventually(
        lambda: _async([e for e in service.task_requests(run_id) if e.data["workflow_step"] == "decision"]),
        timeout=30, what="the decision task request")
    assert (decision[0].data["task_type"], decision[0].data["role_id"]) == ("decision", "owner")
    assert decision[0].data["data"]["proposal"] == analysis(25.0)["recommendations"]

    await service.complete(org, run_id, "decision", task_type=TaskType.DECISION, by="u-owner",
                           outcome=DecisionOutcome.APPROVED,
                           changes={"prices": [{"listing_id": "l-1", "date": "2025-03-10", "price": 110.0}]})

    await service.run_waiting_at(org, run_id, "publish")
    publish = await eventually(
        lambda: _async([e for e in service.task_requests(run_id) if e.data["workflow_step"] == "publish"]),
        timeout=30, what="the publish task request")
    assert publish[0].data["data"]["approved_by"] == "u-owner"
    assert [p["price"] for p in publish[0].data["data"]["prices"]] == [110.0]


async def test_a_failed_publish_is_compensated_and_the_run_fails(service: RunningService) -> None:
    org = new_org()
    run_id = await start_pricing(service, org, owner_user_id="u-owner")
    for step, task_type, result in (("sync", TaskType.AUTOMATED, {}),
                                    ("analysis", TaskType.ANALYSIS, analysis(2.0))):
        await service.run_waiting_at(org, run_id, step)
        await service.complete(org, run_id, step, task_type=task_type, result=result)
    await service.run_waiting_at(org, run_id, "publish")
    await service.fail(org, run_id, "publish", "listing l-1 refused the price")

    actions = []
    for step in ("publish.compensation.1", "publish.compensation.2"):  # one at a time, in order
        [compensation] = await service.task_request(run_id, await service.request_of(org, run_id, step))
        actions.append(compensation.data["data"]["action"])
        await service.complete(org, run_id, step)
    assert actions == ["notify", "request_sync"]

    run = await service.run_finished(org, run_id)
    assert (run["status"], run["compensated"], run["needs_attention"]) == ("failed", True, False)
    assert "listing l-1 refused the price" in run["failure_reason"]


async def test_the_same_idempotency_key_answers_the_same_run(service: RunningService) -> None:
    org = new_org()
    headers = {**service.auth(org), "Idempotency-Key": f"key-{uuid.uuid4()}"}
    body = {"parameters": {"listing_ids": ["l-1"]}}

    first = await service.client.post("/v1/workflows/dynamic-pricing/runs", headers=headers, json=body)
    again = await service.client.post("/v1/workflows/dynamic-pricing/runs", headers=headers, json=body)

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]


async def test_invalid_parameters_are_refused(service: RunningService) -> None:
    org = new_org()
    response = await service.client.post("/v1/workflows/dynamic-pricing/runs", headers=service.auth(org),
                                         json={"parameters": {"threshold_pct": 5}})
    assert response.status_code == 422
    missing = await service.client.post("/v1/workflows/no-such-flow/runs", headers=service.auth(org), json={})
    assert missing.status_code == 404


async def test_a_run_of_another_org_is_not_found(service: RunningService) -> None:
    mine, theirs = new_org(), new_org()
    their_run = await start_pricing(service, theirs)

    other = await service.client.get(f"/v1/runs/{their_run}", headers=service.auth(mine))
    cancel = await service.client.post(f"/v1/runs/{their_run}/cancel", headers=service.auth(mine))
    unknown = await service.client.get(f"/v1/runs/{uuid.uuid4()}", headers=service.auth(mine))

    for response in (other, cancel, unknown):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_task_outcomes_of_another_org_or_a_stale_step_do_not_move_a_run(service: RunningService) -> None:
    mine, theirs = new_org(), new_org()
    my_run = await start_pricing(service, mine)
    their_run = await start_pricing(service, theirs)
    await service.run_waiting_at(theirs, their_run, "sync")

    # My org's task names the other org's run; then a completion for a step my run is not at.
    await service.fail(mine, their_run, "sync", "listing unreachable", request_id=f"{their_run}:sync:1")
    await service.complete(mine, my_run, "analysis", task_type=TaskType.ANALYSIS, request_id=f"{my_run}:analysis:1")

    run = await eventually(lambda: _logged(service, mine, my_run, "ignored"), timeout=30,
                           what="the stale completion in the log")
    assert (run["status"], run["current_step"]) == ("waiting", "sync")
    theirs_now = await service.run(theirs, their_run)
    assert (theirs_now["status"], theirs_now["current_step"]) == ("waiting", "sync")
    assert not any("failed" in e["message"] for e in theirs_now["log"])


async def test_a_run_is_started_once_per_requested_event(service: RunningService) -> None:
    org = new_org()
    request_id = f"req-{uuid.uuid4()}"
    requested = WorkflowRunRequested(request_id=request_id, org_id=org, workflow_key="dynamic-pricing",
                                     parameters={"listing_ids": ["l-1"]}, requested_by="automation-1")
    await service.publish("stayops.workflow.run.requested", requested, key=request_id)
    await service.publish("stayops.workflow.run.requested", requested, key=request_id)

    async def started() -> Any:
        async with service.runtime.engine.connect() as conn:
            return await store.run_by_request(conn, org, request_id)

    run = await eventually(started, timeout=30, what="the requested run")
    await eventually(lambda: _async(service.task_requests(run.id)), timeout=30, what="its sync task")
    assert (run.started_by, run.workflow_key) == ("automation-1", "dynamic-pricing")


async def test_a_cancelled_run_stops_and_ignores_late_completions(service: RunningService) -> None:
    org = new_org()
    run_id = await start_pricing(service, org)
    await service.run_waiting_at(org, run_id, "sync")

    cancelled = await service.client.post(f"/v1/runs/{run_id}/cancel", headers=service.auth(org),
                                          json={"reason": "not this week"})
    again = await service.client.post(f"/v1/runs/{run_id}/cancel", headers=service.auth(org))
    await service.complete(org, run_id, "sync", request_id=f"{run_id}:sync:1")

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert again.status_code == 409
    run = await eventually(lambda: _logged(service, org, run_id, "ignored"), timeout=30, what="late completion")
    assert run["status"] == "cancelled"


async def _logged(service: RunningService, org: str, run_id: str, text: str) -> dict[str, Any] | None:
    run = await service.run(org, run_id)
    return run if any(text in e["message"] for e in run["log"]) else None


async def _async(value: Any) -> Any:
    return value


def fresh_data(timeout: str) -> dict[str, Any]:
    return {"key": "fresh-data", "name": "Fresh data, then a pause", "steps": [
        {"name": "ask", "type": "emit_and_await", "event_type": "stayops.sync.requested",
         "reply_type": "airbnb.sync.completed", "failure_type": "airbnb.sync.failed", "timeout": timeout,
         "data": {"platform": "airbnb", "listing_ids": "${params.listing_ids}", "requested_by": "workflow-service"}},
        {"name": "pause", "type": "wait", "duration": "PT2S"},
        {"name": "note", "type": "task", "task_type": "manual", "title": "Synced ${steps.ask.result.counts.listings}",
         "role_id": "owner"},
    ]}


async def start_custom(service: RunningService, org: str, document: dict[str, Any]) -> str:
    published = await service.client.post("/v1/workflows", headers=service.auth(org), json=document)
    assert published.status_code == 201, published.text
    started = await service.client.post(f"/v1/workflows/{document['key']}/runs", headers=service.auth(org),
                                        json={"parameters": {"listing_ids": ["l-1"]}})
    assert started.status_code == 201, started.text
    run_id: str = started.json()["id"]
    return run_id


async def test_emit_and_await_advances_on_the_reply_then_a_durable_timer_fires_once(
    service: RunningService,
) -> None:
    org = new_org()
    run_id = await start_custom(service, org, fresh_data("PT60S"))
    waiting = await service.run_waiting_at(org, run_id, "ask")
    request_id = waiting["waiting_for"]["request_id"]
    assert request_id == f"{run_id}:ask:1"

    await service.publish("airbnb.sync.completed", event_type("airbnb.sync.completed").model.model_validate({
        "request_id": request_id, "org_id": org, "listing_ids": ["l-1"],
        "counts": {"listings": 1, "reservations": 0, "market_rates": 0},
        "completed_at": service.runtime.clock.now().isoformat(),
    }), key=request_id)

    paused = await service.run_waiting_at(org, run_id, "pause")
    assert paused["steps"]["ask"]["status"] == "completed"
    await service.run_waiting_at(org, run_id, "note")
    [note] = await eventually(lambda: _async([e for e in service.task_requests(run_id)
                                              if e.data["workflow_step"] == "note"]), what="the note task")
    assert note.data["title"] == "Synced 1"
    async with service.runtime.engine.connect() as conn:
        rows = (await conn.execute(store.timers.select().where(store.timers.c.run_id == run_id))).all()
    pause = [r for r in rows if r.step == "pause"]
    assert len(pause) == 1 and pause[0].fired_at is not None and pause[0].fired_at >= pause[0].due_at
    assert [r.step for r in rows if r.step == "ask"] == []  # the reply's timeout timer went with the wait


async def test_emit_and_await_fails_the_run_when_no_reply_comes_in_time(service: RunningService) -> None:
    org = new_org()
    run_id = await start_custom(service, org, fresh_data("PT1S"))

    run = await service.run_finished(org, run_id)

    assert (run["status"], run["compensated"], run["current_step"]) == ("failed", True, "ask")
    assert "no airbnb.sync.completed within PT1S" in run["failure_reason"]


async def test_a_failed_compensation_leaves_the_run_failed_and_needing_attention(service: RunningService) -> None:
    org = new_org()
    run_id = await start_pricing(service, org)
    for step, task_type, result in (("sync", TaskType.AUTOMATED, {}),
                                    ("analysis", TaskType.ANALYSIS, analysis(2.0))):
        await service.run_waiting_at(org, run_id, step)
        await service.complete(org, run_id, step, task_type=task_type, result=result)
    await service.run_waiting_at(org, run_id, "publish")
    await service.fail(org, run_id, "publish", "platform down")
    await service.complete(org, run_id, "publish.compensation.1")
    for attempt in (1, 2, 3):  # the first attempt and its two retries, each after a durable timer
        request_id = await service.waiting_for_request(org, run_id, f"{run_id}:publish.compensation.2:{attempt}")
        await service.fail(org, run_id, "publish.compensation.2", "sync down too", request_id=request_id)

    run = await service.run_finished(org, run_id)

    assert (run["status"], run["compensated"], run["needs_attention"]) == ("needs_attention", False, True)
    assert "sync down too" in run["failure_reason"]
    assert [e.data["request_id"] for e in service.requested(run_id, "publish.compensation.2")] == [
        f"{run_id}:publish.compensation.2:{n}" for n in (1, 2, 3)]
    [attention] = await eventually(lambda: _async(service.requested(run_id, "needs_attention")), timeout=30,
                                   what="the owners told")
    assert (attention.data["data"]["action"], attention.data["data"]["role_id"]) == ("notify", "owner")


async def test_a_run_keeps_the_version_it_started_with(service: RunningService) -> None:
    org = new_org()
    run_id = await start_custom(service, org, TURNOVER)
    await service.run_waiting_at(org, run_id, "clean")
    changed = {**TURNOVER, "steps": [{"name": "scrub", "type": "task", "task_type": "manual", "title": "S"}]}
    assert (await service.client.post("/v1/workflows", headers=service.auth(org), json=changed)).json()["version"] == 2

    await service.complete(org, run_id, "clean", task_type=TaskType.MANUAL, by="u-cleaner")

    run = await service.run_finished(org, run_id)
    assert (run["status"], run["workflow_version"]) == ("completed", 1)


async def test_two_orgs_runs_of_the_same_key_and_version_each_follow_their_own_definition(
    service: RunningService,
) -> None:
    mine, theirs = new_org(), new_org()
    two_steps = {**TURNOVER, "steps": [*TURNOVER["steps"], {
        "name": "inspect", "type": "task", "task_type": "manual", "title": "Inspect", "role_id": "cleaner"}]}
    first = await start_custom(service, mine, TURNOVER)
    second = await start_custom(service, theirs, two_steps)

    for org, run_id in ((mine, first), (theirs, second)):
        await service.complete(org, run_id, "clean", task_type=TaskType.MANUAL, by="u-cleaner")

    assert (await service.run_finished(mine, first))["status"] == "completed"
    await service.run_waiting_at(theirs, second, "inspect")


async def test_a_duplicate_completion_advances_the_run_once(service: RunningService) -> None:
    org = new_org()
    run_id = await start_pricing(service, org)
    await service.run_waiting_at(org, run_id, "sync")

    await asyncio.gather(service.complete(org, run_id, "sync"), service.complete(org, run_id, "sync"))

    await service.run_waiting_at(org, run_id, "analysis")
    await eventually(lambda: _logged(service, org, run_id, "ignored"), timeout=30, what="the duplicate ignored")
    await service.task_request(run_id, f"{run_id}:analysis:1")
    analyses = [e for e in service.task_requests(run_id) if e.data["workflow_step"] == "analysis"]
    assert [e.data["request_id"] for e in analyses] == [f"{run_id}:analysis:1"]


async def test_concurrent_starts_with_one_idempotency_key_make_one_run(service: RunningService) -> None:
    org = new_org()
    headers = {**service.auth(org), "Idempotency-Key": f"key-{uuid.uuid4()}"}

    responses = await asyncio.gather(*(
        service.client.post("/v1/workflows/dynamic-pricing/runs", headers=headers,
                            json={"parameters": {"listing_ids": ["l-1"]}}) for _ in range(4)))

    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
    assert len({r.json()["id"] for r in responses}) == 1


# --- the guards -------------------------------------------------------------------

async def until_published(service: RunningService, org: str, run_id: str, change: float) -> None:
    await service.complete(org, run_id, "sync")
    await service.complete(org, run_id, "analysis", task_type=TaskType.ANALYSIS, result=analysis(change),
                           by="u-agent-rm")


async def test_a_run_started_as_the_readme_shows_completes_and_tells_the_person_who_started_it(
    service: RunningService,
) -> None:
    org = new_org()
    response = await service.client.post(
        "/v1/workflows/dynamic-pricing/runs", headers=service.auth(org, user="u-rm", role="revenue-manager"),
        json={"parameters": {"listing_ids": ["l-1"], "threshold_pct": 1000, "monitor_days": 0}})
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    assert response.json()["parameters"]["owner_user_id"] == "u-rm"

    await until_published(service, org, run_id, 3.0)
    await service.complete(org, run_id, "publish")
    await service.complete(org, run_id, "review", task_type=TaskType.ANALYSIS, by="u-agent-rm")
    [summary] = await service.task_request(run_id, await service.request_of(org, run_id, "summary"))
    assert (summary.data["data"]["user_id"], summary.data["data"]["role_id"]) == ("u-rm", "owner")
    await service.complete(org, run_id, "summary")

    run = await service.run_finished(org, run_id)
    assert (run["status"], run["result"]) == ("completed", {"decision": "approved"}), run["log"]


async def test_a_notification_failing_after_publish_is_retried_then_the_run_completes_with_a_warning(
    service: RunningService,
) -> None:
    org = new_org()
    request_id = f"req-{uuid.uuid4()}"
    # Started by an automation: nobody to default the owner to, so the owner role is told.
    await service.publish("stayops.workflow.run.requested", WorkflowRunRequested(
        request_id=request_id, org_id=org, workflow_key="dynamic-pricing", requested_by="automation-1",
        parameters={"listing_ids": ["l-1"], "monitor_days": 0}), key=request_id)

    async def started() -> Any:
        async with service.runtime.engine.connect() as conn:
            return await store.run_by_request(conn, org, request_id)

    run_id = (await eventually(started, timeout=30, what="the requested run")).id
    await until_published(service, org, run_id, 3.0)
    await service.complete(org, run_id, "publish")
    await service.complete(org, run_id, "review", task_type=TaskType.ANALYSIS, by="u-agent-rm")
    for attempt in (1, 2, 3):
        attempt_id = await service.waiting_for_request(org, run_id, f"{run_id}:summary:{attempt}")
        [summary] = await service.task_request(run_id, attempt_id)
        assert (summary.data["data"]["user_id"], summary.data["data"]["role_id"]) == (None, "owner")
        await service.fail(org, run_id, "summary", "user_id: Input should be a valid string", request_id=attempt_id)

    run = await service.run_finished(org, run_id)
    assert (run["status"], run["compensated"]) == ("completed", None), run["log"]
    assert run["steps"]["publish"]["status"] == "completed"
    assert any(m.startswith("run completed with 1 warning(s): step summary failed after 3 attempt(s)")
               for m in (e["message"] for e in run["log"]))
    assert not [e for e in service.task_requests(run_id) if ".compensation." in e.data["workflow_step"]]


async def test_a_huge_run_threshold_still_asks_a_person_for_a_big_change(service: RunningService) -> None:
    org = new_org()
    run_id = await start_pricing(service, org, threshold_pct=1000)
    await until_published(service, org, run_id, 25.0)

    await service.run_waiting_at(org, run_id, "decision")
    run = await service.run(org, run_id)
    assert any("price policy wants a person" in e["message"] and "approval threshold of 10 %" in e["message"]
               for e in run["log"])
    assert not service.requested(run_id, "publish")


def policy_event(org: str, **pricing: Any) -> OrgPolicyUpdated:
    return OrgPolicyUpdated(org_id=org, pricing=PriceGuardrails(**pricing), updated_at=datetime.now(UTC))


async def stored_policy(service: RunningService, org: str, **pricing: Any) -> None:
    await service.publish("org.policy.updated", policy_event(org, **pricing), key=org)

    async def stored() -> bool:
        async with service.runtime.engine.connect() as conn:
            return (await policy_of(conn, org)).pricing == PriceGuardrails(**pricing)
    await eventually(stored, timeout=30, what="the org's policy in the read model")


async def test_the_org_policy_read_model_bounds_decisions(service: RunningService) -> None:
    generous, strict = new_org(), new_org()
    await stored_policy(service, generous, approval_threshold_pct=30)
    await stored_policy(service, strict, max_change_pct=20)

    by_rule = await start_pricing(service, generous, threshold_pct=1000)
    await until_published(service, generous, by_rule, 25.0)
    await service.run_waiting_at(generous, by_rule, "publish")

    refused = await start_pricing(service, strict)
    await until_published(service, strict, refused, 15.0)
    await service.complete(strict, refused, "decision", task_type=TaskType.DECISION, by="u-owner",
                           outcome=DecisionOutcome.APPROVED,
                           changes={"prices": [{"listing_id": "l-1", "date": "2025-03-10", "price": 150.0}]})
    run = await service.run_finished(strict, refused)
    assert run["status"] == "failed"
    assert "l-1 2025-03-10: a change of +50.0 % from 100.0 is more than the 20 % a night may move" in \
        run["failure_reason"]
    assert not service.requested(refused, "publish"), "nothing is published"


@pytest.mark.parametrize(("document", "path", "says"), [
    ({"key": "forge", "name": "Forge", "steps": [
        {"name": "approve", "type": "emit_and_await", "event_type": "stayops.pricing.approved",
         "reply_type": "airbnb.price.updated", "timeout": "PT1M", "data": {}}]},
     "$.steps[0].event_type", "may not emit"),
    ({"key": "bomb", "name": "Bomb", "steps": [
        {"name": "a", "type": "task", "task_type": "manual", "title": "A", "when": "'%2147483648d' % 1"}]},
     "$.steps[0].when", "numbers only"),
    ({"key": "forged-approver", "name": "Forged approver", "steps": [
        {"name": "decision", "type": "decision", "role_id": "owner", "title": "D", "proposal": []},
        {"name": "publish", "type": "task", "task_type": "automated", "assigned_to": "automation",
         "title": "P", "approval": "decision",
         "data": {"action": "publish_prices", "platform": "airbnb", "approved_by": "u-owner"}}]},
     "$.steps[1].data.approved_by", "filled by the engine"),
])
async def test_definitions_that_would_bypass_the_guards_are_refused_at_publish(
    service: RunningService, document: dict[str, Any], path: str, says: str,
) -> None:
    org = new_org()
    response = await service.client.post("/v1/workflows", headers=service.auth(org), json=document)

    assert response.status_code == 422, response.text
    assert any(e["path"] == path and says in e["message"] for e in response.json()["errors"]), response.json()
    listed = await service.client.get("/v1/workflows", headers=service.auth(org))
    assert document["key"] not in {w["key"] for w in listed.json()["items"]}


async def test_a_run_whose_data_exceeds_the_expression_limits_fails_cleanly(service: RunningService) -> None:
    org = new_org()
    growing = {"key": "growing", "name": "Growing", "parameters": {"type": "object"}, "steps": [
        {"name": "a", "type": "task", "task_type": "manual", "title": "A", "role_id": "ops",
         "data": {"note": "${" + " + ".join(["params.s"] * 40) + "}"}}]}
    assert (await service.client.post("/v1/workflows", headers=service.auth(org), json=growing)).status_code == 201

    response = await service.client.post("/v1/workflows/growing/runs", headers=service.auth(org),
                                         json={"parameters": {"s": "x" * 5000}})

    assert response.status_code == 201, response.text
    run = response.json()
    assert run["status"] == "failed" and "exceeds the expression limits" in run["failure_reason"]
    # The owners are told of the failure (run_failed); the step itself asked for no task.
    assert [e for e in service.task_requests(run["id"]) if e.data["workflow_step"] != "run_failed"] == []


async def test_a_run_of_a_definition_published_before_the_checks_stops_needing_attention(
    service: RunningService,
) -> None:
    org = new_org()
    run_id = await start_custom(service, org, TURNOVER)
    await service.run_waiting_at(org, run_id, "clean")
    # As an older service version accepted a v2 and started the run on it: a step that
    # emits another service's fact. (A stored version never changes, so v2 is a version
    # this service has not parsed yet, as after an upgrade.)
    forged = {**TURNOVER, "version": 2, "steps": [*TURNOVER["steps"], {
        "name": "approve", "type": "emit_and_await", "event_type": "stayops.pricing.approved",
        "reply_type": "airbnb.price.updated", "timeout": "PT1M", "data": {}}]}
    async with service.runtime.engine.begin() as conn:
        await store.insert_definition(conn, WorkflowDefinition(
            org_id=org, key="turnover", version=2, name=forged["name"], document=forged,
            created_at=datetime.now(UTC), created_by="u-owner"))
        await conn.execute(store.runs.update().where(store.runs.c.id == run_id).values(workflow_version=2))

    await service.complete(org, run_id, "clean", task_type=TaskType.MANUAL, by="u-cleaner")

    run = await service.run_finished(org, run_id)
    assert (run["status"], run["needs_attention"]) == ("needs_attention", True)
    assert "no longer passes the workflow checks" in run["failure_reason"]


async def test_a_run_of_an_org_workflow_refuses_true_as_its_version(service: RunningService) -> None:
    org = new_org()
    published = await service.client.post("/v1/workflows", headers=service.auth(org), json=TURNOVER)
    assert published.status_code == 201

    response = await service.client.post("/v1/workflows/turnover/runs", headers=service.auth(org),
                                         json={"workflow_version": True})
    assert response.status_code == 422, response.text
    assert "not true or false" in response.text


# --- the run lifecycle ----------------------------------------------------------

async def test_cancel_asks_task_service_to_withdraw_the_open_task_with_who_and_why(service: RunningService) -> None:
    org = new_org()
    run_id = await start_pricing(service, org)
    request_id = await service.request_of(org, run_id, "sync")

    response = await service.client.post(f"/v1/runs/{run_id}/cancel", headers=service.auth(org),
                                         json={"reason": "wrong listings"})
    assert response.status_code == 200, response.text

    def withdrawals() -> list[Envelope]:
        return [e for e in service.seen if e.type == "stayops.task.cancel.requested" and e.correlationid == run_id]
    [withdrawal] = await eventually(lambda: _async(withdrawals()), timeout=30, what="the task's withdrawal")
    assert (withdrawal.data["request_id"], withdrawal.data["reason"], withdrawal.orgid) == (
        request_id, "wrong listings", org)
    assert withdrawal.data["requested_by"] == response.json()["log"][-1]["actor"]


async def test_a_paused_run_applies_a_completion_that_came_meanwhile_on_resume(service: RunningService) -> None:
    org = new_org()
    run_id = await start_pricing(service, org)
    await service.run_waiting_at(org, run_id, "sync")
    paused = await service.client.post(f"/v1/runs/{run_id}/pause", headers=service.auth(org), json={"reason": "hold"})
    assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.text

    await service.complete(org, run_id, "sync", request_id=f"{run_id}:sync:1")

    async def recorded() -> dict[str, Any] | None:
        run = await service.run(org, run_id)
        return run if any("recorded while paused" in e["message"] for e in run["log"]) else None
    held = await eventually(recorded, timeout=30, what="the completion recorded while paused")
    assert held["status"] == "paused" and service.requested(run_id, "analysis") == []
    again = await service.client.post(f"/v1/runs/{run_id}/pause", headers=service.auth(org))
    assert again.status_code == 409 and again.json()["code"] == "run-not-pausable"

    resumed = await service.client.post(f"/v1/runs/{run_id}/resume", headers=service.auth(org))
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["status"], resumed.json()["current_step"]) == ("waiting", "analysis")


async def test_runs_are_listed_filtered_and_paged_by_a_cursor_inserts_do_not_shift(service: RunningService) -> None:
    org, other = new_org(), new_org()
    for listing in ("l-a", "l-b", "l-c"):
        await start_pricing(service, org, listing_ids=[listing])
    await service.client.post("/v1/workflows", headers=service.auth(org), json=TURNOVER)
    turnover = await service.client.post("/v1/workflows/turnover/runs", headers=service.auth(org), json={})
    assert turnover.status_code == 201, turnover.text
    await start_pricing(service, other, listing_ids=["l-a"])

    async def page(**params: Any) -> dict[str, Any]:
        response = await service.client.get("/v1/runs", headers=service.auth(org), params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    everything = await page()
    assert len(everything["items"]) == 4 and everything["next_cursor"] is None
    assert {r["workflow_key"] for r in (await page(workflow_key="dynamic-pricing"))["items"]} == {"dynamic-pricing"}
    assert [r["parameters"]["listing_ids"] for r in (await page(listing_id="l-b"))["items"]] == [["l-b"]]
    assert len((await page(status=["waiting", "paused"]))["items"]) == 4
    assert (await page(status="completed"))["items"] == []
    assert len((await page(started_by="u-1"))["items"]) in (0, 4)

    first = await page(limit=2)
    assert len(first["items"]) == 2 and first["next_cursor"]
    await start_pricing(service, org, listing_ids=["l-d"])  # newer: never on a later page
    second = await page(limit=2, cursor=first["next_cursor"])
    ids = [r["id"] for r in first["items"] + second["items"]]
    assert ids == [r["id"] for r in everything["items"]] and second["next_cursor"] is None
    bad = await service.client.get("/v1/runs", headers=service.auth(org), params={"cursor": "nope"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    theirs = await service.client.get("/v1/runs", headers=service.auth(other))
    assert [r["parameters"]["listing_ids"] for r in theirs.json()["items"]] == [["l-a"]]


async def test_children_of_a_run_are_empty_and_another_orgs_run_is_not_found(service: RunningService) -> None:
    mine, theirs = new_org(), new_org()
    run_id = await start_pricing(service, mine)
    children = await service.client.get(f"/v1/runs/{run_id}/children", headers=service.auth(mine))
    assert children.status_code == 200 and children.json()["items"] == []
    for path in (f"/v1/runs/{run_id}/children", f"/v1/runs/{run_id}/pause", f"/v1/runs/{run_id}/resume"):
        method = service.client.get if path.endswith("children") else service.client.post
        response = await method(path, headers=service.auth(theirs))
        assert response.status_code == 404 and response.json()["code"] == "run-not-found", path


async def test_a_new_run_for_the_same_listings_cancels_the_open_one(service: RunningService) -> None:
    org = new_org()
    old = await start_pricing(service, org, listing_ids=["l-1", "l-2"])
    await service.run_waiting_at(org, old, "sync")
    new = await start_pricing(service, org, listing_ids=["l-2", "l-1"])
    other_listings = await start_pricing(service, org, listing_ids=["l-3"])

    cancelled = await service.run(org, old)
    assert cancelled["status"] == "cancelled"
    assert f"superseded by run {new}" in cancelled["log"][-1]["message"] or any(
        f"superseded by run {new}" in e["message"] for e in cancelled["log"])
    assert (await service.run(org, new))["status"] == "waiting"
    assert (await service.run(org, other_listings))["status"] == "waiting"


async def test_skip_and_queue_policies_for_overlapping_runs(service: RunningService) -> None:
    org = new_org()
    for key, policy in (("skipper", "skip"), ("queuer", "queue")):
        definition = {**TURNOVER, "key": key, "parameters": {"type": "object", "properties": {
            "listing_id": {"type": "string"}}}, "concurrency": {"key": "${params.listing_id}", "policy": policy}}
        published = await service.client.post("/v1/workflows", headers=service.auth(org), json=definition)
        assert published.status_code == 201, published.text

    async def start(key: str) -> dict[str, Any]:
        response = await service.client.post(f"/v1/workflows/{key}/runs", headers=service.auth(org),
                                             json={"parameters": {"listing_id": "l-1"}})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    first, skipped = await start("skipper"), await start("skipper")
    assert first["status"] == "waiting" and skipped["status"] == "cancelled"
    assert f"skipped: run {first['id']}" in (skipped["log"][-1]["message"])

    running, queued = await start("queuer"), await start("queuer")
    assert queued["status"] == "queued" and service.task_requests(queued["id"]) == []
    await service.complete(org, running["id"], "clean", task_type=TaskType.MANUAL, by="u-cleaner")
    await service.run_finished(org, running["id"])
    await service.run_waiting_at(org, queued["id"], "clean")


ESCALATED = {"key": "refund", "name": "Refund", "steps": [
    {"name": "approve", "type": "decision", "title": "Approve the refund", "role_id": "manager",
     "proposal": "${params.listing_ids}", "deadline": "PT1H", "escalate_after": "PT1S",
     "escalate_to": {"role": "owner"}}]}


async def test_an_escalation_asks_task_service_to_reassign_on_a_durable_timer_and_the_run_keeps_waiting(
    service: RunningService,
) -> None:
    org = new_org()
    run_id = await start_custom(service, org, ESCALATED)
    request_id = await service.request_of(org, run_id, "approve")
    [decision] = await service.task_request(run_id, request_id)

    def reassigned() -> list[Envelope]:
        return [e for e in service.seen if e.type == "stayops.task.reassign.requested" and e.correlationid == run_id]
    [reassign] = await eventually(lambda: _async(reassigned()), timeout=30, what="the reassignment")

    assert (reassign.data["request_id"], reassign.data["role_id"], reassign.data["assigned_to"]) == (
        request_id, "owner", None)
    due = datetime.fromisoformat(decision.data["due_at"]) - decision.time
    assert 3590 < due.total_seconds() <= 3600
    [notify] = await eventually(lambda: _async(service.requested(run_id, "escalation")), timeout=30,
                                what="the escalation's notification")
    assert (notify.data["data"]["action"], notify.data["data"]["role_id"]) == ("notify", "owner")
    run = await service.run(org, run_id)
    assert (run["status"], run["waiting_for"]["request_id"]) == ("waiting", request_id)
    async with service.runtime.engine.connect() as conn:
        waits = (await conn.execute(sa.select(outbox.c.id).where(
            outbox.c.org_id == org, outbox.c.event_type == "stayops.workflow.run.waiting"))).all()
    assert len(waits) == 1  # still the same wait: not announced again


CLEAN_ONE = {"key": "clean-one", "name": "Clean one listing", "parameters": {
    "type": "object", "required": ["listing_id"], "properties": {"listing_id": {"type": "string"}}},
    "result": {"cleaned": "${params.listing_id}"}, "steps": [
        {"name": "clean", "type": "task", "task_type": "automated", "assigned_to": "automation",
         "title": "Clean ${params.listing_id}", "data": {"action": "notify", "listing_id": "${params.listing_id}"}}]}


def fan_out(**map_step: Any) -> dict[str, Any]:
    return {"key": "clean-all", "name": "Clean every listing", "result": {"outcomes": "${steps.each.result}"},
            "steps": [{"name": "each", "type": "map", "items": "params.listing_ids", "workflow": "clean-one",
                       "parameters": {"listing_id": "${item}"}, **map_step}]}


async def map_run(service: RunningService, org: str, listings: list[str], **map_step: Any) -> str:
    for document in (CLEAN_ONE, fan_out(**map_step)):
        published = await service.client.post("/v1/workflows", headers=service.auth(org), json=document)
        assert published.status_code == 201, published.text
    started = await service.client.post("/v1/workflows/clean-all/runs", headers=service.auth(org),
                                        json={"parameters": {"listing_ids": listings}})
    assert started.status_code == 201, started.text
    run_id: str = started.json()["id"]
    return run_id


async def children(service: RunningService, org: str, run_id: str) -> list[dict[str, Any]]:
    response = await service.client.get(f"/v1/runs/{run_id}/children", headers=service.auth(org))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_map_over_five_items_runs_at_most_two_children_at_a_time_and_completes(
    service: RunningService,
) -> None:
    org = new_org()
    listings = [f"l-{i}" for i in range(5)]
    run_id = await map_run(service, org, listings, max_concurrency=2)
    done: set[str] = set()
    peak = 0
    while len(done) < 5:
        async def open_children() -> list[dict[str, Any]] | None:
            found = [c for c in await children(service, org, run_id) if c["id"] not in done]
            return found or None
        waiting = await eventually(open_children, timeout=30, what="an open child run")
        assert all(c["status"] == "waiting" for c in waiting), waiting
        peak = max(peak, len(waiting))
        child = waiting[0]
        await service.complete(org, child["id"], "clean")
        await service.run_finished(org, child["id"])
        done.add(child["id"])
    parent = await service.run_finished(org, run_id)
    assert parent["status"] == "completed", parent["log"]
    assert peak == 2
    every = await children(service, org, run_id)
    assert len(every) == 5 and {c["status"] for c in every} == {"completed"}
    assert {c["parameters"]["listing_id"] for c in every} == set(listings)
    assert {c["parent_run_id"] for c in every} == {run_id}
    items = parent["steps"]["each"]["items"]
    assert [i["status"] for i in items] == ["completed"] * 5
    assert {i["run_id"] for i in items} == {c["id"] for c in every}
    assert [o["result"] for o in parent["result"]["outcomes"]] == [{"cleaned": listing} for listing in listings]


async def test_pausing_resuming_and_cancelling_a_map_run_reach_its_open_children(service: RunningService) -> None:
    org = new_org()
    run_id = await map_run(service, org, ["l-1", "l-2", "l-3"], max_concurrency=2)

    async def two_open() -> list[dict[str, Any]] | None:
        found = await children(service, org, run_id)
        return found if len(found) == 2 and all(c["status"] == "waiting" for c in found) else None
    await eventually(two_open, timeout=30, what="two open child runs")
    paused = await service.client.post(f"/v1/runs/{run_id}/pause", headers=service.auth(org), json={})
    assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.text
    assert [c["status"] for c in await children(service, org, run_id)] == ["paused", "paused"]
    resumed = await service.client.post(f"/v1/runs/{run_id}/resume", headers=service.auth(org))
    assert resumed.status_code == 200 and resumed.json()["status"] == "waiting", resumed.text
    assert [c["status"] for c in await children(service, org, run_id)] == ["waiting", "waiting"]
    response = await service.client.post(f"/v1/runs/{run_id}/cancel", headers=service.auth(org),
                                         json={"reason": "not today"})
    assert response.status_code == 200 and response.json()["status"] == "cancelled", response.text
    assert [i["status"] for i in response.json()["steps"]["each"]["items"]] == ["cancelled", "cancelled",
                                                                                 "not_started"]
    cancelled = await children(service, org, run_id)
    assert [c["status"] for c in cancelled] == ["cancelled", "cancelled"]


async def test_a_map_over_a_workflow_the_org_does_not_have_is_refused_at_publish(service: RunningService) -> None:
    response = await service.client.post("/v1/workflows", headers=service.auth(new_org()), json=fan_out())
    assert response.status_code == 422, response.text
    assert [e["path"] for e in response.json()["errors"]] == ["$.steps[0].workflow"]


def automated(name: str) -> dict[str, Any]:
    return {"name": name, "type": "task", "task_type": "automated", "assigned_to": "automation",
            "title": f"{name} ${{params.listing_id}}", "data": {"action": "noop"}}


def two_branches(**parallel: Any) -> dict[str, Any]:
    return {"key": "prepare", "name": "Prepare a listing", "result": {"both": "${steps.both.result}"},
            "parameters": {"type": "object", "required": ["listing_id"],
                           "properties": {"listing_id": {"type": "string"}}},
            "steps": [{"name": "both", "type": "parallel", **parallel, "branches": {
                "clean": [automated("clean")], "photos": [automated("shoot"), automated("upload")]}}]}


async def parallel_run(service: RunningService, org: str, document: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    published = await service.client.post("/v1/workflows", headers=service.auth(org), json=document)
    assert published.status_code == 201, published.text
    started = await service.client.post(f"/v1/workflows/{document['key']}/runs", headers=service.auth(org),
                                        json={"parameters": {"listing_id": "l-7"}})
    assert started.status_code == 201, started.text
    run_id: str = started.json()["id"]

    async def both_open() -> list[dict[str, Any]] | None:
        found = await children(service, org, run_id)
        return found if len(found) == 2 and all(c["status"] == "waiting" for c in found) else None
    return run_id, await eventually(both_open, timeout=30, what="both branches open")


async def test_a_parallel_step_runs_each_branch_as_a_child_run_and_completes_with_results_by_branch(
    service: RunningService,
) -> None:
    org = new_org()
    run_id, branches = await parallel_run(service, org, two_branches())
    assert sorted((c["workflow_key"], c["branch"]) for c in branches) == [("prepare", "both/clean"),
                                                                           ("prepare", "both/photos")]
    assert {c["parameters"]["listing_id"] for c in branches} == {"l-7"}
    shown = (await service.run(org, run_id))["steps"]["both"]["items"]
    by_branch = {c["branch"].rsplit("/", 1)[1]: c["id"] for c in branches}
    assert {(i["branch"], i["status"], i["run_id"]) for i in shown} == {
        ("clean", "running", by_branch["clean"]), ("photos", "running", by_branch["photos"])}
    await service.fail(org, by_branch["clean"], "clean", "no cleaner today")
    await service.complete(org, by_branch["photos"], "shoot", result={"shots": 12})
    await service.complete(org, by_branch["photos"], "upload", result={"url": "https://x/1"})
    parent = await service.run_finished(org, run_id)
    assert parent["status"] == "completed", parent["log"]
    assert parent["result"]["both"]["photos"] == {"status": "completed", "run_id": by_branch["photos"],
                                                  "result": {"shoot": {"shots": 12}, "upload": {"url": "https://x/1"}}}
    assert parent["result"]["both"]["clean"]["status"] == "failed"
    assert "no cleaner today" in parent["result"]["both"]["clean"]["error"]


async def test_fail_fast_cancels_the_other_branch_and_cancelling_the_parent_cancels_both(
    service: RunningService,
) -> None:
    org = new_org()
    run_id, branches = await parallel_run(service, org, two_branches(on_branch_failure="fail_fast"))
    by_branch = {c["branch"].rsplit("/", 1)[1]: c["id"] for c in branches}
    await service.fail(org, by_branch["photos"], "shoot", "camera broken")
    parent = await service.run_finished(org, run_id)
    assert parent["status"] == "failed" and "branch photos" in parent["failure_reason"], parent["log"]
    assert (await service.run_finished(org, by_branch["clean"]))["status"] == "cancelled"

    run_id, branches = await parallel_run(service, org, {**two_branches(), "key": "prepare-two"})
    response = await service.client.post(f"/v1/runs/{run_id}/cancel", headers=service.auth(org),
                                         json={"reason": "listing sold"})
    assert response.status_code == 200 and response.json()["status"] == "cancelled", response.text
    assert [c["status"] for c in await children(service, org, run_id)] == ["cancelled", "cancelled"]
    # The branches' open tasks are withdrawn in task-service as any cancelled run's.
    withdrawn = [e for e in service.seen if e.type == "stayops.task.cancel.requested"
                 and e.correlationid in {c["id"] for c in branches}]
    assert len(withdrawn) == 2 and {e.data["reason"] for e in withdrawn} == {"listing sold"}


async def test_a_parallel_step_is_refused_at_publish_where_its_branch_is_wrong(service: RunningService) -> None:
    document = two_branches()
    document["steps"][0]["branches"]["clean"] = [automated("clean"), automated("clean")]
    response = await service.client.post("/v1/workflows", headers=service.auth(new_org()), json=document)
    assert response.status_code == 422, response.text
    assert "$.steps[0].branches.clean[1].name" in [e["path"] for e in response.json()["errors"]]
    document["steps"][0]["branches"] = {}
    response = await service.client.post("/v1/workflows", headers=service.auth(new_org()), json=document)
    assert response.status_code == 422, response.text


class StoredResults:
    """A ResultReader standing in for agent-service: the detail behind each ref id."""

    def __init__(self, details: dict[str, dict[str, Any]]) -> None:
        self.details = details
        self.fetched: list[str] = []

    async def fetch(self, ref: Any) -> dict[str, Any]:
        self.fetched.append(ref.id)
        return self.details[ref.id]


async def test_a_branch_resumed_by_its_parent_reads_a_stored_result_it_recorded_while_paused(
    service: RunningService, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stayops_schemas.claims import by_reference, make_ref, pricing_summary

    org = new_org()
    document = {"key": "review", "name": "Review", "steps": [{"name": "both", "type": "parallel", "branches": {
        "price": [automated("analysis"),
                  {"name": "decide", "type": "decision", "title": "Prices", "role_id": "owner",
                   "proposal": "${steps.analysis.result.recommendations}"}],
        "other": [automated("noop")]}}]}
    published = await service.client.post("/v1/workflows", headers=service.auth(org), json=document)
    assert published.status_code == 201, published.text
    started = await service.client.post("/v1/workflows/review/runs", headers=service.auth(org), json={})
    run_id = started.json()["id"]

    async def price_branch() -> str | None:
        found = [c for c in await children(service, org, run_id) if c["branch"] == "both/price"]
        return found[0]["id"] if found and found[0]["status"] == "waiting" else None
    branch = await eventually(price_branch, timeout=30, what="the price branch waiting")
    paused = await service.client.post(f"/v1/runs/{run_id}/pause", headers=service.auth(org), json={})
    assert paused.status_code == 200, paused.text
    detail = analysis(30.0)
    detail["recommendations"] = [{**night, "currency": "EUR"} for night in detail["recommendations"]]
    ref = make_ref(detail, service="agent-service", kind="pricing", id=f"res-{uuid.uuid4().hex[:8]}", org_id=org,
                   summary=pricing_summary(detail))
    await service.complete(org, branch, "analysis", result=by_reference(ref))

    async def held() -> bool:
        return any("recorded while paused" in e["message"] for e in (await service.run(org, branch))["log"])
    await eventually(held, timeout=30, what="the completion recorded while paused")
    reader = StoredResults({ref.id: detail})
    monkeypatch.setattr(service.runtime, "results", reader)
    resumed = await service.client.post(f"/v1/runs/{run_id}/resume", headers=service.auth(org))
    assert resumed.status_code == 200, resumed.text
    child = await service.run_waiting_at(org, branch, "decide")
    assert reader.fetched == [ref.id]
    assert child["steps"]["decide"]["proposal_ref"]["id"] == ref.id
