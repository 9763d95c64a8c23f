"""The delivery guarantees of DESIGN.md §3, on real PostgreSQL and Apache Kafka:
outbox and state commit together, nothing is lost or applied twice when the relay,
the consumer or the broker dies, per-key order holds, late commits are not skipped,
and bad events are dead-lettered with their reason."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stayops_kit.consumer import EventContext, Subscriptions
from stayops_kit.db import outbox
from stayops_kit.errors import PermanentError
from stayops_kit.metrics import Metrics
from stayops_kit.relay import LISTENER_APPLICATION_NAME
from stayops_kit.testing import (
    PROBE_EVENT,
    ProbeDb,
    ProbeProcess,
    effects_of,
    eventually,
    probe_payload,
    record_effect,
    running_consumer,
    running_relay,
    write_probe_events,
)
from stayops_schemas.binding import KafkaRecord, to_kafka
from stayops_schemas.catalog import dead_letter_topic
from stayops_schemas.events.tasks import TaskCreated

pytestmark = pytest.mark.stack


async def unsent_count(probe: ProbeDb) -> int:
    async with probe.engine.connect() as conn:
        return int((await conn.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
        )).scalar_one())


async def effect_count(probe: ProbeDb, expected: int) -> list[Any] | None:
    effects = await effects_of(probe.engine, probe.org_id)
    return effects if len(effects) >= expected else None


def assert_once_each(effects: list[tuple[str, int, str]], expected: set[tuple[str, int]]) -> None:
    counts = Counter((key, seq) for key, seq, _ in effects)
    duplicates = {k: n for k, n in counts.items() if n > 1}
    assert not duplicates, f"applied more than once: {duplicates}"
    assert set(counts) == expected, f"missing: {sorted(expected - set(counts))[:10]}"


async def test_state_change_and_its_event_commit_together_or_not_at_all(probe: ProbeDb) -> None:
    with pytest.raises(RuntimeError):
        async with probe.uow.begin() as uow:
            await uow.conn.execute(sa.text("CREATE TABLE IF NOT EXISTS widgets (id text)"))
            await uow.conn.execute(sa.text("INSERT INTO widgets VALUES ('w1')"))
            await uow.announce(PROBE_EVENT, probe_payload(probe.org_id, "w1", 1),
                               org_id=probe.org_id, key="w1")
            raise RuntimeError("handler failed after announcing")
    async with probe.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one() == 0
        widgets = await conn.execute(sa.text("SELECT to_regclass('widgets')"))
        assert widgets.scalar_one() is None

    async with probe.uow.begin() as uow:
        await uow.conn.execute(sa.text("CREATE TABLE widgets (id text)"))
        await uow.conn.execute(sa.text("INSERT INTO widgets VALUES ('w2')"))
        await uow.announce(PROBE_EVENT, probe_payload(probe.org_id, "w2", 1), org_id=probe.org_id, key="w2")
    async with probe.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one() == 1
        assert (await conn.execute(sa.text("SELECT count(*) FROM widgets"))).scalar_one() == 1


@pytest.mark.parametrize("state_change_first", [False, True], ids=["events-only", "after-a-state-change"])
async def test_outbox_rows_are_written_as_announced_and_roll_back_even_after_the_flush(
        probe: ProbeDb, state_change_first: bool) -> None:
    """The outbox rows go in with the transaction's first statement or, once it has
    begun, by COPY on the driver's connection: either way they are the transaction's."""
    async def write(seqs: range, *, fail: bool) -> list[Any]:
        async with probe.uow.begin() as uow:
            if state_change_first:
                await uow.conn.execute(sa.text("INSERT INTO probe_keys (key, seq) VALUES ('k', 0) "
                                               "ON CONFLICT DO NOTHING"))
            announced = [await uow.announce(PROBE_EVENT, probe_payload(probe.org_id, "k", seq),
                                            org_id=probe.org_id, key="k", subject=f"s{seq}") for seq in seqs]
            await uow.flush()
            if fail:
                raise RuntimeError("the handler failed after its events were written")
        return announced

    with pytest.raises(RuntimeError):
        await write(range(3), fail=True)
    assert await unsent_count(probe) == 0
    announced = await write(range(3, 6), fail=False)
    async with probe.engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox).order_by(outbox.c.id))).mappings().all()
    assert [(str(r["event_id"]), r["event_type"], r["partition_key"], r["org_id"], r["subject"], r["payload"],
             r["occurred_at"], r["correlation_id"], r["topic"]) for r in rows] == [
        (e.id, e.type, "k", probe.org_id, e.subject, e.data, e.time, e.correlationid, "stayops.tasks")
        for e in announced]


async def test_relay_killed_before_publishing_publishes_after_restart(probe: ProbeDb) -> None:
    async with running_consumer(probe.engine, probe.bootstrap, probe.group):
        relay = ProbeProcess("relay", probe, failpoints="relay.before_send")
        await relay.wait_ready()
        await write_probe_events(probe.uow, probe.org_id, "k1", [1])
        assert await relay.wait_killed() == -signal.SIGKILL
        assert await unsent_count(probe) == 1

        relay = ProbeProcess("relay", probe)
        try:
            await relay.wait_ready()
            effects = await eventually(lambda: effect_count(probe, 1), what="effect after restart")
            await eventually(lambda: _is_zero(unsent_count(probe)), what="row marked sent")
        finally:
            relay.stop()
    assert_once_each(effects, {("k1", 1)})


async def test_relay_killed_after_publishing_publishes_again_and_the_effect_happens_once(
    probe: ProbeDb,
) -> None:
    async with running_consumer(probe.engine, probe.bootstrap, probe.group):
        relay = ProbeProcess("relay", probe, failpoints="relay.after_send")
        await relay.wait_ready()
        await write_probe_events(probe.uow, probe.org_id, "k1", [1])
        assert await relay.wait_killed() == -signal.SIGKILL
        await eventually(lambda: effect_count(probe, 1), what="first delivery")
        assert await unsent_count(probe) == 1, "killed before marking: the row is still unsent"

        relay = ProbeProcess("relay", probe)
        try:
            await relay.wait_ready()
            await eventually(lambda: _is_zero(unsent_count(probe)), what="row re-published")
            # The re-published copy has been consumed once the group's lag is 0.
            await eventually(lambda: _group_caught_up(probe), what="consumer caught up")
        finally:
            relay.stop()
    assert_once_each(await effects_of(probe.engine, probe.org_id), {("k1", 1)})


async def test_the_same_event_delivered_three_times_has_one_effect(probe: ProbeDb) -> None:
    async with probe.uow.begin() as uow:
        envelope = await uow.announce(PROBE_EVENT, probe_payload(probe.org_id, "k1", 7),
                                      org_id=probe.org_id, key="k1")
    record = to_kafka(envelope)
    producer = AIOKafkaProducer(bootstrap_servers=probe.bootstrap)
    await producer.start()
    try:
        for _ in range(3):
            await _send(producer, record)
        await _send(producer, _marker(probe, "k2"))
    finally:
        await producer.stop()
    async with running_consumer(probe.engine, probe.bootstrap, probe.group):
        await eventually(lambda: effect_count(probe, 2), what="marker applied")
        # Snapshot only once every copy has been consumed: a late duplicate would show.
        await eventually(lambda: _group_caught_up(probe), what="consumer caught up")
        effects = await effects_of(probe.engine, probe.org_id)
    assert_once_each(effects, {("k1", 7), ("k2", 0)})


async def test_the_handled_count_is_of_committed_events_each_once(probe: ProbeDb) -> None:
    # One key, so one partition and one batch: the event that fails rolls the batch
    # back, which is then applied one event at a time; a copy of the first event
    # comes behind them. Only the two events committed in the end are counted.
    subscriptions = Subscriptions()

    @subscriptions.on(PROBE_EVENT)
    async def refuse_seq_one(ctx: EventContext, event: TaskCreated) -> None:
        if event.data.get("seq") == 1:
            raise PermanentError("seq 1 is refused")
        await record_effect(ctx, event)

    async with probe.uow.begin() as uow:
        records = [to_kafka(await uow.announce(PROBE_EVENT, probe_payload(probe.org_id, "k", seq),
                                               org_id=probe.org_id, key="k")) for seq in range(3)]
    await _start_group_at_end(probe)
    producer = AIOKafkaProducer(bootstrap_servers=probe.bootstrap)
    await producer.start()
    try:
        for record in [*records, records[0]]:
            await _send(producer, record)
    finally:
        await producer.stop()
    metrics = Metrics()
    async with running_consumer(probe.engine, probe.bootstrap, probe.group, subscriptions=subscriptions,
                                metrics=metrics):
        await eventually(lambda: _group_caught_up(probe), what="consumer caught up")
        effects = await effects_of(probe.engine, probe.org_id)
    assert_once_each(effects, {("k", 0), ("k", 2)})
    assert metrics.events_handled.labels(PROBE_EVENT)._value.get() == 2
    assert await _dead_lettered(probe) == 1


async def test_a_consumer_killed_mid_handler_reprocesses_the_event_once(probe: ProbeDb) -> None:
    async with running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=0.2):
        consumer = ProbeProcess("consumer", probe, failpoints="consumer.before_commit")
        await consumer.wait_ready()
        await write_probe_events(probe.uow, probe.org_id, "k1", [1, 2, 3])
        assert await consumer.wait_killed(timeout=60) == -signal.SIGKILL
        assert await effects_of(probe.engine, probe.org_id) == [], "the killed transaction rolled back"

        consumer = ProbeProcess("consumer", probe)
        try:
            await consumer.wait_ready()
            effects = await eventually(lambda: effect_count(probe, 3), timeout=60, what="reprocessed")
        finally:
            consumer.stop()
    assert_once_each(effects, {("k1", 1), ("k1", 2), ("k1", 3)})


async def test_events_of_one_key_arrive_in_the_order_they_were_written(probe: ProbeDb) -> None:
    keys = [f"key-{i}" for i in range(6)]

    async def writer(key: str) -> None:
        for start in range(0, 60, 5):
            await write_probe_events(probe.uow, probe.org_id, key, range(start, start + 5))

    async with running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=0.2), \
            running_consumer(probe.engine, probe.bootstrap, probe.group, max_records=37):
        await asyncio.gather(*(writer(k) for k in keys))
        effects = await eventually(lambda: effect_count(probe, 360), timeout=60, what="all applied")
    for key in keys:
        seqs = [seq for k, seq, _ in effects if k == key]
        assert seqs == list(range(60)), f"{key} applied out of order: {seqs[:20]}..."


async def test_a_late_commit_with_a_lower_outbox_id_is_still_published(probe: ProbeDb) -> None:
    async with running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=0.2), \
            running_consumer(probe.engine, probe.bootstrap, probe.group):
        slow = probe.engine.connect()
        conn = await slow.__aenter__()
        transaction = await conn.begin()
        slow_uow = probe.uow.bind(conn)
        await slow_uow.announce(PROBE_EVENT, probe_payload(probe.org_id, "slow", 1),
                                org_id=probe.org_id, key="slow")
        await slow_uow.flush()  # the row takes its (lower) id now; the commit comes last
        await write_probe_events(probe.uow, probe.org_id, "fast", [1, 2])
        effects = await eventually(lambda: effect_count(probe, 2), what="later rows published")
        assert {(k, s) for k, s, _ in effects} == {("fast", 1), ("fast", 2)}

        await transaction.commit()
        await slow.__aexit__(None, None, None)
        effects = await eventually(lambda: effect_count(probe, 3), what="late row published")
    assert_once_each(effects, {("fast", 1), ("fast", 2), ("slow", 1)})


async def test_no_row_is_skipped_under_sixteen_concurrent_writers(probe: ProbeDb) -> None:
    rng = random.Random(7)

    async def writer(n: int) -> None:
        for batch in range(10):
            async with probe.uow.begin() as uow:
                for seq in range(batch * 4, batch * 4 + 4):
                    await uow.announce(PROBE_EVENT, probe_payload(probe.org_id, f"w{n}", seq),
                                       org_id=probe.org_id, key=f"w{n}")
                await uow.flush()  # the rows take their ids now ...
                await asyncio.sleep(rng.random() / 20)  # ... and commit later, out of id order

    async with running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=0.2), \
            running_consumer(probe.engine, probe.bootstrap, probe.group):
        await asyncio.gather(*(writer(n) for n in range(16)))
        await eventually(lambda: effect_count(probe, 640), timeout=60, what="all 640 applied")
        await eventually(lambda: _group_caught_up(probe), what="consumer caught up")
        effects = await effects_of(probe.engine, probe.org_id)
    assert_once_each(effects, {(f"w{n}", s) for n in range(16) for s in range(40)})
    assert await unsent_count(probe) == 0


async def test_while_listen_cannot_reconnect_polling_alone_delivers(probe: ProbeDb) -> None:
    async with running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=1.0), \
            running_consumer(probe.engine, probe.bootstrap, probe.group):
        old = await eventually(lambda: _listener_pids(probe), what="relay listening")
        async with probe.engine.begin() as conn:  # no LISTEN session may log in again
            for statement in _REFUSE_LISTENER_LOGIN:
                await conn.execute(sa.text(statement))
        try:
            async with probe.engine.connect() as conn:
                await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": old[0]})
            await eventually(lambda: _no_listener(probe), what="listener gone")
            for n in range(2):  # more than one poll: not just the look right after the loss
                await write_probe_events(probe.uow, probe.org_id, f"k{n}", [1])
                await eventually(lambda n=n: effect_count(probe, n + 1), timeout=5, what="published by polling")
            assert await _listener_pids(probe) == [], "the re-listen was to be blocked"
        finally:
            async with probe.engine.begin() as conn:
                await conn.execute(sa.text("DROP EVENT TRIGGER refuse_listener"))
        new = await eventually(lambda: _listener_pids(probe), timeout=10, what="listener reconnected")
        assert new != old
        # And the new listener wakes the relay again, well before the next poll.
        await asyncio.sleep(1.1)  # let the wait after the reconnect's look begin
        await write_probe_events(probe.uow, probe.org_id, "k9", [1])
        started = asyncio.get_running_loop().time()
        await eventually(lambda: effect_count(probe, 3), timeout=5, what="published after reconnect")
        assert asyncio.get_running_loop().time() - started < 0.9, "woken by NOTIFY, not the poll"


_REFUSE_LISTENER_LOGIN = (f"""
CREATE OR REPLACE FUNCTION refuse_listener() RETURNS event_trigger AS $$
BEGIN
  IF current_setting('application_name') = '{LISTENER_APPLICATION_NAME}' THEN
    RAISE EXCEPTION 'LISTEN sessions are refused by this test';
  END IF;
END;
$$ LANGUAGE plpgsql""", "CREATE EVENT TRIGGER refuse_listener ON login EXECUTE FUNCTION refuse_listener()")


async def _no_listener(probe: ProbeDb) -> bool:
    return await _listener_pids(probe) == []


async def test_two_writers_on_one_key_are_applied_in_commit_order(probe: ProbeDb) -> None:
    async def writer() -> None:
        for _ in range(30):
            async with probe.uow.begin() as uow:
                await uow.conn.execute(sa.text(
                    "INSERT INTO probe_keys (key, seq) VALUES ('shared', 0) ON CONFLICT DO NOTHING"))
                seq = (await uow.conn.execute(sa.text(  # the aggregate's lock, then its next number
                    "UPDATE probe_keys SET seq = seq + 1 WHERE key = 'shared' RETURNING seq"))).scalar_one()
                await uow.announce(PROBE_EVENT, probe_payload(probe.org_id, "shared", seq),
                                   org_id=probe.org_id, key="shared")

    async with running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=0.2), \
            running_consumer(probe.engine, probe.bootstrap, probe.group, max_records=7):
        await asyncio.gather(writer(), writer())
        effects = await eventually(lambda: effect_count(probe, 60), timeout=30, what="all applied")
    assert [seq for _, seq, _ in effects] == list(range(1, 61))


async def test_a_consumer_killed_between_its_commit_and_the_offset_commit_applies_once(
    probe: ProbeDb,
) -> None:
    await _start_group_at_end(probe)  # its first batch is this test's events, not older ones
    async with running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=0.2):
        consumer = ProbeProcess("consumer", probe, failpoints="consumer.after_commit")
        await consumer.wait_ready()
        await write_probe_events(probe.uow, probe.org_id, "k1", [1, 2, 3])
        assert await consumer.wait_killed(timeout=60) == -signal.SIGKILL
        assert await effects_of(probe.engine, probe.org_id), "killed after the database commit"

        consumer = ProbeProcess("consumer", probe)
        try:
            await consumer.wait_ready()
            await eventually(lambda: _group_caught_up(probe), timeout=60, what="redelivered and committed")
        finally:
            consumer.stop()
    assert_once_each(await effects_of(probe.engine, probe.org_id), {("k1", 1), ("k1", 2), ("k1", 3)})


async def test_two_relays_at_once_publish_each_row_once_in_order_and_one_takes_over(probe: ProbeDb) -> None:
    keys = [f"key-{i}" for i in range(4)]

    async def writer(key: str, seqs: range) -> None:
        for start in seqs[::5]:
            await write_probe_events(probe.uow, probe.org_id, key, range(start, start + 5))

    async with running_consumer(probe.engine, probe.bootstrap, probe.group), \
            running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=0.2) as first:
        async with running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=0.2) as second:
            await asyncio.gather(*(writer(k, range(0, 30)) for k in keys))
            await eventually(lambda: effect_count(probe, 120), timeout=30, what="first half applied")
            assert first.is_leader != second.is_leader, "exactly one relay publishes"
        # The second stopped: if it led, the first takes over; either way it publishes the rest.
        await asyncio.gather(*(writer(k, range(30, 60)) for k in keys))
        await eventually(lambda: effect_count(probe, 240), timeout=30, what="second half applied")
        assert first.is_leader
    assert await unsent_count(probe) == 0
    effects = await effects_of(probe.engine, probe.org_id)
    assert_once_each(effects, {(k, s) for k in keys for s in range(60)})
    for key in keys:
        assert [s for k, s, _ in effects if k == key] == list(range(60))


async def test_malformed_and_invalid_events_go_to_the_dead_letter_topic_and_the_consumer_goes_on(
    probe: ProbeDb,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=probe.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait("stayops.tasks", b"not json at all", key=b"bad1",
                                     headers=[("ce_type", PROBE_EVENT.encode())])
        async with probe.uow.begin() as uow:
            envelope = await uow.announce(PROBE_EVENT, probe_payload(probe.org_id, "bad2", 1),
                                          org_id=probe.org_id, key="bad2")
        record = to_kafka(envelope)
        invalid = json.dumps({**json.loads(record.value), "task_type": "cooking"}).encode()
        await _send(producer, KafkaRecord(record.key, invalid, record.headers))
        await _send(producer, _marker(probe, "good"))
    finally:
        await producer.stop()

    async with running_consumer(probe.engine, probe.bootstrap, probe.group):
        effects = await eventually(lambda: effect_count(probe, 1), what="valid event applied")
        # The three records sit on different partitions: the consumer may reach the
        # bad ones after the good one, so read the dead letters while it runs.
        letters = await _read_all(probe.bootstrap, dead_letter_topic(probe.group), expected=2,
                                  keys={b"bad1", b"bad2"})
    assert [(k, s) for k, s, _ in effects] == [("good", 0)]

    by_key = {r.key: dict(r.headers) for r in letters}
    malformed, invalid_letter = by_key[b"bad1"], by_key[b"bad2"]
    assert b"ce_specversion" in malformed["dlq_reason"]
    assert malformed["dlq_error_type"] == b"MalformedEvent"
    assert b"task_type" in invalid_letter["dlq_reason"]
    assert invalid_letter["dlq_error_type"] == b"InvalidPayload"
    assert invalid_letter["dlq_orgid"] == probe.org_id.encode()
    for headers in (malformed, invalid_letter):
        assert headers["dlq_original_topic"] == b"stayops.tasks"
        assert headers["dlq_original_partition"].isdigit()
        assert headers["dlq_original_offset"].isdigit()
        assert headers["dlq_attempts"] == b"1"
        assert headers["dlq_consumer_group"] == probe.group.encode()


async def test_kafka_restarted_under_load_loses_nothing_and_applies_each_once(
    probe: ProbeDb, stack: Any
) -> None:
    written: set[tuple[str, int]] = set()

    async def write_steadily(count: int, key: str) -> None:
        for seq in range(count):
            await write_probe_events(probe.uow, probe.org_id, key, [seq])
            written.add((key, seq))
            await asyncio.sleep(0.01)

    async with running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=0.2), \
            running_consumer(probe.engine, probe.bootstrap, probe.group):
        load = asyncio.gather(*(write_steadily(150, f"k{i}") for i in range(4)))
        await eventually(lambda: effect_count(probe, 50), timeout=30, what="load flowing")
        await stack.stop_kafka()
        await asyncio.sleep(1.0)  # the writers keep committing while the broker is down
        await stack.start_kafka()
        await load
        await eventually(lambda: effect_count(probe, 600), timeout=120, what="all 600 applied")
        await eventually(lambda: _group_caught_up(probe), timeout=60, what="consumer caught up")
        effects = await effects_of(probe.engine, probe.org_id)
    assert_once_each(effects, written)


async def test_kafka_down_longer_than_the_request_timeout_loses_nothing_and_applies_each_once(
    probe: ProbeDb, stack: Any
) -> None:
    """The broker stays away for longer than the producer's request timeout, so the
    batches in flight and queued expire (the sends fail, the idempotent producer's
    sequence is broken): the relay must charge no row, rebuild what it must, and
    publish everything once the broker is back; the consumer loses nothing either."""
    request_timeout_s = 4.0
    written: set[tuple[str, int]] = set()
    # The topic holds other tests' malformed records: this group reads only this test's.
    await _start_group_at_end(probe)

    async def write_steadily(count: int, key: str) -> None:
        for seq in range(count):
            await write_probe_events(probe.uow, probe.org_id, key, [seq])
            written.add((key, seq))
            await asyncio.sleep(0.02)

    async with running_relay(probe.engine, probe.url, probe.bootstrap, poll_interval_s=0.2,
                             request_timeout_ms=int(request_timeout_s * 1000)) as relay, \
            running_consumer(probe.engine, probe.bootstrap, probe.group):
        load = asyncio.gather(*(write_steadily(200, f"k{i}") for i in range(4)))
        await eventually(lambda: effect_count(probe, 50), timeout=30, what="load flowing")
        await stack.stop_kafka()
        down_at = asyncio.get_running_loop().time()
        await asyncio.sleep(3 * request_timeout_s)  # the writers keep committing meanwhile
        unsent_while_down = await unsent_count(probe)
        await stack.start_kafka()
        down_s = asyncio.get_running_loop().time() - down_at
        await load
        await eventually(lambda: effect_count(probe, 800), timeout=180, what="all 800 applied")
        await eventually(lambda: _group_caught_up(probe), timeout=90, what="consumer caught up")
        effects = await effects_of(probe.engine, probe.org_id)
        assert relay.health.restarts == 0  # the relay's passes failed and retried; it never died
    assert down_s > 2 * request_timeout_s
    assert unsent_while_down > 0  # the writers went on while nothing could be published
    assert_once_each(effects, written)
    for key in {key for key, _ in written}:
        seqs = [seq for k, seq, _ in effects if k == key]
        assert seqs == sorted(seqs), f"{key} applied out of order"
    assert await unsent_count(probe) == 0
    async with probe.engine.connect() as conn:
        charged = (await conn.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.attempts > 0))).scalar_one()
    assert charged == 0, "broker downtime was charged to rows"
    assert await _dead_lettered(probe) == 0


async def _dead_lettered(probe: ProbeDb) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=probe.bootstrap, group_id=None)
    await consumer.start()
    try:
        from aiokafka import TopicPartition
        partition = TopicPartition(dead_letter_topic(probe.group), 0)
        ends = await consumer.end_offsets([partition])
        return int(ends[partition])
    finally:
        await consumer.stop()


async def _is_zero(value: Any) -> bool:
    return await value == 0


async def _listener_pids(probe: ProbeDb) -> list[int]:
    """The relay's sessions that are listening: a session still logging in already
    shows its application name (and is refused by the login trigger), so only one
    whose last statement was its LISTEN counts."""
    async with probe.engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :name "
                    "AND datname = current_database() AND query ILIKE 'LISTEN %'"),
            {"name": LISTENER_APPLICATION_NAME},
        )
        return [r.pid for r in rows]


async def _start_group_at_end(probe: ProbeDb) -> None:
    """Commit the group's offsets at the end of the topic, as if it had read it all."""
    consumer = AIOKafkaConsumer("stayops.tasks", bootstrap_servers=probe.bootstrap, group_id=probe.group,
                                enable_auto_commit=False, auto_offset_reset="latest")
    await consumer.start()
    try:
        await eventually(lambda: _assigned(consumer), what="partitions assigned")
        for partition in consumer.assignment():
            await consumer.position(partition)
        await consumer.commit()
    finally:
        await consumer.stop()


async def _assigned(consumer: AIOKafkaConsumer) -> bool:
    await consumer.getmany(timeout_ms=100)
    return bool(consumer.assignment())


async def _group_caught_up(probe: ProbeDb) -> bool:
    consumer = AIOKafkaConsumer(bootstrap_servers=probe.bootstrap, group_id=None)
    await consumer.start()
    try:
        from aiokafka.admin import AIOKafkaAdminClient
        admin = AIOKafkaAdminClient(bootstrap_servers=probe.bootstrap)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(probe.group)
        finally:
            await admin.close()
        ends = await consumer.end_offsets(list(committed))
        return bool(committed) and all(committed[tp].offset >= ends[tp] for tp in committed)
    finally:
        await consumer.stop()


async def _send(producer: AIOKafkaProducer, record: KafkaRecord) -> None:
    await producer.send_and_wait("stayops.tasks", record.value, key=record.key, headers=record.headers)


def _marker(probe: ProbeDb, key: str) -> KafkaRecord:
    from stayops_schemas.catalog import event_type
    from stayops_schemas.envelope import Envelope

    envelope = Envelope(
        id=f"marker-{key}-{probe.org_id}", type=PROBE_EVENT, source="/test", orgid=probe.org_id,
        partitionkey=key, data=probe_payload(probe.org_id, key, 0).model_dump(mode="json"),
        dataschema=event_type(PROBE_EVENT).dataschema,
    )
    return to_kafka(envelope)


async def _read_all(bootstrap: str, topic: str, expected: int, keys: set[bytes] | None = None) -> list[Any]:
    """At least `expected` records of `topic` (and, with `keys`, one of each key: a
    rebalance may dead-letter a record twice, which its redrive absorbs)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []

    def short() -> bool:
        return len(records) < expected or bool(keys and not keys <= {r.key for r in records})

    try:
        deadline = asyncio.get_running_loop().time() + 20
        while short() and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    assert len(records) >= expected, f"expected {expected} dead letters, got {len(records)}"
    return records
