"""automation-service through its public entries, on real PostgreSQL and Apache Kafka:
authentication and org isolation, automations created and run over REST, schedules
fired exactly once by two schedulers, and the actions of `automated` tasks answered
by the sync services."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition

from automation_service import store
from automation_service.app import NAME, create_app
from automation_service.domain import Automation, Execution
from stayops_kit.policies import policy_of
from stayops_kit.testing import ServiceUnderTest, announced, eventually, service_under_test
from stayops_schemas.binding import from_kafka
from stayops_schemas.catalog import AUTOMATIONS, WORKFLOWS
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.automations import AutomationType, ExecutionOutcome
from stayops_schemas.events.org import OrgPolicyUpdated, PriceGuardrails
from stayops_schemas.events.sync import (
    NightlyPrice,
    PriceUpdated,
    PriceUpdateFailed,
    SyncCompleted,
    SyncCounts,
)
from stayops_schemas.events.tasks import TaskAssigned, TaskCancelled, TaskType
from stayops_schemas.events.workflows import WorkflowRunCompleted, WorkflowRunStarted

pytestmark = pytest.mark.stack

NOW = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)
START_PRICING = {"type": "start_workflow", "workflow_key": "dynamic-pricing",
                 "parameters": {"listing_ids": ["l-1"], "threshold_pct": 10, "monitor_days": 7}}


@dataclass
class Announced:
    """Every event automation-service's topics carry, read from the start."""

    events: list[Envelope] = field(default_factory=list)

    def matching(self, type_: str, org: str, **data: Any) -> list[Envelope]:
        return [e for e in self.events if e.type == type_ and e.orgid == org
                and all(e.data.get(k) == v for k, v in data.items())]

    async def one(self, type_: str, org: str, **data: Any) -> Envelope:
        async def found() -> list[Envelope]:
            return self.matching(type_, org, **data)

        return (await eventually(found, timeout=20, what=f"{type_} {data}"))[0]


@dataclass
class RunningService(ServiceUnderTest):
    announced: Announced = field(default_factory=lambda: Announced())


async def read_topics(bootstrap: str, topics: list[str], into: Announced) -> AsyncIterator[None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in (consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))]
        consumer.assign(partitions)

        async def collect() -> None:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    into.events.extend(from_kafka(r.key, r.value, r.headers) for r in records)

        reader = asyncio.create_task(collect())
        yield
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[RunningService]:
    announced = Announced()
    reading = read_topics(stack.kafka_bootstrap, [AUTOMATIONS, WORKFLOWS], announced)
    try:
        async with service_under_test(create_app, NAME, stack) as running:
            await anext(reading)
            yield RunningService(**vars(running), announced=announced)
    finally:
        with contextlib.suppress(StopAsyncIteration):
            await anext(reading)


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


async def seed_weekly_pricing(service: RunningService, org: str) -> str:
    automation_id = str(uuid.uuid4())
    async with service.runtime.uow.begin() as uow:
        await store.insert_automation(uow.conn, Automation(
            id=automation_id, org_id=org, name="Weekly price optimisation",
            kind=AutomationType.SCHEDULED, cron="0 9 * * SUN", timezone="Europe/Lisbon",
            action=START_PRICING, is_active=True,
            created_by="u-owner", created_at=NOW, updated_at=NOW,
        ))
        await store.insert_execution(uow.conn, Execution(
            id=str(uuid.uuid4()), automation_id=automation_id, org_id=org, started_at=NOW,
            finished_at=NOW + timedelta(seconds=2), outcome=ExecutionOutcome.SUCCESS, scheduled_for=NOW,
        ))
    return automation_id


async def test_routes_need_a_token(service: RunningService) -> None:
    response = await service.client.get("/v1/automations")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_caller_sees_only_their_orgs_automations(service: RunningService) -> None:
    mine, theirs = new_org(), new_org()
    my_automation = await seed_weekly_pricing(service, mine)
    their_automation = await seed_weekly_pricing(service, theirs)

    listed = await service.client.get("/v1/automations", headers=service.auth(mine))
    own = await service.client.get(f"/v1/automations/{my_automation}", headers=service.auth(mine))
    other = await service.client.get(f"/v1/automations/{their_automation}", headers=service.auth(mine))
    other_run = await service.client.post(f"/v1/automations/{their_automation}/run", headers=service.auth(mine))
    other_pause = await service.client.post(f"/v1/automations/{their_automation}/pause",
                                            headers=service.auth(mine))
    other_runs = await service.client.get(f"/v1/automations/{their_automation}/executions",
                                          headers=service.auth(mine))

    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()["items"]] == [my_automation]
    assert own.status_code == 200
    assert own.json()["kind"] == "scheduled"
    assert [e["outcome"] for e in own.json()["recent_executions"]] == ["success"]
    for refused in (other, other_run, other_pause, other_runs):
        assert refused.status_code == 404
        assert refused.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"cron": "0 9 * * FUNDAY"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),  # valid cron, but it never fires
        ({"timezone": "Europe/Atlantis"}, "timezone"),
    ],
)
async def test_a_schedule_that_cannot_fire_is_refused(
    service: RunningService, change: dict[str, str], says: str
) -> None:
    body = {"name": "Weekly", "kind": "scheduled", "cron": "0 9 * * SUN", "timezone": "Europe/Paris",
            "action": START_PRICING, **change}
    response = await service.client.post("/v1/automations", json=body, headers=service.auth(new_org()))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    # The field at fault is named, and nothing in the problem is a server error.
    assert response.json()["code"] == "validation-failed"
    assert [e["loc"][-1] for e in response.json()["errors"]] == [says]


async def test_run_now_requests_the_workflow_run_and_records_the_execution(service: RunningService) -> None:
    org = new_org()
    auth = service.auth(org)
    created = await service.client.post("/v1/automations", headers=auth, json={
        "name": "Weekly price optimisation", "kind": "scheduled", "cron": "0 9 * * SUN",
        "timezone": "Europe/Paris", "action": START_PRICING,
    })
    assert created.status_code == 201, created.text
    automation = created.json()
    next_fire = datetime.fromisoformat(automation["next_fire_at"]).astimezone(ZoneInfo("Europe/Paris"))
    assert (next_fire.weekday(), next_fire.hour, next_fire.minute) == (6, 9, 0)

    run = await service.client.post(f"/v1/automations/{automation['id']}/run", headers=auth)
    assert run.status_code == 202, run.text
    execution = run.json()

    requested = await service.announced.one("stayops.workflow.run.requested", org, request_id=execution["id"])
    assert requested.data["workflow_key"] == "dynamic-pricing"
    assert requested.data["parameters"] == START_PRICING["parameters"]
    assert requested.data["requested_by"] == automation["id"]
    triggered = await service.announced.one("stayops.automation.triggered", org, execution_id=execution["id"])
    assert requested.correlationid == triggered.correlationid == execution["id"]
    # Asking for the run is not succeeding: the execution waits for the run to end.
    assert (execution["outcome"], execution["action_outcomes"][0]["outcome"]) == (None, "requested")

    await service.publish("stayops.workflow.run.started", WorkflowRunStarted(
        run_id="run-now-1", org_id=org, workflow_key="dynamic-pricing", workflow_version=1,
        request_id=execution["id"]), key="run-now-1")
    await service.publish("stayops.workflow.run.completed", WorkflowRunCompleted(
        run_id="run-now-1", org_id=org, workflow_key="dynamic-pricing", workflow_version=1), key="run-now-1")
    executed = await service.announced.one("stayops.automation.executed", org, execution_id=execution["id"])
    assert executed.data["outcome"] == "success"

    executions = await service.client.get(f"/v1/automations/{automation['id']}/executions", headers=auth)
    detail = await service.client.get(f"/v1/automations/{automation['id']}", headers=auth)
    [listed] = executions.json()["items"]
    assert (listed["id"], listed["trigger"], listed["outcome"], listed["error"]) == (
        execution["id"], "manual", "success", None)
    assert [(o["outcome"], o["run_id"]) for o in listed["action_outcomes"]] == [("completed", "run-now-1")]
    assert listed["scheduled_for"] is not None and listed["duration_ms"] >= 0
    stats = detail.json()["stats"]
    assert (stats["runs"], stats["success_rate"], stats["last_run"]["id"]) == (1, 1.0, execution["id"])


async def test_a_paused_automation_has_no_next_fire_until_resumed(service: RunningService) -> None:
    auth = service.auth(new_org())
    created = (await service.client.post("/v1/automations", headers=auth, json={
        "name": "Daily", "kind": "scheduled", "cron": "0 6 * * *", "timezone": "UTC", "action": START_PRICING,
    })).json()

    paused = await service.client.post(f"/v1/automations/{created['id']}/pause", headers=auth)
    resumed = await service.client.post(f"/v1/automations/{created['id']}/resume", headers=auth)

    assert (paused.json()["is_active"], paused.json()["next_fire_at"]) == (False, None)
    assert resumed.json()["is_active"] is True
    assert datetime.fromisoformat(resumed.json()["next_fire_at"]).hour == 6


def automated(org: str, task_id: str, data: dict[str, Any], *, assigned_to: str = "automation",
              created_by: str = "workflow-service", workflow_run_id: str | None = "run-1") -> TaskAssigned:
    """An automated task as task-service announces it; by default one a workflow run asked for."""
    return TaskAssigned(
        task_id=task_id, org_id=org, task_type=TaskType.AUTOMATED, title="automated work", data=data,
        workflow_run_id=workflow_run_id, workflow_step="sync", assigned_to=assigned_to, created_by=created_by,
        # The schema pairs assigned_to with an assignee type; automation is a system user.
        rule="task type automated -> automation",
    )


async def test_request_sync_asks_the_sync_service_and_finishes_once_on_its_answer(
    service: RunningService,
) -> None:
    org = new_org()
    task_id, later_task_id = f"task-{uuid.uuid4().hex[:8]}", f"task-{uuid.uuid4().hex[:8]}"
    for task in (task_id, later_task_id):
        await service.publish("stayops.task.assigned", automated(org, task, {
            "action": "request_sync", "platform": "airbnb", "listing_ids": ["l-1", "l-2"]}), key=org)

    requested = await service.announced.one("stayops.sync.requested", org, request_id=task_id)
    assert (requested.data["platform"], requested.data["listing_ids"]) == ("airbnb", ["l-1", "l-2"])
    await service.announced.one("stayops.sync.requested", org, request_id=later_task_id)

    def completed(request_id: str) -> SyncCompleted:
        return SyncCompleted(request_id=request_id, org_id=org, listing_ids=["l-1", "l-2"],
                             counts=SyncCounts(listings=2, reservations=5), completed_at=NOW)

    # One key: one partition, so the redelivered answer is handled before the later one.
    await service.publish("airbnb.sync.completed", completed(task_id), key=org)
    await service.publish("airbnb.sync.completed", completed(task_id), key=org)  # redelivered
    await service.publish("airbnb.sync.completed", completed(later_task_id), key=org)

    await service.announced.one("stayops.automation.action.finished", org, task_id=later_task_id)
    [finished] = service.announced.matching("stayops.automation.action.finished", org, task_id=task_id)
    assert (finished.data["action"], finished.data["outcome"]) == ("request_sync", "success")
    assert finished.data["result"]["counts"]["reservations"] == 5
    assert (finished.data["workflow_run_id"], finished.data["workflow_step"]) == ("run-1", "sync")


async def test_publish_prices_fails_naming_the_listing_the_platform_refused(service: RunningService) -> None:
    org, task_id = new_org(), f"task-{uuid.uuid4().hex[:8]}"
    prices = [{"listing_id": listing, "date": "2025-04-01", "price": "120.00", "currency": "EUR",
               "previous_price": "110.00"} for listing in ("l-1", "l-2")]
    await service.publish("stayops.task.assigned", automated(org, task_id, {
        "action": "publish_prices", "platform": "airbnb", "prices": prices, "approved_by": "u-owner"}),
        key=task_id)

    approved = await service.announced.one("stayops.pricing.approved", org, request_id=task_id)
    assert (approved.data["listing_ids"], approved.data["approved_by"]) == (["l-1", "l-2"], "u-owner")

    await service.publish("airbnb.price.updated", PriceUpdated(
        request_id=task_id, listing_id="l-1", org_id=org, applied_at=NOW,
        prices=[NightlyPrice(date=NOW.date(), price=Decimal("120.00"), currency="EUR")]), key=task_id)
    await service.publish("airbnb.price.update_failed", PriceUpdateFailed(
        request_id=task_id, listing_id="l-2", org_id=org, reason="listing is archived"), key=task_id)

    finished = await service.announced.one("stayops.automation.action.finished", org, task_id=task_id)
    assert (finished.data["action"], finished.data["outcome"]) == ("publish_prices", "failure")
    assert "l-2: listing is archived" in finished.data["error"]
    assert finished.data["result"] == {"applied": ["l-1"], "failed": {"l-2": "listing is archived"}}


async def test_notify_leaves_a_notification_for_its_user_only(service: RunningService) -> None:
    org, task_id = new_org(), f"task-{uuid.uuid4().hex[:8]}"
    await service.publish("stayops.task.assigned", automated(org, task_id, {
        "action": "notify", "user_id": "u-owner", "subject": "Prices applied", "body": "2 listings"}),
        key=task_id)

    finished = await service.announced.one("stayops.automation.action.finished", org, task_id=task_id)
    mine = await service.client.get("/v1/notifications", headers=service.auth(org, "u-owner"))
    others = await service.client.get("/v1/notifications", headers=service.auth(org, "u-other"))

    assert finished.data["outcome"] == "success"
    assert [(n["subject"], n["task_id"]) for n in mine.json()["items"]] == [("Prices applied", task_id)]
    assert others.json()["items"] == []


async def test_noop_succeeds_at_once_and_echoes_its_data(service: RunningService) -> None:
    org, task_id = new_org(), f"task-{uuid.uuid4().hex[:8]}"
    await service.publish("stayops.task.assigned", automated(org, task_id, {"action": "noop", "echo": 3}),
                          key=task_id)

    finished = await service.announced.one("stayops.automation.action.finished", org, task_id=task_id)

    assert (finished.data["action"], finished.data["outcome"]) == ("noop", "success")
    assert finished.data["result"] == {"noop": True, "echo": 3}


async def announced_in_outbox(service: RunningService, org: str, type_: str) -> list[dict[str, Any]]:
    """What automation-service wrote to announce (its outbox), sent yet or not."""
    return await announced(service.runtime.engine, org, type_)


NIGHT = {"listing_id": "l-1", "date": "2025-04-01", "currency": "EUR", "previous_price": "100.00"}


@pytest.mark.parametrize(
    ("task", "says"),
    [
        ({"created_by": "owner-1", "workflow_run_id": None},
         "done only for a task a workflow run requested; task {task} was created by owner-1"),
        ({"created_by": "workflow-service", "workflow_run_id": None}, "outside any workflow run"),
        ({"data": {"approved_by": None}}, "approved_by"),
    ],
    ids=["member-task", "no-run", "no-approver"],
)
async def test_publish_prices_is_refused_for_a_task_no_workflow_approved(
    service: RunningService, task: dict[str, Any], says: str
) -> None:
    org, task_id = new_org(), f"task-{uuid.uuid4().hex[:8]}"
    data = {"action": "publish_prices", "platform": "airbnb", "approved_by": "owner",
            "prices": [{**NIGHT, "price": "105.00"}], **task.get("data", {})}
    data = {k: v for k, v in data.items() if v is not None}
    fields = {k: v for k, v in task.items() if k != "data"}
    await service.publish("stayops.task.assigned", automated(org, task_id, data, **fields), key=task_id)

    finished = await service.announced.one("stayops.automation.action.finished", org, task_id=task_id)
    assert finished.data["outcome"] == "failure"
    assert says.format(task=task_id) in finished.data["error"]
    assert await announced_in_outbox(service, org, "stayops.pricing.approved") == []


async def test_publish_prices_checks_every_night_against_the_orgs_guardrails(service: RunningService) -> None:
    org, refused_id, passed_id = new_org(), f"task-{uuid.uuid4().hex[:8]}", f"task-{uuid.uuid4().hex[:8]}"
    await service.publish("org.policy.updated", OrgPolicyUpdated(
        org_id=org, updated_at=NOW, pricing=PriceGuardrails(ceiling=Decimal("150.00"), max_change_pct=40),
        listings={"l-2": PriceGuardrails(currency="USD")}), key=org)

    async def policy_stored() -> bool:
        async with service.runtime.engine.connect() as conn:
            return (await policy_of(conn, org)).pricing.ceiling is not None

    await eventually(policy_stored, what="the org's policy in automation-service")
    nights = [{**NIGHT, "price": "0.00"}, {**NIGHT, "date": "2025-04-02", "price": "120.00"},
              {**NIGHT, "date": "2025-04-03", "price": "155.00", "previous_price": "140.00"},
              {**NIGHT, "listing_id": "l-2", "price": "120.00"}]
    await service.publish("stayops.task.assigned", automated(org, refused_id, {
        "action": "publish_prices", "platform": "airbnb", "approved_by": "u-owner", "prices": nights}),
        key=refused_id)

    finished = await service.announced.one("stayops.automation.action.finished", org, task_id=refused_id)
    assert finished.data["outcome"] == "failure"
    assert [(r["listing_id"], r["date"], r["price"]) for r in finished.data["result"]["refused"]] == [
        ("l-1", "2025-04-01", "0.00"), ("l-1", "2025-04-03", "155.00"), ("l-2", "2025-04-01", "120.00")]
    for says in ("price 0.00 is not above zero", "price 155.00 is above the org's ceiling of 150.00",
                 "the listing is priced in USD, not EUR"):
        assert says in finished.data["error"], says
    assert await announced_in_outbox(service, org, "stayops.pricing.approved") == []

    await service.publish("stayops.task.assigned", automated(org, passed_id, {
        "action": "publish_prices", "platform": "airbnb", "approved_by": "u-owner",
        "prices": [nights[1], {**nights[3], "currency": "USD"}]}), key=passed_id)
    approved = await service.announced.one("stayops.pricing.approved", org, request_id=passed_id)
    assert [(p["listing_id"], p["price"], p["currency"]) for p in approved.data["prices"]] == [
        ("l-1", "120.00", "EUR"), ("l-2", "120.00", "USD")]


async def test_notify_a_role_reaches_every_member_of_it(service: RunningService) -> None:
    org, task_id = new_org(), f"task-{uuid.uuid4().hex[:8]}"
    await service.publish("stayops.task.assigned", automated(org, task_id, {
        "action": "notify", "user_id": "", "role_id": "owner", "subject": "Weekly pricing: approved"}),
        key=task_id)

    finished = await service.announced.one("stayops.automation.action.finished", org, task_id=task_id)
    assert finished.data["outcome"] == "success", finished.data
    for user in ("u-owner", "u-co-owner"):
        listed = await service.client.get("/v1/notifications", headers=service.auth(org, user, "owner"))
        assert [(n["subject"], n["role_id"]) for n in listed.json()["items"]] == [
            ("Weekly pricing: approved", "owner")], user
    other = await service.client.get("/v1/notifications", headers=service.auth(org, "u-rm", "revenue-manager"))
    assert other.json()["items"] == []

    nobody = f"task-{uuid.uuid4().hex[:8]}"
    await service.publish("stayops.task.assigned", automated(org, nobody, {
        "action": "notify", "subject": "to nobody"}), key=nobody)
    failed = await service.announced.one("stayops.automation.action.finished", org, task_id=nobody)
    assert "a notification names a user_id, a role_id or both" in failed.data["error"]


async def test_an_unknown_action_fails_the_task_with_the_reason(service: RunningService) -> None:
    org, task_id = new_org(), f"task-{uuid.uuid4().hex[:8]}"
    await service.publish("stayops.task.assigned", automated(org, task_id, {"action": "launch_rocket"}),
                          key=task_id)

    finished = await service.announced.one("stayops.automation.action.finished", org, task_id=task_id)
    assert finished.data["outcome"] == "failure"
    assert "unknown action 'launch_rocket'" in finished.data["error"]


async def test_two_schedulers_fire_a_missed_schedule_exactly_once_for_its_latest_time(
    service: RunningService,
) -> None:
    second = create_app(settings=service.settings)
    org, automation_id = new_org(), str(uuid.uuid4())
    async with second.router.lifespan_context(second):
        async with service.runtime.uow.begin() as uow:
            now = await store.database_now(uow.conn)
            # Due four weeks ago: the service was "down" for every Sunday since.
            await store.insert_automation(uow.conn, Automation(
                id=automation_id, org_id=org, name="Weekly price optimisation",
                kind=AutomationType.SCHEDULED, cron="0 9 * * SUN", timezone="Europe/Paris",
                action=START_PRICING, is_active=True, created_by="u-owner", created_at=now,
                updated_at=now, next_fire_at=now - timedelta(days=29),
            ))
            await store.wake_schedulers(uow.conn)  # both schedulers race for it

        async def advanced() -> datetime | None:
            async with service.runtime.engine.connect() as conn:
                found = await store.get_automation(conn, org, automation_id)
            return found.next_fire_at if found and found.next_fire_at and found.next_fire_at > now else None

        next_fire_at = await eventually(advanced, timeout=20, what="the schedule to move on")
        await service.announced.one("stayops.workflow.run.requested", org, requested_by=automation_id)

    async with service.runtime.engine.connect() as conn:
        executions = await store.recent_executions(conn, org, automation_id)
        count = (await conn.execute(sa.select(sa.func.count()).select_from(store.executions).where(
            store.executions.c.automation_id == automation_id))).scalar_one()
    [execution] = executions
    assert count == 1
    assert len(service.announced.matching("stayops.workflow.run.requested", org)) == 1
    # It asked for its run once and waits for it to end before it succeeds or fails.
    assert execution.trigger.value == "schedule" and execution.outcome is None
    assert execution.skipped_runs in (3, 4)  # 4 or 5 Sundays in 29 days, all but the latest skipped
    assert execution.scheduled_for is not None
    fired_local = execution.scheduled_for.astimezone(ZoneInfo("Europe/Paris"))
    assert (fired_local.weekday(), fired_local.hour) == (6, 9)
    assert now - timedelta(days=7) < execution.scheduled_for <= now
    next_local = next_fire_at.astimezone(ZoneInfo("Europe/Paris"))
    assert (next_local.weekday(), next_local.hour) == (6, 9)
    assert next_fire_at <= now + timedelta(days=7)


async def test_a_cancelled_tasks_pending_action_is_dropped_and_its_late_answer_ignored(
    service: RunningService,
) -> None:
    org, task_id, other_id = new_org(), f"task-{uuid.uuid4().hex[:8]}", f"task-{uuid.uuid4().hex[:8]}"
    for task in (task_id, other_id):
        await service.publish("stayops.task.assigned", automated(org, task, {
            "action": "request_sync", "platform": "airbnb", "listing_ids": ["l-1"]}), key=org)
    await service.announced.one("stayops.sync.requested", org, request_id=task_id)

    # The run was cancelled: task-service withdrew the task; then the sync answers anyway.
    await service.publish("stayops.task.cancelled", TaskCancelled(
        task_id=task_id, org_id=org, workflow_run_id="run-1", workflow_step="sync", reason="the run was cancelled",
        cancelled_by="u-owner"), key=org)
    for task in (task_id, other_id):
        await service.publish("airbnb.sync.completed", SyncCompleted(
            request_id=task, org_id=org, listing_ids=["l-1"], counts=SyncCounts(listings=1, reservations=0),
            completed_at=NOW), key=org)

    await service.announced.one("stayops.automation.action.finished", org, task_id=other_id)
    assert service.announced.matching("stayops.automation.action.finished", org, task_id=task_id) == []
