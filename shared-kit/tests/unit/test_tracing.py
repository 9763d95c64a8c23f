"""Tracing is off unless configured: no span, no traceparent, nothing stored; once a
provider is installed, a traceparent round-trips into a child span's context."""

from __future__ import annotations

import subprocess
import sys

from opentelemetry import trace

from stayops_kit import tracing


def test_without_an_otlp_endpoint_nothing_is_configured() -> None:
    assert tracing.configure_tracing("task-service", environ={}) is False


def test_tracing_off_records_nothing_and_gives_no_traceparent() -> None:
    # A process of its own: another test of this session may have installed a provider.
    code = (
        "from stayops_kit import tracing\n"
        "with tracing.span('x', service='s') as s:\n"
        "    assert not s.get_span_context().is_valid\n"
        "    assert tracing.traceparent() is None\n"
        "assert not tracing.enabled()\n"
        "assert tracing.context_of(None) is None\n"
        "print('off')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "off"


def test_a_traceparent_becomes_the_parent_of_the_next_span() -> None:
    spans = tracing.record_in_memory()
    with tracing.span("request", service="workflow-service") as request:
        carried = tracing.traceparent()
    assert carried is not None
    trace_id = format(request.get_span_context().trace_id, "032x")
    assert carried.split("-")[1] == trace_id
    with tracing.span("handle", service="task-service", parent=carried, kind=trace.SpanKind.CONSUMER) as handled:
        pass
    assert handled.get_span_context().trace_id == request.get_span_context().trace_id
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert finished["handle"].parent.span_id == request.get_span_context().span_id
    assert finished["handle"].attributes[tracing.SERVICE_ATTRIBUTE] == "task-service"
    assert tracing.context_of("00-garbage") is None
    spans.clear()
