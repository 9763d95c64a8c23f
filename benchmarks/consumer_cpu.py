"""The inbox consumer's own Python per record, without Kafka or PostgreSQL: batches
of the messaging benchmark's 1 KB probe events through `InboxConsumer.consume_batch`
(decode, check, validate, mark, handle, deferred inserts) on a stand-in connection
that answers the inbox mark as a fresh database would and ignores the inserts. What
the driver and the broker client cost comes on top (see benchmarks/messaging.py).

Prints the least CPU time per record over several loops, which a shared machine's
load disturbs least.

    python benchmarks/consumer_cpu.py [--batch 500] [--loops 9]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from stayops_kit.consumer import InboxConsumer
from stayops_kit.metrics import Metrics
from stayops_kit.outbox import UnitOfWorkFactory
from stayops_kit.testing import PROBE_EVENT, probe_payload, probe_subscriptions
from stayops_schemas.binding import to_kafka
from stayops_schemas.catalog import event_type
from stayops_schemas.envelope import Envelope

PADDING = "x" * 640  # as benchmarks/messaging.py: the event's data is ~1 KB


class FreshInbox:
    """A connection on which every inbox mark is new and every other statement is a no-op."""

    async def execute(self, _statement: Any, params: Any = None) -> Any:
        if isinstance(params, dict) and "sources" in params:
            return [SimpleNamespace(source=source, event_id=event_id)
                    for source, event_id in zip(params["sources"], params["ids"], strict=True)]
        return None


class StandInEngine:
    @asynccontextmanager
    async def begin(self) -> AsyncIterator[FreshInbox]:
        yield FreshInbox()


def records(count: int) -> list[Any]:
    """Records as aiokafka hands them over, each a new event of one of 8 keys."""
    org = str(uuid.uuid4())
    out = []
    for seq in range(count):
        key = f"k{seq % 8}"
        envelope = Envelope(id=str(uuid.uuid4()), type=PROBE_EVENT, source="/bench", orgid=org, partitionkey=key,
                            data={}, time=datetime.now(UTC), correlationid=str(uuid.uuid4()),
                            dataschema=event_type(PROBE_EVENT).dataschema)
        data = probe_payload(org, key, seq, padding=PADDING).model_dump_json().encode()
        record = to_kafka(envelope, value=data)
        out.append(SimpleNamespace(key=record.key, value=record.value, headers=tuple(record.headers),
                                   topic="stayops.tasks", partition=seq % 6, offset=seq))
    return out


async def main(args: argparse.Namespace) -> None:
    consumer = InboxConsumer(
        group="bench", subscriptions=probe_subscriptions(), uow_factory=UnitOfWorkFactory(None, "/bench"),  # type: ignore[arg-type]
        producer=None, metrics=Metrics(), engine=StandInEngine(), check_sources=False,  # type: ignore[arg-type]
    )
    batch = records(args.batch)
    per_record = []
    for _ in range(args.loops):
        started = time.process_time()
        for _ in range(10):
            await consumer.consume_batch(batch)
        per_record.append((time.process_time() - started) / (10 * len(batch)) * 1e6)
    per_record.sort()
    print(f"consume_batch, {args.batch}-record batches: {per_record[0]:.1f} us per record "
          f"(least of {args.loops} loops; median {per_record[len(per_record) // 2]:.1f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--loops", type=int, default=9)
    asyncio.run(main(parser.parse_args()))
