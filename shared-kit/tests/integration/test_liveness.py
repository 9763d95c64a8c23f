"""Liveness of the messaging kit on real PostgreSQL and Apache Kafka: one bad row, one
poison record, a database restart or a producer in a fatal state never stops the
relay or the consumer for everyone else."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import OutOfOrderSequenceNumber
from typer.testing import CliRunner

from stayops_infra.cli import app as stayops_cli
from stayops_kit.db import outbox
from stayops_kit.metrics import Metrics
from stayops_kit.outbox import EventTooLarge
from stayops_kit.relay import OutboxRelay, RelayConfig, parked_rows, requeue_parked
from stayops_kit.testing import (
    PROBE_EVENT,
    ProbeDb,
    effects_of,
    ensure_topic,
    eventually,
    probe_payload,
    running_consumer,
    running_relay,
    write_probe_events,
)
from stayops_schemas.binding import KafkaRecord, to_kafka
from stayops_schemas.catalog import dead_letter_topic, event_type
from stayops_schemas.envelope import Envelope

pytestmark = pytest.mark.stack


async def test_an_event_too_big_for_one_kafka_record_is_refused_when_written(probe: ProbeDb) -> None:
    payload = probe_payload(probe.org_id, "big", 1, padding="x" * 1_100_000)
    with pytest.raises(EventTooLarge, match="summary"):
        async with probe.uow.begin() as uow:
            await uow.announce(PROBE_EVENT, payload, org_id=probe.org_id, key="big")
    async with probe.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one() == 0


async def test_a_row_kafka_refuses_is_parked_and_the_rows_behind_it_keep_flowing(probe: ProbeDb) -> None:
    # A row written before the size check existed (or by a service that skipped it):
    # incompressible data, so compression cannot rescue it either.
    await _insert_raw_row(probe, "big", 0, padding=base64.b64encode(os.urandom(1_500_000)).decode())
    await write_probe_events(probe.uow, probe.org_id, "big", [1, 2])
    await write_probe_events(probe.uow, probe.org_id, "other", [1, 2, 3])
    metrics = Metrics()

    async with running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=0.2, metrics=metrics,
                             max_attempts=3, retry_backoff_s=0.1), \
            running_consumer(probe.engine, probe.bootstrap, probe.group):
        # Other keys are not held back while the refused row waits for its retries.
        await eventually(lambda: _effects_of_key(probe, "other", 3), timeout=15, what="other key published")
        parked = await eventually(lambda: parked_rows(probe.engine), timeout=15, what="the big row parked")
        # Once it is parked, the rest of its key follows, in order.
        await eventually(lambda: _effects_of_key(probe, "big", 2), timeout=15, what="rest of its key")
        await eventually(lambda: _gauges_settled(metrics), timeout=5, what="gauges updated")

    assert [(row.partition_key, row.attempts) for row in parked] == [("big", 3)]
    assert "MessageSizeTooLarge" in (parked[0].last_error or "")
    assert [s for k, s, _ in await effects_of(probe.engine, probe.org_id) if k == "big"] == [1, 2]
    assert metrics.outbox_parked._value.get() == 1
    assert metrics.outbox_pending._value.get() == 0

    listed = await _stayops("outbox", "list", "probe", "--database-url", probe.url)
    assert listed.exit_code == 0, listed.output
    assert f'"id": {parked[0].id}' in listed.output and "MessageSizeTooLarge" in listed.output
    retried = await _stayops("outbox", "retry", "probe", "--database-url", probe.url)
    assert retried.exit_code == 0, retried.output
    assert "Re-queued 1" in retried.output
    assert await parked_rows(probe.engine) == []
    assert await requeue_parked(probe.engine) == 0


async def test_postgres_restarted_and_stopped_under_load_dead_letters_nothing(
    probe: ProbeDb, stack: Any
) -> None:
    committed: set[tuple[str, int]] = set()
    attempted: set[tuple[str, int]] = set()
    outage_over = asyncio.Event()

    async def write_steadily(key: str) -> None:
        seq = 0
        while not outage_over.is_set() or seq < 60:
            attempted.add((key, seq))
            try:
                await write_probe_events(probe.uow, probe.org_id, key, [seq])
            except Exception:  # the database is down: the writer tries the same event again
                await asyncio.sleep(0.2)
                continue
            committed.add((key, seq))
            seq += 1
            await asyncio.sleep(0.02)

    metrics = Metrics()
    async with running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=0.2, max_backoff_s=1.0), \
            running_consumer(probe.engine, probe.bootstrap, probe.group, metrics=metrics):
        load = asyncio.gather(*(write_steadily(f"k{i}") for i in range(4)))
        await eventually(lambda: _effect_count(probe, 40), timeout=30, what="load flowing")
        await stack.stop_postgres()  # pg_ctl restart -m fast
        await stack.start_postgres()
        before = len(committed)
        await eventually(lambda: _effect_count(probe, before + 20), timeout=60, what="flowing again")
        await stack.stop_postgres()
        await asyncio.sleep(20)  # the outage: consumer and relay keep trying meanwhile
        await stack.start_postgres()
        outage_over.set()
        await load
        effects = await eventually(lambda: _effect_count(probe, len(committed)), timeout=60,
                                   what="every committed event applied")
        # The offsets are committed after the effects, so they may trail them briefly.
        await eventually(lambda: _group_caught_up(probe), timeout=20, what="offsets committed to the end")

    assert metrics.events_dead_lettered.labels("DatabaseUnavailable")._value.get() == 0
    assert await _dead_letter_count(probe) == 0, "an event was dead-lettered during the restart"
    applied = [(key, seq) for key, seq, _ in effects]
    assert len(applied) == len(set(applied)), "an event was applied twice"
    assert committed <= set(applied) <= attempted


async def test_a_producer_in_a_fatal_state_is_replaced(probe: ProbeDb) -> None:
    made: list[AIOKafkaProducer] = []

    def producers() -> AIOKafkaProducer:
        producer = (_OutOfSequence if not made else AIOKafkaProducer)(bootstrap_servers=probe.bootstrap)
        made.append(producer)
        return producer

    metrics = Metrics()
    relay = OutboxRelay(probe.engine, producers, RelayConfig(probe.url, poll_interval_s=0.2, retry_backoff_s=0.1),
                        metrics)
    await write_probe_events(probe.uow, probe.org_id, "k1", [1, 2])
    async with running_consumer(probe.engine, probe.bootstrap, probe.group):
        task = asyncio.create_task(relay.run())
        try:
            await eventually(lambda: _effect_count(probe, 2), timeout=20, what="published by the new producer")
        finally:
            relay.stop()
            await task
    assert len(made) == 2 and metrics.producer_restarts._value.get() == 1
    assert relay.health.healthy


async def test_a_record_the_binding_cannot_read_is_dead_lettered_once_and_its_partition_moves_on(
    probe: ProbeDb,
) -> None:
    good = to_kafka(_probe_envelope(probe, "after", 1))
    # A year-1 time in +01:00 is before datetime.min in UTC: it overflows in the binding.
    replaced = {"ce_time": b"0001-01-01T00:00:00+01:00", "ce_id": f"poison-{probe.org_id}".encode()}
    poison_key = f"poison-{probe.org_id}".encode()
    poison = KafkaRecord(poison_key, good.value, [(k, replaced.get(k, v)) for k, v in good.headers])
    producer = AIOKafkaProducer(bootstrap_servers=probe.bootstrap)
    await producer.start()
    try:  # the same partition: the good record sits behind the poison one
        await producer.send_and_wait("stayops.tasks", poison.value, key=poison.key, headers=poison.headers,
                                     partition=0)
        await producer.send_and_wait("stayops.tasks", good.value, key=good.key, headers=good.headers, partition=0)
    finally:
        await producer.stop()

    async with running_consumer(probe.engine, probe.bootstrap, probe.group):
        await eventually(lambda: _effects_of_key(probe, "after", 1), timeout=20, what="the record behind it")
        await eventually(lambda: _group_caught_up(probe), timeout=20, what="offsets committed past both")
    letters = await _dead_letters(probe)
    # The topic holds other tests' bad records too (a fresh group reads it all).
    assert [r.key for r in letters].count(poison_key) == 1, "dead-lettered exactly once"


async def test_a_failing_dead_letter_send_holds_only_its_own_partition(probe: ProbeDb) -> None:
    group = f"nodlq-{uuid.uuid4().hex[:8]}"  # its dead-letter topic does not exist yet
    probe_nodlq = ProbeDb(probe.url, probe.engine, probe.uow, probe.org_id, probe.bootstrap, group)
    bad_key = f"bad-{probe.org_id}".encode()
    producer = AIOKafkaProducer(bootstrap_servers=probe.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait("stayops.tasks", b"not json", key=bad_key,
                                     headers=[("ce_type", PROBE_EVENT.encode())], partition=0)
        for key, partition in (("p0", 0), ("p1", 1)):
            record = to_kafka(_probe_envelope(probe, key, 1))
            await producer.send_and_wait("stayops.tasks", record.value, key=record.key, headers=record.headers,
                                         partition=partition)
    finally:
        await producer.stop()

    metrics = Metrics()
    async with running_consumer(probe.engine, probe.bootstrap, group, metrics=metrics,
                                dead_letter_timeout_s=0.5, unavailable_backoff_s=0.2):
        await eventually(lambda: _effects_of_key(probe, "p1", 1), timeout=20, what="the other partition")
        await eventually(lambda: _effects_of_key(probe, "p0", 1), timeout=20, what="applied behind the bad one")
        await eventually(lambda: _at_least(metrics.dead_letter_failures, 2), timeout=20, what="retried")
        await ensure_topic(probe.bootstrap, dead_letter_topic(group))
        await eventually(lambda: _group_caught_up(probe_nodlq), timeout=30, what="partition 0 moved on")
    letters = await _dead_letters(probe_nodlq)
    assert [r.key for r in letters].count(bad_key) == 1
    assert [(k, s) for k, s, _ in await effects_of(probe.engine, probe.org_id)] in (
        [("p0", 1), ("p1", 1)], [("p1", 1), ("p0", 1)])


async def _stayops(*args: str) -> Any:
    """Run the `stayops` CLI as an operator would (it runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, stayops_cli, list(args))


class _OutOfSequence(AIOKafkaProducer):
    """A producer that has lost its sequence: every send fails as Kafka would say."""

    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_exception(OutOfOrderSequenceNumber())
        return future


def _probe_envelope(probe: ProbeDb, key: str, seq: int) -> Envelope:
    return Envelope(
        id=f"{key}-{seq}-{probe.org_id}", type=PROBE_EVENT, source="/probe", orgid=probe.org_id,
        partitionkey=key, data=probe_payload(probe.org_id, key, seq).model_dump(mode="json"),
        dataschema=event_type(PROBE_EVENT).dataschema,
    )


async def _insert_raw_row(probe: ProbeDb, key: str, seq: int, padding: str) -> None:
    envelope = _probe_envelope(probe, key, seq)
    async with probe.engine.begin() as conn:
        await conn.execute(outbox.insert().values(
            event_id=str(uuid.uuid4()), event_type=PROBE_EVENT, topic="stayops.tasks", partition_key=key,
            org_id=probe.org_id, source="/probe", dataschema=envelope.dataschema,
            payload=probe_payload(probe.org_id, key, seq, padding=padding).model_dump(mode="json"),
            occurred_at=envelope.time,
        ))


async def _effects_of_key(probe: ProbeDb, key: str, expected: int) -> bool:
    return len([k for k, _, _ in await effects_of(probe.engine, probe.org_id) if k == key]) >= expected


async def _effect_count(probe: ProbeDb, expected: int) -> list[Any] | None:
    effects = await effects_of(probe.engine, probe.org_id)
    return effects if len(effects) >= expected else None


async def _gauges_settled(metrics: Metrics) -> bool:
    return bool(metrics.outbox_parked._value.get() == 1 and metrics.outbox_pending._value.get() == 0)


async def _at_least(counter: Any, n: int) -> bool:
    return bool(counter._value.get() >= n)


async def _group_caught_up(probe: ProbeDb) -> bool:
    """True once the group's committed offsets reach the end of every partition it reads."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=probe.bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(probe.group)
    finally:
        await admin.close()
    partitions = await _partitions(probe, "stayops.tasks")
    consumer = AIOKafkaConsumer(bootstrap_servers=probe.bootstrap, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    assert partitions
    return all(committed.get(tp) is not None and committed[tp].offset >= end
               for tp, end in ends.items() if end > 0)


async def _partitions(probe: ProbeDb, topic: str) -> list[TopicPartition]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=probe.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [TopicPartition(topic, p["partition"]) for t in described for p in t["partitions"]]


async def _dead_letters(probe: ProbeDb) -> list[Any]:
    """Every record on the group's dead-letter topic (read to its end)."""
    topic = dead_letter_topic(probe.group)
    consumer = AIOKafkaConsumer(bootstrap_servers=probe.bootstrap, group_id=None, enable_auto_commit=False)
    partitions = await _partitions(probe, topic)
    assert partitions, f"no topic {topic}"
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for part in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()


async def _dead_letter_count(probe: ProbeDb) -> int:
    return len(await _dead_letters(probe))

