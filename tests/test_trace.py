"""`stayops trace <run id>` on the real system: a weekly pricing run the owner
approves reads, across the four services' /v1/events, as one causal picture -
reservation sync, the AI's analysis task, the decision, the publish, the price
updated - with each event under its cause and the groups that applied it."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from stayops_infra.scenario import OrgHandle, PricingClient
from stayops_infra.services import SERVICES
from stayops_infra.system import LocalSystem
from stayops_infra.trace import Trace, TraceEvent, collect_trace, render_trace

pytestmark = pytest.mark.stack

BY_OWNER = 0.0  # every change reaches the owner, who decides


def first(trace: Trace, what: str, **match: Any) -> tuple[int, TraceEvent]:
    """The first event (in the trace's causal, depth-first order) of a type whose data matches."""
    for position, (_, event) in enumerate(trace.walk()):
        if event.type.endswith(what) and all((event.data or {}).get(k) == v for k, v in match.items()):
            return position, event
    raise AssertionError(f"no {what} {match} in the trace")


def ancestors(trace: Trace, event: TraceEvent) -> list[str]:
    by_id = {e.id: e for e in trace.events()}
    chain, cause = [], by_id.get(event.causationid or "")
    while cause is not None:
        chain.append(cause.type)
        cause = by_id.get(cause.causationid or "")
    return chain


async def test_the_trace_of_a_pricing_run_shows_it_from_sync_to_price_updated(
    system: LocalSystem, pricing: PricingClient, solo_org: dict[str, Any]
) -> None:
    org = OrgHandle.from_seed(solo_org)
    run_id = await pricing.start_run(org, threshold_pct=BY_OWNER, monitor_days=0)
    decision = await pricing.decision_task(org, run_id, timeout_s=180)
    await pricing.decide(org, decision["id"], "approved", "Go ahead")
    run = await pricing.wait_until(org, run_id, timeout_s=180)
    assert run["status"] == "completed"

    urls = {spec.name: system.url(spec.name) for spec in SERVICES}
    trace = await collect_trace(urls, org.headers, run_id)
    out = io.StringIO()
    render_trace(trace, Console(file=out, width=300, color_system=None))
    picture = out.getvalue()
    print(picture)

    assert trace.resolved_by == "correlation_id" and trace.correlation_ids == [run_id]
    assert {e.service for e in trace.events()} >= {"workflow-service", "task-service", "automation-service",
                                                   "agent-service", "sync-airbnb"}, picture
    sync, _ = first(trace, ".sync.completed")
    analysis, _ = first(trace, "task.created", task_type="analysis")
    result, _ = first(trace, "agent.result.produced")
    decided, _ = first(trace, "task.completed", task_type="decision")
    approved, _ = first(trace, "pricing.approved")
    updated, updated_event = first(trace, ".price.updated")
    assert sync < analysis < result < decided < approved < updated, picture

    assert "stayops.pricing.approved" in ancestors(trace, updated_event), picture
    assert not updated_event.published, "the platform's event is known from the inbox of who applied it"
    assert {a.group for a in updated_event.applied} >= {"agent-service", "automation-service"}, picture
    assert run_id in picture and "airbnb.price.updated" in picture
