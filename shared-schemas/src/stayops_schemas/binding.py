"""CloudEvents binary content mode on Kafka.

Attributes travel in `ce_*` headers, `content-type` is `application/json`, the
record value is the event's data and the record key is the `partitionkey`.

Written out here rather than through the `cloudevents` SDK's Kafka binding: on the
relay's and the consumers' hot path the SDK's event object (its validation, regular
expressions and `dateutil` time parsing) cost more CPU per event than everything
else in decoding. The tests check records against the SDK both ways.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pydantic_core

from stayops_schemas.envelope import CONTENT_TYPE, SPECVERSION, Envelope
from stayops_schemas.errors import MalformedEvent

_CONTENT_TYPE = CONTENT_TYPE.encode()
_SPECVERSION = SPECVERSION.encode()
# The content types whose data is JSON (as the CloudEvents JSON format reads them).
_JSON_CONTENT_TYPE = re.compile(r"^(application|text)/([a-zA-Z]+\+)?json(;.*)*$")
_REQUIRED_ATTRIBUTES = ("id", "type", "source")


@dataclass(frozen=True)
class KafkaRecord:
    """What a Kafka client needs to send one event: key, value and headers."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def _time_header(time: datetime) -> bytes:
    text = time.astimezone(UTC).isoformat()
    return (text[:-6] + "Z").encode() if text.endswith("+00:00") else text.encode()


def binary_headers(
    *,
    id: str,
    type: str,
    source: str,
    time: datetime,
    orgid: str,
    partitionkey: str,
    correlationid: str | None = None,
    causationid: str | None = None,
    traceparent: str | None = None,
    dataschema: str | None = None,
    subject: str | None = None,
) -> list[tuple[str, bytes]]:
    """The headers of a binary-mode record: the attributes, then the extensions."""
    headers = [
        ("ce_id", id.encode()),
        ("ce_type", type.encode()),
        ("ce_source", source.encode()),
        ("ce_specversion", _SPECVERSION),
        ("ce_time", _time_header(time)),
        ("content-type", _CONTENT_TYPE),
        ("ce_orgid", orgid.encode()),
        ("ce_partitionkey", partitionkey.encode()),
    ]
    for name, value in (("ce_correlationid", correlationid), ("ce_causationid", causationid),
                        ("ce_traceparent", traceparent), ("ce_dataschema", dataschema),
                        ("ce_subject", subject)):
        if value is not None:
            headers.append((name, value.encode()))
    return headers


def to_kafka(envelope: Envelope, *, value: bytes | None = None) -> KafkaRecord:
    """Encode an envelope in binary content mode. `value`: its data already in JSON
    (the relay reads it so from the outbox), instead of encoding `envelope.data`."""
    headers = binary_headers(
        id=envelope.id, type=envelope.type, source=envelope.source, time=envelope.time,
        orgid=envelope.orgid, partitionkey=envelope.partitionkey,
        correlationid=envelope.correlationid, causationid=envelope.causationid,
        traceparent=envelope.traceparent, dataschema=envelope.dataschema, subject=envelope.subject,
    )
    if value is None:
        value = pydantic_core.to_json(envelope.data)
    return KafkaRecord(key=envelope.partitionkey.encode(), value=value, headers=headers)


def from_kafka(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | tuple[Any, ...]
) -> Envelope:
    """Decode a binary-mode record; anything that is not a valid StayOps CloudEvent
    raises `MalformedEvent` with the reason, so the consumer can dead-letter it."""
    attributes: dict[str, str] = {}
    content_type: str | None = None
    try:
        for name, raw in headers:
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            name = name.lower()
            if name.startswith("ce_"):
                attributes[name[3:]] = text
            elif name == "content-type":
                content_type = text
        partitionkey = key.decode() if key else attributes.get("partitionkey", "")
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"cannot decode the CloudEvent: a header or the key is not UTF-8: {exc}") from exc
    if "specversion" not in attributes:
        raise MalformedEvent("not a binary-mode CloudEvent: the ce_specversion header is missing")
    if attributes["specversion"] != SPECVERSION:
        raise MalformedEvent(f"cannot decode the CloudEvent: specversion {attributes['specversion']!r} "
                             f"is not {SPECVERSION!r}")
    for name in _REQUIRED_ATTRIBUTES:
        if not attributes.get(name):
            raise MalformedEvent(f"cannot decode the CloudEvent: the required attribute '{name}' is missing")
    for name in ("subject", "dataschema"):
        if name in attributes and not attributes[name]:
            raise MalformedEvent(f"cannot decode the CloudEvent: the attribute '{name}' is empty")
    if content_type is not None and not _JSON_CONTENT_TYPE.match(content_type):
        raise MalformedEvent(f"the event data must be JSON, not {content_type!r}")
    try:
        data = pydantic_core.from_json(value) if value else None
    except ValueError as exc:
        raise MalformedEvent(f"cannot decode the CloudEvent: the data is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedEvent("the event data must be a JSON object")
    if not attributes.get("orgid"):
        raise MalformedEvent("the 'orgid' extension attribute is missing")
    time = datetime.now(UTC)
    if "time" in attributes:
        try:
            time = datetime.fromisoformat(attributes["time"])
        except ValueError as exc:
            raise MalformedEvent(f"cannot decode the CloudEvent: the time {attributes['time']!r} "
                                 f"is not an RFC 3339 timestamp: {exc}") from exc
        if time.tzinfo is None:
            raise MalformedEvent(f"cannot decode the CloudEvent: the time {attributes['time']!r} has no offset")
        try:
            # A time at the edge of the calendar (`0001-01-01T00:00:00+01:00`) parses,
            # then overflows when moved to UTC: the record's own fault, not the reader's.
            time = time.astimezone(UTC)
        except OverflowError as exc:
            raise MalformedEvent(f"the event time {attributes['time']!r} is out of range: {exc}") from exc
    return Envelope(
        id=attributes["id"],
        type=attributes["type"],
        source=attributes["source"],
        orgid=attributes["orgid"],
        partitionkey=partitionkey,
        data=data,
        time=time,
        correlationid=attributes.get("correlationid"),
        causationid=attributes.get("causationid"),
        dataschema=attributes.get("dataschema"),
        subject=attributes.get("subject"),
        traceparent=attributes.get("traceparent"),
    )
