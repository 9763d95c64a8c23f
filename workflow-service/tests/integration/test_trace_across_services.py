"""OpenTelemetry across services: a REST call to task-service that completes a task,
the stakeholder event it announces, and workflow-service's handler of that event
are one trace. Both services run in this process on the session's PostgreSQL and
Kafka (their real apps: migrations, relay, consumer), with an in-memory exporter;
the event travels over Kafka carrying `ce_traceparent`.

It sits with workflow-service's integration tests, which run before the end-to-end
suite starts the whole system: that system's workflow-service consumes in the same
consumer group, and would take the event half the time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from stayops_kit import tracing
from stayops_kit.testing import ServiceUnderTest, eventually, service_under_test
from task_service.app import create_app as create_task_service
from workflow_service.app import create_app as create_workflow_service

pytestmark = pytest.mark.stack


@pytest.fixture
async def services(stack: Any) -> AsyncIterator[tuple[ServiceUnderTest, ServiceUnderTest]]:
    async with service_under_test(create_task_service, "task-service", stack) as tasks, \
            service_under_test(create_workflow_service, "workflow-service", stack) as workflows:
        yield tasks, workflows


async def test_a_rest_call_its_event_and_another_services_handler_are_one_trace(
    spans: Any, services: tuple[ServiceUnderTest, ServiceUnderTest],
) -> None:
    tasks, _ = services
    org = str(uuid.uuid4())
    owner = tasks.auth(org, "owner-1", "owner")
    created = await tasks.client.post("/v1/tasks", headers=owner, json={
        "title": "Fix the lock", "task_type": "manual", "assigned_to": "owner-1"})
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    assert (await tasks.client.post(f"/v1/tasks/{task_id}/start", headers=owner)).status_code == 200

    with tracing.span("owner clicks complete", service="console", kind=SpanKind.CLIENT) as client:
        parent = {"traceparent": tracing.traceparent() or ""}
    done = await tasks.client.post(f"/v1/tasks/{task_id}/complete", json={"result": {"fixed": True}},
                                   headers={**owner, **parent})
    assert done.status_code == 200, done.text
    trace_id = client.get_span_context().trace_id

    def of_trace() -> list[Any]:
        return [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]

    async def handled() -> Any:
        return [s for s in of_trace() if s.name == "handle stayops.task.completed"
                and s.attributes[tracing.SERVICE_ATTRIBUTE] == "workflow-service"] or None

    [handle] = await eventually(handled, timeout=60)
    by_id = {s.context.span_id: s for s in of_trace()}
    announce = by_id[handle.parent.span_id]
    assert (announce.name, announce.attributes[tracing.SERVICE_ATTRIBUTE]) == (
        "announce stayops.task.completed", "task-service")
    ancestors = []
    current = announce
    while current.parent is not None and current.parent.span_id in by_id:
        current = by_id[current.parent.span_id]
        ancestors.append(current)
    # task-service's request span (FastAPI's), a child of the caller's span.
    [server] = [s for s in ancestors if s.kind is SpanKind.SERVER]
    assert server.attributes["http.route"] == "/v1/tasks/{task_id}/complete"
    assert server.attributes["http.response.status_code"] == 200
    assert server.parent.span_id == client.get_span_context().span_id
    assert ancestors[-1].context.span_id == client.get_span_context().span_id  # the root: the caller
    assert handle.kind is SpanKind.CONSUMER and handle.attributes["stayops.event_id"] == done_event(announce)
    publish = [s for s in of_trace() if s.name == "publish stayops.tasks"]
    assert publish and publish[0].attributes[tracing.SERVICE_ATTRIBUTE] == "task-service"


def done_event(announce: Any) -> str:
    event_id: str = announce.attributes["stayops.event_id"]
    return event_id
