"""The CloudEvent envelope every StayOps event travels in, independent of any transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class Envelope:
    """A CloudEvents 1.0 event with the StayOps extension attributes.

    `orgid` is the tenant and is on every event; `partitionkey` is the aggregate id
    and doubles as the Kafka record key, so one aggregate's events stay in order.
    """

    id: str
    type: str
    source: str
    orgid: str
    partitionkey: str
    data: dict[str, Any]
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    correlationid: str | None = None
    causationid: str | None = None
    dataschema: str | None = None
    subject: str | None = None
    traceparent: str | None = None

    def extensions(self) -> dict[str, str]:
        """The extension attributes that are set, by name."""
        values = {
            "orgid": self.orgid,
            "partitionkey": self.partitionkey,
            "correlationid": self.correlationid,
            "causationid": self.causationid,
            "traceparent": self.traceparent,
        }
        return {name: value for name, value in values.items() if value is not None}
