"""`stayops simulate` makes the sync simulators speak on the real broker: a Hostaway
reservation created then cancelled (as Hostaway's update) in two separate runs of the
command, and a review."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stayops_kit.testing import decoded, eventually
from stayops_schemas.catalog import SYNC_AIRBNB, SYNC_HOSTAWAY, TOPICS
from stayops_schemas.envelope import Envelope

pytestmark = pytest.mark.stack


def stayops(args: list[str], env: dict[str, str]) -> str:
    command = Path(sys.executable).parent / "stayops"
    done = subprocess.run([str(command), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


async def events_of(bootstrap: str, topic: str, org: str) -> list[Envelope]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        count = next(t.partitions for t in TOPICS if t.name == topic)
        partitions = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found: list[Envelope] = []
        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in partitions])

        while await behind():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                found += [e for e in map(decoded, records) if e is not None and e.orgid == org]
        return found
    finally:
        await consumer.stop()


async def test_simulate_a_hostaway_reservation_then_its_cancellation_and_a_review(stack: Any, tmp_path: Path) -> None:
    env = {"STAYOPS_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap, "STAYOPS_DATA_DIR": str(tmp_path)}
    org = f"org-{uuid.uuid4().hex[:8]}"
    common = ["--org", org, "--listing", "l-1", "--platform", "hostaway", "--reservation", "hx-42"]
    await asyncio.to_thread(stayops, ["simulate", "reservation", *common], env)
    again = await asyncio.to_thread(stayops, ["simulate", "reservation", *common], env)
    assert "Nothing to announce" in again, again
    await asyncio.to_thread(stayops, ["simulate", "reservation", *common, "--cancel"], env)
    await asyncio.to_thread(stayops, ["simulate", "review", "--org", org, "--listing", "l-1", "--rating", "2"], env)

    async def hostaway() -> list[str]:
        types = [e.type for e in await events_of(stack.kafka_bootstrap, SYNC_HOSTAWAY, org)]
        return types if len(types) >= 2 else []

    assert await eventually(hostaway, what="Hostaway events") == [
        "hostaway.reservation.created", "hostaway.reservation.cancelled"]
    [review] = await events_of(stack.kafka_bootstrap, SYNC_AIRBNB, org)
    assert (review.type, review.source, review.data["rating"]) == ("airbnb.review.created", "/sync-airbnb", 2)
