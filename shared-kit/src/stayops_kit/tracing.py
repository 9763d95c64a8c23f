"""OpenTelemetry tracing and W3C trace context across events.

A REST request, the events it announces and the handlers that apply them form one
trace: `announce` stores the current span's `traceparent` in the outbox with the
event (the CloudEvents distributed-tracing extension, `ce_traceparent` on Kafka),
and the consumer makes it the parent of the handler's span.

Spans are exported over OTLP (HTTP/protobuf) only when `OTEL_EXPORTER_OTLP_ENDPOINT`
is set (`configure_tracing`, called once per process by `serve`). Otherwise the
OpenTelemetry API's no-op tracer is in place: no span is recorded, `traceparent()`
is None, and nothing is stored or sent. A test installs its own provider (an
in-memory exporter) with `use_provider`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER_NAME = "stayops"
# Spans carry the service that made them: one process may run several (tests).
SERVICE_ATTRIBUTE = "stayops.service"


def configure_tracing(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Export this process's spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set;
    returns whether it did. The exporter reads the standard OTEL_* variables."""
    env = os.environ if environ is None else environ
    if not env.get(ENDPOINT_ENV):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use_provider(provider)
    log.info("tracing: spans exported over OTLP to %s", env[ENDPOINT_ENV])
    return True


# Set by `use_provider`: the hot paths (announce, handle, publish) test this flag, not
# the global provider (looking that up costs microseconds: it reads the environment).
_enabled = False


def use_provider(provider: Any) -> None:
    """Install a tracer provider for the process (once; OpenTelemetry refuses a second)."""
    global _enabled
    trace.set_tracer_provider(provider)
    _enabled = True


def tracer() -> trace.Tracer:
    return trace.get_tracer(_TRACER_NAME)


def enabled() -> bool:
    """Whether spans are recorded: a provider was installed with `use_provider`."""
    return _enabled


def traceparent() -> str | None:
    """The W3C `traceparent` of the current span, None when there is none (tracing off)."""
    if not enabled():
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_of(value: str | None) -> otel_context.Context | None:
    """The context whose parent is the span `value` (a traceparent) names; None for none."""
    if not value:
        return None
    found = _PROPAGATOR.extract({"traceparent": value})
    span = trace.get_current_span(found)
    return found if span.get_span_context().is_valid else None


# What `span` gives when tracing is off: one reusable no-op, so a hot path (a
# consumer applies each event in a span) builds nothing per call.
_NO_SPAN: AbstractContextManager[Span] = nullcontext(trace.INVALID_SPAN)


def span(name: str, *, service: str, kind: SpanKind = SpanKind.INTERNAL, parent: str | None = None,
         attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Span]:
    """A span of `service`, current for the block; `parent` a traceparent to continue
    (an event's) instead of the current span. A no-op when tracing is off."""
    if not enabled():
        return _NO_SPAN
    return tracer().start_as_current_span(
        name, context=context_of(parent), kind=kind,
        attributes={SERVICE_ATTRIBUTE: service, **(attributes or {})},
    )


_memory: Any = None


def record_in_memory() -> Any:
    """Record this process's spans in memory, for tests: installs (once per process)
    an SDK provider with an in-memory exporter and returns the exporter."""
    global _memory
    if _memory is None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        _memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_memory))
        use_provider(provider)
    return _memory
