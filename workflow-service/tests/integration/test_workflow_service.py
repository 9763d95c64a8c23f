"""workflow-service through its public entries, on real PostgreSQL and Apache Kafka:
authentication, definitions and their versions, the dynamic-pricing saga advancing
on task outcomes and its durable timer, compensation, idempotent starts and org
isolation."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from stayops_kit.testing import ServiceUnderTest, eventually, service_under_test
from stayops_schemas.binding import from_kafka
from stayops_schemas.catalog import TASKS, event_type
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.tasks import DecisionOutcome, TaskCompleted, TaskFailed, TaskType
from stayops_schemas.events.workflows import WorkflowRunRequested
from workflow_service import store
from workflow_service.app import NAME, create_app

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
            return run if run["status"] in ("completed", "failed", "cancelled") else None
        return await eventually(finished, timeout=30, what=f"run {run_id} finished")

    async def complete(self, org: str, run_id: str, step: str, *, task_type: TaskType = TaskType.AUTOMATED,
                       result: dict[str, Any] | None = None, outcome: DecisionOutcome | None = None,
                       by: str = "automation", changes: dict[str, Any] | None = None) -> None:
        await self.publish("stayops.task.completed", TaskCompleted(
            task_id=f"task-{run_id}-{step}", org_id=org, workflow_run_id=run_id, workflow_step=step,
            task_type=task_type, completed_by=by, result=result or {}, outcome=outcome, changes=changes or {},
        ), key=run_id)

    async def fail(self, org: str, run_id: str, step: str, reason: str) -> None:
        await self.publish("stayops.task.failed", TaskFailed(
            task_id=f"task-{run_id}-{step}", org_id=org, workflow_run_id=run_id, workflow_step=step,
            reason=reason, failed_by="automation",
        ), key=run_id)


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
        ("turnover", 2, False), ("dynamic-pricing", 1, True)}


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
    assert (run["status"], run["current_step"], run["workflow_version"]) == ("waiting", "sync", 1)


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

    compensations = await eventually(
        lambda: _async([e for e in service.task_requests(run_id) if ".compensation." in e.data["workflow_step"]]
                       if len(service.task_requests(run_id)) >= 5 else []),
        timeout=30, what="the compensation task requests")
    assert sorted(e.data["data"]["action"] for e in compensations) == ["notify", "request_sync"]
    for e in compensations:
        await service.complete(org, run_id, e.data["workflow_step"])

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
    await service.fail(mine, their_run, "sync", "listing unreachable")
    await service.complete(mine, my_run, "analysis", task_type=TaskType.ANALYSIS)

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
    await service.complete(org, run_id, "sync")

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
    await eventually(lambda: _logged(service, org, run_id, "compensating"), timeout=30, what="compensation")
    await service.fail(org, run_id, "publish.compensation.2", "sync down too")

    run = await service.run_finished(org, run_id)

    assert (run["status"], run["compensated"], run["needs_attention"]) == ("failed", False, True)
    assert "sync down too" in run["failure_reason"]


async def test_a_run_keeps_the_version_it_started_with(service: RunningService) -> None:
    org = new_org()
    run_id = await start_custom(service, org, TURNOVER)
    await service.run_waiting_at(org, run_id, "clean")
    changed = {**TURNOVER, "steps": [{"name": "scrub", "type": "task", "task_type": "manual", "title": "S"}]}
    assert (await service.client.post("/v1/workflows", headers=service.auth(org), json=changed)).json()["version"] == 2

    await service.complete(org, run_id, "clean", task_type=TaskType.MANUAL, by="u-cleaner")

    run = await service.run_finished(org, run_id)
    assert (run["status"], run["workflow_version"]) == ("completed", 1)


async def test_a_duplicate_completion_advances_the_run_once(service: RunningService) -> None:
    org = new_org()
    run_id = await start_pricing(service, org)
    await service.run_waiting_at(org, run_id, "sync")

    await asyncio.gather(service.complete(org, run_id, "sync"), service.complete(org, run_id, "sync"))

    await service.run_waiting_at(org, run_id, "analysis")
    await eventually(lambda: _logged(service, org, run_id, "ignored"), timeout=30, what="the duplicate ignored")
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
