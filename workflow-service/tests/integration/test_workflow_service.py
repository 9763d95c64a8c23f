"""workflow-service through its public entries, on real PostgreSQL and Apache Kafka:
authentication, org isolation of definitions and runs, and task outcomes landing in
the log of the run they belong to — and only there."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from stayops_kit.runtime import ServiceRuntime
from stayops_kit.settings import ServiceSettings
from stayops_kit.testing import eventually
from stayops_schemas.binding import to_kafka
from stayops_schemas.catalog import event_type
from stayops_schemas.events.base import Payload
from stayops_schemas.events.tasks import TaskCompleted, TaskFailed, TaskType
from stayops_schemas.events.workflows import RunStatus
from workflow_service import store
from workflow_service.app import NAME, create_app
from workflow_service.domain import WorkflowDefinition, WorkflowRun

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
    database_url = await stack.create_database(f"workflow_{uuid.uuid4().hex[:10]}")
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


async def seed_definition(service: RunningService, org: str, key: str, version: int) -> None:
    async with service.runtime.uow.begin() as uow:
        await store.insert_definition(uow.conn, WorkflowDefinition(
            org_id=org, key=key, version=version, name=f"{key} v{version}",
            document={"steps": [{"id": "sync"}]}, created_at=NOW, created_by="u-owner",
        ))


async def seed_run(service: RunningService, org: str, key: str) -> str:
    run_id = str(uuid.uuid4())
    async with service.runtime.uow.begin() as uow:
        await store.insert_run(uow.conn, WorkflowRun(
            id=run_id, org_id=org, workflow_key=key, workflow_version=1, status=RunStatus.RUNNING,
            started_at=NOW, updated_at=NOW, current_step="analyse", parameters={"threshold": 0.1},
        ))
    return run_id


async def test_routes_need_a_token(service: RunningService) -> None:
    response = await service.client.get("/v1/workflows")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_workflows_lists_the_latest_version_of_each_of_the_callers_workflows(
    service: RunningService,
) -> None:
    mine, theirs = new_org(), new_org()
    await seed_definition(service, mine, "dynamic-pricing", 1)
    await seed_definition(service, mine, "dynamic-pricing", 2)
    await seed_definition(service, mine, "turnover-cleaning", 1)
    await seed_definition(service, theirs, "secret-flow", 1)

    response = await service.client.get("/v1/workflows", headers=service.auth(mine))

    assert response.status_code == 200
    listed = {(w["key"], w["version"]) for w in response.json()["items"]}
    assert listed == {("dynamic-pricing", 2), ("turnover-cleaning", 1)}


async def test_a_run_of_another_org_is_not_found(service: RunningService) -> None:
    mine, theirs = new_org(), new_org()
    for org in (mine, theirs):
        await seed_definition(service, org, "dynamic-pricing", 1)
    my_run = await seed_run(service, mine, "dynamic-pricing")
    their_run = await seed_run(service, theirs, "dynamic-pricing")

    own = await service.client.get(f"/v1/runs/{my_run}", headers=service.auth(mine))
    other = await service.client.get(f"/v1/runs/{their_run}", headers=service.auth(mine))
    unknown = await service.client.get(f"/v1/runs/{uuid.uuid4()}", headers=service.auth(mine))

    assert own.status_code == 200
    assert own.json()["status"] == "running"
    assert own.json()["log"] == []
    for response in (other, unknown):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_task_outcomes_are_logged_on_their_run_and_never_across_orgs(
    service: RunningService,
) -> None:
    mine, theirs = new_org(), new_org()
    for org in (mine, theirs):
        await seed_definition(service, org, "dynamic-pricing", 1)
    my_run = await seed_run(service, mine, "dynamic-pricing")
    their_run = await seed_run(service, theirs, "dynamic-pricing")
    key = f"task-{uuid.uuid4().hex[:8]}"  # one key: one partition, so the events stay in order

    # My org's task names the other org's run: it must not reach that run's log.
    await service.publish("stayops.task.failed", TaskFailed(
        task_id=key, org_id=mine, workflow_run_id=their_run, workflow_step="sync",
        reason="listing unreachable",
    ), key=key)
    await service.publish("stayops.task.completed", TaskCompleted(
        task_id=key, org_id=mine, workflow_run_id=my_run, workflow_step="analyse",
        task_type=TaskType.ANALYSIS, completed_by="u-agent-rm", result={"listings": 2},
    ), key=key)

    async def my_log() -> list[dict[str, str]]:
        response = await service.client.get(f"/v1/runs/{my_run}", headers=service.auth(mine))
        entries: list[dict[str, str]] = response.json()["log"]
        return entries

    entries = await eventually(my_log, timeout=20, what="the completion in the run log")
    assert [(e["actor"], e["message"]) for e in entries] == [
        ("u-agent-rm", f"task {key} (step analyse) completed"),
    ]
    theirs_now = await service.client.get(f"/v1/runs/{their_run}", headers=service.auth(theirs))
    assert theirs_now.json()["log"] == []
