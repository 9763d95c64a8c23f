"""CloudEvents binary content mode on Kafka, built on the `cloudevents` SDK.

Attributes travel in `ce_*` headers, `content-type` is `application/json`, the
record value is the event's data and the record key is the `partitionkey`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from stayops_schemas.envelope import CONTENT_TYPE, Envelope
from stayops_schemas.errors import MalformedEvent

_FORMAT = JSONFormat()
_REQUIRED_EXTENSIONS = ("orgid",)


@dataclass(frozen=True)
class KafkaRecord:
    """What a Kafka client needs to send one event: key, value and headers."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def to_kafka(envelope: Envelope) -> KafkaRecord:
    """Encode an envelope in binary content mode."""
    attributes: dict[str, Any] = {
        "id": envelope.id,
        "type": envelope.type,
        "source": envelope.source,
        "specversion": "1.0",
        "time": envelope.time.astimezone(UTC),
        "datacontenttype": CONTENT_TYPE,
        **envelope.extensions(),
    }
    if envelope.dataschema:
        attributes["dataschema"] = envelope.dataschema
    if envelope.subject:
        attributes["subject"] = envelope.subject
    message = ce_kafka.to_binary(CloudEvent(attributes, envelope.data), _FORMAT)
    key = message.key.encode() if isinstance(message.key, str) else (message.key or b"")
    return KafkaRecord(key=key, value=message.value, headers=list(message.headers.items()))


def from_kafka(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | tuple[Any, ...]
) -> Envelope:
    """Decode a binary-mode record; anything that is not a valid StayOps CloudEvent
    raises `MalformedEvent` with the reason, so the consumer can dead-letter it."""
    header_map: dict[str, bytes] = {}
    for name, raw in headers:
        header_map[name] = raw if isinstance(raw, bytes) else str(raw).encode()
    if "ce_specversion" not in header_map:
        raise MalformedEvent("not a binary-mode CloudEvent: the ce_specversion header is missing")
    try:
        message = ce_kafka.KafkaMessage(headers=header_map, key=key, value=value or b"")
        event = ce_kafka.from_binary(message, _FORMAT, CloudEvent)
    except (BaseCloudEventException, ValueError, UnicodeDecodeError) as exc:
        raise MalformedEvent(f"cannot decode the CloudEvent: {exc}") from exc
    data = event.get_data()
    if not isinstance(data, dict):
        raise MalformedEvent("the event data must be a JSON object")
    attributes = event.get_attributes()
    for name in _REQUIRED_EXTENSIONS:
        if not attributes.get(name):
            raise MalformedEvent(f"the '{name}' extension attribute is missing")
    partitionkey = attributes.get("partitionkey") or (key.decode() if key else "")
    try:
        # A time at the edge of the calendar (`0001-01-01T00:00:00+01:00`) parses,
        # then overflows when moved to UTC: the record's own fault, not the reader's.
        time = (event.get_time() or datetime.now(UTC)).astimezone(UTC)
    except OverflowError as exc:
        raise MalformedEvent(f"the event time {attributes.get('time')!r} is out of range: {exc}") from exc
    return Envelope(
        id=event.get_id(),
        type=event.get_type(),
        source=event.get_source(),
        orgid=str(attributes["orgid"]),
        partitionkey=str(partitionkey),
        data=data,
        time=time,
        correlationid=attributes.get("correlationid"),
        causationid=attributes.get("causationid"),
        dataschema=event.get_dataschema(),
        subject=event.get_subject(),
        traceparent=attributes.get("traceparent"),
    )
