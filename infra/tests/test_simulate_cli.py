"""`stayops simulate` makes the sync simulators speak on the real broker: a Hostaway
reservation created then cancelled (as Hostaway's update) in two separate runs of the
command, a review, a guest's message; `stayops seed propco` announces a property
manager and writes its listings' segments for the sync simulators."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stayops_infra.ports import free_port
from stayops_infra.syncsim import listing_profiles_file
from stayops_kit.testing import decoded, eventually
from stayops_schemas.catalog import ORG_DIRECTORY, SYNC_AIRBNB, SYNC_HOSTAWAY, TOPICS
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


async def test_simulate_a_guest_message_on_hostaway(stack: Any, tmp_path: Path) -> None:
    env = {"STAYOPS_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap, "STAYOPS_DATA_DIR": str(tmp_path)}
    org = f"org-{uuid.uuid4().hex[:8]}"
    out = await asyncio.to_thread(stayops, ["simulate", "message", "--org", org, "--listing", "l-1", "--platform",
                                            "hostaway", "--text", "Is the pool heated?", "--guest", "Ana"], env)
    assert "hostaway.message.received" in out, out

    async def messages() -> list[Envelope]:
        return await events_of(stack.kafka_bootstrap, SYNC_HOSTAWAY, org)

    [message] = await eventually(messages, what="the Hostaway message")
    assert (message.type, message.source) == ("hostaway.message.received", "/sync-hostaway")
    assert (message.data["text"], message.data["guest_name"]) == ("Is the pool heated?", "Ana")


async def test_seed_propco_announces_its_members_and_writes_its_segments_for_the_sync_simulators(
    stack: Any, tmp_path: Path,
) -> None:
    env = {"STAYOPS_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap, "STAYOPS_DATA_DIR": str(tmp_path),
           # No automation-service here: the seed says its automations were not created.
           "STAYOPS_AUTOMATION_URL": f"http://127.0.0.1:{free_port()}"}
    out = await asyncio.to_thread(stayops, ["seed", "propco", "--json"], env)
    assert "automations were not created" in out
    seeded = json.loads(out[out.index("\n{") + 1:])
    assert len(seeded["listing_ids"]) == 50 and sorted(seeded["departments"]) == [
        "Guest relations", "Operations", "Revenue"]
    profiles = listing_profiles_file(tmp_path / "syncsim" / "listings.json")()
    assert {lid: p.segment for lid, p in profiles.items()} == {
        lid: segment for segment, ids in seeded["segments"].items() for lid in ids}

    async def joined() -> list[Envelope]:
        found = [e for e in await events_of(stack.kafka_bootstrap, ORG_DIRECTORY, seeded["org_id"])
                 if e.type == "org.member.joined"]
        return found if len(found) == 8 else []

    assert {e.data["department_name"] for e in await eventually(joined, what="8 members joined")} == {
        None, "Revenue", "Operations", "Guest relations"}
