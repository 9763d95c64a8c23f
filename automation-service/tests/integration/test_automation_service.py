"""automation-service through its public entries, on real PostgreSQL and Apache Kafka:
authentication, org isolation of automations, and `automated` tasks assigned over
Kafka landing in the action registry's queue — once, and only those."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from automation_service import store
from automation_service.app import NAME, create_app
from automation_service.domain import Automation, Execution, QueuedTask
from stayops_kit.runtime import ServiceRuntime
from stayops_kit.settings import ServiceSettings
from stayops_kit.testing import eventually
from stayops_schemas.binding import to_kafka
from stayops_schemas.catalog import event_type
from stayops_schemas.events.automations import AutomationType, ExecutionOutcome
from stayops_schemas.events.base import Payload
from stayops_schemas.events.tasks import TaskAssigned, TaskType

pytestmark = pytest.mark.stack

NOW = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class RunningService:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    producer: AIOKafkaProducer
    stack: Any

    def auth(self, org: str, user: str = "u-owner", role: str = "owner") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.stack.mint_token(org, user, role)}"}

    async def publish(self, type_: str, payload: Payload, *, key: str) -> None:
        entry = event_type(type_)
        envelope = entry.envelope(payload, id=str(uuid.uuid4()), source="/tests",
                                  partitionkey=key, time=self.runtime.clock.now())
        record = to_kafka(envelope)
        await self.producer.send_and_wait(entry.topic, value=record.value, key=record.key,
                                          headers=record.headers)


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[RunningService]:
    database_url = await stack.create_database(f"automation_{uuid.uuid4().hex[:10]}")
    settings = ServiceSettings(
        service_name=NAME,
        database_url=database_url,
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        jwt_public_key_file=stack.jwt_public_key_file,
        relay_poll_interval_s=0.2,
        log_json=False,
    )
    app = create_app(settings=settings)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
        ):
            yield RunningService(client, app.state.runtime, producer, stack)
    finally:
        await producer.stop()


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


async def seed_weekly_pricing(service: RunningService, org: str) -> str:
    automation_id = str(uuid.uuid4())
    async with service.runtime.uow.begin() as uow:
        await store.insert_automation(uow.conn, Automation(
            id=automation_id, org_id=org, name="Weekly price optimisation",
            kind=AutomationType.SCHEDULED, cron="0 9 * * SUN", timezone="Europe/Lisbon",
            action={"request_run": {"workflow_key": "dynamic-pricing"}}, is_active=True,
            created_by="u-owner", created_at=NOW, updated_at=NOW,
        ))
        await store.insert_execution(uow.conn, Execution(
            id=str(uuid.uuid4()), automation_id=automation_id, org_id=org, started_at=NOW,
            finished_at=NOW + timedelta(seconds=2), outcome=ExecutionOutcome.SUCCESS,
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

    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()["items"]] == [my_automation]
    assert own.status_code == 200
    assert own.json()["kind"] == "scheduled"
    assert [e["outcome"] for e in own.json()["recent_executions"]] == ["success"]
    assert other.status_code == 404
    assert other.headers["content-type"].startswith("application/problem+json")


def assignment(org: str, task_id: str, task_type: TaskType) -> TaskAssigned:
    return TaskAssigned(
        task_id=task_id, org_id=org, task_type=task_type, title=f"{task_type.value} work",
        data={"platform": "airbnb"}, workflow_run_id="run-1", workflow_step="sync",
        rule="task type automated -> automation-service",
    )


async def test_automated_tasks_assigned_are_queued_once_and_other_tasks_not_at_all(
    service: RunningService,
) -> None:
    org = new_org()
    key = f"task-{uuid.uuid4().hex[:8]}"  # one key: one partition, so the events stay in order
    manual_id, automated_id = f"{key}-manual", f"{key}-automated"
    await service.publish("stayops.task.assigned", assignment(org, manual_id, TaskType.MANUAL), key=key)
    await service.publish("stayops.task.assigned", assignment(org, automated_id, TaskType.AUTOMATED), key=key)
    # The same task assigned again (a reassignment, or a redelivery with a new id).
    await service.publish("stayops.task.assigned", assignment(org, automated_id, TaskType.AUTOMATED), key=key)
    marker_id = f"{key}-marker"
    await service.publish("stayops.task.assigned", assignment(org, marker_id, TaskType.AUTOMATED), key=key)

    async def queue() -> list[QueuedTask]:
        async with service.runtime.engine.connect() as conn:
            return await store.queued_tasks(conn, org)

    async def queue_has_marker() -> list[QueuedTask] | None:
        queued = await queue()
        return queued if marker_id in {t.task_id for t in queued} else None

    queued = await eventually(queue_has_marker, timeout=20, what="the assignments in the queue")
    assert queued is not None
    assert sorted(t.task_id for t in queued) == sorted([automated_id, marker_id])
    first = next(t for t in queued if t.task_id == automated_id)
    assert (first.title, first.data, first.workflow_run_id) == ("automated work", {"platform": "airbnb"}, "run-1")
