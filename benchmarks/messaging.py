"""Messaging benchmark: bare aiokafka produce->consume of 1 KB events (the ceiling)
against the full StayOps path (handler transactions write the outbox, the relay
publishes, the inbox consumer commits each effect before the offset), on one
embedded PostgreSQL and Apache Kafka. Prints throughputs, their ratio, and the
end-to-end latency at a fixed rate beside bare aiokafka's at the same rate.

    python benchmarks/messaging.py [--events 20000] [--rate 200] [--seconds 20]
                                   [--latency-only | --throughput-only] [--fetch-max-wait-ms 500]

The consumers fetch with the services' default wait on Apache Kafka unless
`--fetch-max-wait-ms` says otherwise; at a low `--rate` the latency phases show what
one event's hop costs a quiet consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer

from stayops_infra.cpumeter import CpuMeter, cpu_spent
from stayops_infra.testing import start_test_stack
from stayops_kit.db import create_engine, inbox, outbox
from stayops_kit.kafka import create_producer
from stayops_kit.outbox import UnitOfWorkFactory
from stayops_kit.runtime import freeze_startup_heap
from stayops_kit.settings import FETCH_MAX_WAIT_MS
from stayops_kit.testing import (
    PROBE_EVENT,
    ProbeDb,
    ProbeProcess,
    ensure_topic,
    eventually,
    prepare_database,
    probe_effects,
    probe_payload,
)

PAYLOAD_BYTES = 1024
PADDING = "x" * 640  # with the probe's other fields the event's data is ~1 KB


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


async def bare_kafka(bootstrap: str, events: int) -> float:
    topic = f"bench-bare-{uuid.uuid4().hex[:6]}"
    await ensure_topic(bootstrap, topic, partitions=6)
    value = b"x" * PAYLOAD_BYTES
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"g-{topic}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=10, max_partition_fetch_bytes=4 * 1024 * 1024)
    producer = create_producer(bootstrap, client_id="bench-bare")
    await consumer.start()
    await producer.start()
    received = 0

    async def consume() -> None:
        nonlocal received
        while received < events:
            batch = await consumer.getmany(timeout_ms=100, max_records=2000)
            received += sum(len(records) for records in batch.values())
            if batch:
                await consumer.commit()

    started = time.perf_counter()
    reader = asyncio.create_task(consume())
    futures = [await producer.send(topic, value, key=str(i % 500).encode()) for i in range(events)]
    await asyncio.gather(*futures)
    await reader
    elapsed = time.perf_counter() - started
    await producer.stop()
    await consumer.stop()
    return events / elapsed


async def bare_latency(bootstrap: str, rate: int, seconds: int, fetch_max_wait_ms: int) -> list[float]:
    """Bare aiokafka at the same fixed rate: produce (acks=all, the same producer as
    the relay's) -> consume, the floor the full path's latency is compared with."""
    topic = f"bench-lat-{uuid.uuid4().hex[:6]}"
    await ensure_topic(bootstrap, topic, partitions=6)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"g-{topic}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=fetch_max_wait_ms)
    producer = create_producer(bootstrap, client_id="bench-bare-latency")
    await consumer.start()
    await producer.start()
    total = rate * seconds
    samples: list[float] = []
    padding = b"x" * (PAYLOAD_BYTES - 20)

    async def consume() -> None:
        while len(samples) < total:
            batch = await consumer.getmany(timeout_ms=100, max_records=2000)
            now = time.time_ns()
            for records in batch.values():
                samples.extend((now - int(r.value[:19])) / 1e6 for r in records)
            if batch:
                await consumer.commit()

    reader = asyncio.create_task(consume())
    await asyncio.sleep(3)  # the consumer joins its group before the clock starts, as in `latency`
    loop = asyncio.get_running_loop()
    start = loop.time()
    futures = []
    for seq in range(total):
        delay = start + seq / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        value = str(time.time_ns()).encode() + b" " + padding
        futures.append(await producer.send(topic, value, key=f"k{seq % 50}".encode()))
    await asyncio.gather(*futures)
    await asyncio.wait_for(reader, 60)
    await producer.stop()
    await consumer.stop()
    return samples


async def _probe_db(stack: object, prefix: str) -> ProbeDb:
    url = await stack.create_database(f"{prefix}_{uuid.uuid4().hex[:8]}")  # type: ignore[attr-defined]
    bootstrap: str = stack.kafka_bootstrap  # type: ignore[attr-defined]
    engine = create_engine(url, pool_size=20)
    await prepare_database(engine)
    group = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await ensure_topic(bootstrap, f"{group}.dlq")
    return ProbeDb(url, engine, UnitOfWorkFactory(engine, "/bench"), str(uuid.uuid4()), bootstrap, group)


METER: CpuMeter | None = None
CPU_PER_EVENT: dict[str, float] = {}
STAGES: dict[str, list[float]] = {}
BATCHES: dict[str, float] = {}


@contextlib.asynccontextmanager
async def relay_and_consumer(probe: ProbeDb, offset_reset: str = "earliest",
                             fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS["kafka"]) -> AsyncIterator[None]:
    """The relay and the consumer each in a process of its own, as in production
    (the relay runs in the producing service, the consumer in the consuming one)."""
    relay = ProbeProcess("relay", probe)
    consumer = ProbeProcess("consumer", probe, offset_reset=offset_reset, fetch_max_wait_ms=fetch_max_wait_ms)
    if METER is not None:
        METER.add("relay", relay.process.pid)
        METER.add("consumer", consumer.process.pid)
    try:
        await relay.wait_ready()
        await consumer.wait_ready()
        yield
    finally:
        relay.stop()
        consumer.stop()


async def full_path(stack: object, events: int, writers: int = 16, per_tx: int = 25) -> float:
    probe = await _probe_db(stack, "bench")
    per_writer = events // writers
    org = probe.org_id

    async def writer(n: int) -> None:
        for start in range(0, per_writer, per_tx):
            async with probe.uow.begin() as unit:
                for seq in range(start, min(start + per_tx, per_writer)):
                    await unit.announce(PROBE_EVENT, probe_payload(org, f"w{n}", seq, padding=PADDING),
                                        org_id=org, key=f"w{n}-{seq % 8}")

    async with relay_and_consumer(probe):
        before = METER.sample() if METER is not None else {}
        started = time.perf_counter()
        await asyncio.gather(*(writer(n) for n in range(writers)))
        total = per_writer * writers
        say(f"  written in {time.perf_counter() - started:.1f}s")
        await eventually(lambda: _all_sent(probe), timeout=600, what="outbox drained")
        say(f"  published in {time.perf_counter() - started:.1f}s")
        await wait_for_effects(probe, total)
        elapsed = time.perf_counter() - started
        say(f"  applied in {elapsed:.1f}s")
        if METER is not None:
            after = METER.sample()
            per_event = {stage: spent / total * 1e6 for stage, spent in cpu_spent(before, after).items()}
            CPU_PER_EVENT.update(per_event)
    async with probe.engine.connect() as conn:
        # A relay batch's rows share their sent_at (the time of its read); a consumer
        # batch's inbox marks their handled_at (its transaction's start).
        for stage, column in (("relay", outbox.c.sent_at), ("consumer", inbox.c.handled_at)):
            batches = (await conn.execute(sa.select(sa.func.count(sa.distinct(column))))).scalar_one()
            BATCHES[stage] = total / batches
    await probe.engine.dispose()
    return total / elapsed


async def latency(stack: object, rate: int, seconds: int, fetch_max_wait_ms: int) -> list[float]:
    probe = await _probe_db(stack, "lat")
    org = probe.org_id
    total = rate * seconds

    committed: dict[int, int] = {}

    async def write_one(seq: int) -> None:
        async with probe.uow.begin() as unit:
            sent = time.time_ns()
            await unit.announce(PROBE_EVENT, probe_payload(org, f"k{seq % 50}", seq, sent_at_ns=sent,
                                                           padding=PADDING), org_id=org, key=f"k{seq % 50}")
        committed[seq] = time.time_ns()

    # "latest": the topic may hold other events (an earlier run's), which are not this phase's.
    async with relay_and_consumer(probe, offset_reset="latest", fetch_max_wait_ms=fetch_max_wait_ms):
        await asyncio.sleep(3)  # let the consumer join its group before the clock starts
        loop = asyncio.get_running_loop()
        start = loop.time()
        pending: list[asyncio.Task[None]] = []
        for seq in range(total):
            delay = start + seq / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(write_one(seq)))
        await asyncio.gather(*pending)
        await wait_for_effects(probe, total)
    async with probe.engine.connect() as conn:
        rows = (await conn.execute(
            sa.select(probe_effects.c.sent_at_ns, outbox.c.sent_at, inbox.c.handled_at, probe_effects.c.applied_at,
                      probe_effects.c.seq)
            .join(outbox, outbox.c.event_id == sa.cast(probe_effects.c.event_id, outbox.c.event_id.type))
            .join(inbox, inbox.c.event_id == probe_effects.c.event_id)
            .where(probe_effects.c.org_id == org)
        )).all()
    await probe.engine.dispose()
    # Time to the effect's insert as the consumer's clock_timestamp() saw it (one machine, one clock).
    samples = [(applied.timestamp() * 1e9 - sent) / 1e6 for sent, _, _, applied, _ in rows]
    # Where it went: stamped in the writer's transaction -> committed (as the writer saw
    # it) -> read by the relay (the outbox's sent_at is the time of the relay's read)
    # -> the consumer's transaction began (the inbox's handled_at) -> the effect was
    # inserted (its clock_timestamp()).
    STAGES.update({
        "write->committed": [(committed[seq] - sent) / 1e6 for sent, _, _, _, seq in rows],
        "committed->relay read": [(read.timestamp() * 1e9 - committed[seq]) / 1e6 for _, read, _, _, seq in rows],
        "relay read->consumer tx": [(handled - read).total_seconds() * 1e3 for _, read, handled, _, _ in rows],
        "consumer tx->effect": [(applied - handled).total_seconds() * 1e3 for _, _, handled, applied, _ in rows],
    })
    return samples


async def wait_for_effects(probe: ProbeDb, total: int) -> None:
    await eventually(lambda: _effects_reached(probe, total), timeout=600, interval=0.05,
                     what=f"{total} effects")


async def _all_sent(probe: ProbeDb) -> bool:
    async with probe.engine.connect() as conn:
        result = await conn.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None)))
        return int(result.scalar_one()) == 0


async def _effects_reached(probe: ProbeDb, total: int) -> bool:
    async with probe.engine.connect() as conn:
        result = await conn.execute(
            sa.select(sa.func.count()).select_from(probe_effects).where(probe_effects.c.org_id == probe.org_id)
        )
        return int(result.scalar_one()) >= total


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="stayops-bench-") as data_dir:
        global METER
        METER = CpuMeter(data_dir, {"writers": os.getpid()})
        say("starting embedded PostgreSQL and Apache Kafka")
        stack = await asyncio.to_thread(start_test_stack, Path(data_dir))
        # The writers' process stands in for a service's, which freezes its startup heap
        # (stayops_kit.app.serve), as the relay's and the consumer's processes do.
        freeze_startup_heap()
        try:
            # Latency first: after the throughput phases PostgreSQL vacuums and analyses
            # tens of thousands of fresh rows for a while, which is not this phase's load.
            samples: list[float] = []
            bare_samples: list[float] = []
            if not args.throughput_only:
                say(f"latency: {args.rate} events/s for {args.seconds}s, one transaction per event")
                samples = await latency(stack, args.rate, args.seconds, args.fetch_max_wait_ms)
                say(f"bare latency: {args.rate} events/s for {args.seconds}s")
                bare_samples = await bare_latency(stack.kafka_bootstrap, args.rate, args.seconds,
                                                  args.fetch_max_wait_ms)
            bare = full = float("nan")
            if not args.latency_only:
                say(f"bare aiokafka: {args.events} x 1 KB events")
                bare = await bare_kafka(stack.kafka_bootstrap, args.events)
                say(f"  {bare:,.0f} events/s")
                say(f"full path: {args.events} events from 16 concurrent handler transactions")
                full = await full_path(stack, args.events)
                say(f"  {full:,.0f} events/s")
        finally:
            stack.close()
    print()
    print(f"bare aiokafka produce->consume   {bare:10,.0f} events/s")
    print(f"outbox->relay->inbox (full path) {full:10,.0f} events/s")
    print(f"full / bare                      {full / bare:10.1%}")
    print(f"consumers' fetch wait            {args.fetch_max_wait_ms:10d} ms")
    if not args.throughput_only:
        print(f"end-to-end latency at {args.rate}/s    p50 {percentile(samples, 0.50):.1f} ms   "
              f"p99 {percentile(samples, 0.99):.1f} ms   max {max(samples):.1f} ms   "
              f"mean {statistics.fmean(samples):.1f} ms  (n={len(samples)})")
        print(f"bare latency at {args.rate}/s           p50 {percentile(bare_samples, 0.50):.1f} ms   "
              f"p99 {percentile(bare_samples, 0.99):.1f} ms   max {max(bare_samples):.1f} ms   "
              f"mean {statistics.fmean(bare_samples):.1f} ms  (n={len(bare_samples)})")
    for stage, stage_samples in STAGES.items():
        print(f"  {stage:<24} p50 {percentile(stage_samples, 0.50):7.1f} ms   "
              f"p99 {percentile(stage_samples, 0.99):7.1f} ms")
    if CPU_PER_EVENT:
        print("CPU per event (full path)        " + "   ".join(
            f"{stage} {micros:.0f} us" for stage, micros in CPU_PER_EVENT.items()))
    if BATCHES:
        print("events per batch (full path)     " + "   ".join(
            f"{stage} {size:.0f}" for stage, size in BATCHES.items()))
    if not args.throughput_only:
        print(f"full p99 / bare p99              "
              f"{percentile(samples, 0.99) / percentile(bare_samples, 0.99):10.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--latency-only", action="store_true", help="only the two latency phases")
    parser.add_argument("--fetch-max-wait-ms", type=int, default=FETCH_MAX_WAIT_MS["kafka"],
                        help="the consumers' fetch wait (default: the services' on Apache Kafka)")
    parser.add_argument("--throughput-only", action="store_true",
                        help="only bare vs full path (and the CPU per event), no latency phases")
    asyncio.run(main(parser.parse_args()))
