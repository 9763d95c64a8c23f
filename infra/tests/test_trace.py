"""`stayops trace`'s joining, on answers shaped like GET /v1/events: an id is
resolved as a correlation, else an event, else a subject; events are placed under
their cause across services; an event no service published comes from the inbox
records of those that applied it."""

from __future__ import annotations

import io
from typing import Any

import httpx
from rich.console import Console

from stayops_infra.trace import collect_trace, render_trace

RUN = "run-1"


def item(id_: str, type_: str, source: str, time: str, cause: str | None, key: str = "k") -> dict[str, Any]:
    return {"id": id_, "type": type_, "source": source, "time": f"2025-06-01T09:00:0{time}+00:00",
            "topic": "t", "subject": None, "partitionkey": key, "orgid": "org-1", "correlationid": RUN,
            "causationid": cause, "dataschema": None, "data": {}, "sent_at": None, "cursor": 1}


def applied(id_: str, type_: str, source: str, group: str, cause: str | None, attempts: int = 1) -> dict[str, Any]:
    return {"group": group, "event_id": id_, "source": source, "type": type_,
            "time": "2025-06-01T09:00:03+00:00", "correlationid": RUN, "causationid": cause,
            "handled_at": "2025-06-01T09:00:04+00:00", "attempts": attempts}


WORKFLOW = {"items": [item("e1", "stayops.workflow.run.started", "/workflow-service", "1", None),
                      item("e2", "stayops.sync.requested", "/workflow-service", "2", "e1")],
            "consumed": [applied("e3", "airbnb.sync.completed", "/sync-airbnb", "workflow-service", "e2")]}
TASKS = {"items": [item("e4", "stayops.task.created", "/task-service", "5", "e3", key="task-9")],
         "consumed": [applied("e3", "airbnb.sync.completed", "/sync-airbnb", "agent-service", "e2", attempts=3)]}
EMPTY = {"items": [], "consumed": []}


def answer(request: httpx.Request) -> httpx.Response:
    params = request.url.params
    body: dict[str, Any] = EMPTY
    if params.get("correlation_id") == RUN:
        body = WORKFLOW if request.url.host == "workflow" else TASKS
    elif params.get("subject") == "task-9" and request.url.host == "tasks":
        body = {"items": [TASKS["items"][0]], "consumed": []}
    return httpx.Response(200, json={**body, "next_after": None, "limit": 500})


async def trace_of(query: str) -> Any:
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        return await collect_trace({"workflow-service": "http://workflow", "task-service": "http://tasks"},
                                   {}, query, http)


async def test_a_correlation_becomes_one_tree_across_services() -> None:
    trace = await trace_of(RUN)

    assert trace.resolved_by == "correlation_id"
    assert [(depth, event.type) for depth, event in trace.walk()] == [
        (0, "stayops.workflow.run.started"), (1, "stayops.sync.requested"), (2, "airbnb.sync.completed"),
        (3, "stayops.task.created")]
    synced = trace.events()[2]
    assert not synced.published and synced.service == "sync-airbnb"
    assert [(a.group, a.attempts) for a in synced.applied] == [("agent-service", 3), ("workflow-service", 1)]

    out = io.StringIO()
    render_trace(trace, Console(file=out, width=200, color_system=None))
    lines = out.getvalue().splitlines()
    assert lines[3] == ("    09:00:03.000 sync-airbnb airbnb.sync.completed (from its consumers' inbox) "
                        "-> agent-service (3 tries), workflow-service")
    assert lines[4].startswith("      09:00:05.000 task-service stayops.task.created task-9 -> ")


async def test_a_task_id_is_found_as_a_subject_and_traced_by_its_correlation() -> None:
    trace = await trace_of("task-9")

    assert (trace.resolved_by, trace.correlation_ids) == ("subject", [RUN])
    assert len(trace.events()) == 4


async def test_an_unknown_id_finds_nothing() -> None:
    trace = await trace_of("nothing")

    assert trace.roots == []
    out = io.StringIO()
    render_trace(trace, Console(file=out, width=200, color_system=None))
    assert "No events found for nothing" in out.getvalue()
