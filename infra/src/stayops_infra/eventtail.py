"""Follow a topic and decode each record as a StayOps CloudEvent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from stayops_schemas.binding import from_kafka
from stayops_schemas.errors import MalformedEvent


def describe_record(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    """The fields a person reading the stream cares about; undecodable records say why."""
    key = record.key.decode(errors="replace") if record.key else None
    try:
        envelope = from_kafka(record.key, record.value, list(record.headers))
    except MalformedEvent as exc:
        return {"partition": record.partition, "offset": record.offset, "key": key, "malformed": str(exc)}
    return {
        "type": envelope.type,
        "id": envelope.id,
        "orgid": envelope.orgid,
        "correlationid": envelope.correlationid,
        "key": key,
        "data": envelope.data,
    }


async def tail_events(
    bootstrap: str,
    topic: str,
    from_beginning: bool,
    max_events: int | None,
    show: Callable[[dict[str, Any]], None],
) -> int:
    """Print events until `max_events` were shown (or forever); returns how many were."""
    # No group: a tail must not move any service's committed offsets.
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    shown = 0
    try:
        while max_events is None or shown < max_events:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    show(describe_record(record))
                    shown += 1
                    if max_events is not None and shown >= max_events:
                        return shown
    finally:
        await consumer.stop()
    return shown
