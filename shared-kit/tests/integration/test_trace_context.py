"""W3C trace context through the outbox: `announce` stores the current span's
traceparent with the event, the relay sends it as `ce_traceparent`, and the
consumer makes it the parent of the handler's span: one trace from the request to
the handler, on real PostgreSQL and Apache Kafka."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from opentelemetry.trace import SpanKind

from stayops_kit import tracing
from stayops_kit.db import outbox
from stayops_kit.testing import (
    PROBE_EVENT,
    ProbeDb,
    effects_of,
    eventually,
    probe_payload,
    running_consumer,
    running_relay,
)
from stayops_schemas.binding import from_kafka
from stayops_schemas.catalog import event_type

pytestmark = pytest.mark.stack


def hex_id(value: int, width: int) -> str:
    return format(value, f"0{width}x")


async def test_traceparent_goes_from_the_announcing_span_to_the_handlers_span(spans: Any, probe: ProbeDb) -> None:
    with tracing.span("POST /v1/things", service="probe-api", kind=SpanKind.SERVER) as request:
        async with probe.uow.begin() as uow:
            envelope = await uow.announce(PROBE_EVENT, probe_payload(probe.org_id, "k1", 1),
                                          org_id=probe.org_id, key="k1")
    trace_id = hex_id(request.get_span_context().trace_id, 32)
    assert envelope.traceparent is not None and envelope.traceparent.split("-")[1] == trace_id

    async with probe.engine.connect() as conn:
        stored = (await conn.execute(sa.select(outbox.c.traceparent)
                                     .where(outbox.c.event_id == envelope.id))).scalar_one()
    assert stored == envelope.traceparent

    async with running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=0.2), \
            running_consumer(probe.engine, probe.bootstrap, probe.group):
        async def applied() -> Any:
            return await effects_of(probe.engine, probe.org_id) or None
        await eventually(applied, timeout=60)

    # On the wire: the CloudEvents distributed-tracing extension in binary mode.
    reader = AIOKafkaConsumer(event_type(PROBE_EVENT).topic, bootstrap_servers=probe.bootstrap,
                              auto_offset_reset="earliest", enable_auto_commit=False)
    await reader.start()
    try:
        headers: dict[str, bytes] = {}
        while not headers:
            batch = await reader.getmany(timeout_ms=2000)
            assert batch, "the event is not on its topic"
            for record in (r for part in batch.values() for r in part):
                # Other tests leave records of their own here, some not CloudEvents at all.
                if dict(record.headers).get("ce_id") == envelope.id.encode():
                    headers = dict(record.headers)
                    assert from_kafka(record.key, record.value, record.headers).traceparent \
                        == envelope.traceparent
    finally:
        await reader.stop()
    assert headers["ce_traceparent"].decode() == envelope.traceparent

    finished = spans.get_finished_spans()
    by_name = {s.name: s for s in finished if hex_id(s.context.trace_id, 32) == trace_id}
    announce = by_name[f"announce {PROBE_EVENT}"]
    handle = by_name[f"handle {PROBE_EVENT}"]
    publish = by_name[f"publish {event_type(PROBE_EVENT).topic}"]
    assert announce.parent.span_id == request.get_span_context().span_id
    assert envelope.traceparent.split("-")[2] == hex_id(announce.context.span_id, 16)
    assert handle.parent.span_id == announce.context.span_id, "the handler continues the announcing span"
    assert publish.parent.span_id == announce.context.span_id
    assert handle.kind is SpanKind.CONSUMER and handle.attributes["stayops.event_id"] == envelope.id
    assert handle.attributes[tracing.SERVICE_ATTRIBUTE] == probe.group
