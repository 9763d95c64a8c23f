"""`stayops replay`: events from the broker again, for debugging.

To a consumer group (`--to-group G`): the selected records of a topic (a time
window, one correlation) are copied, unchanged, to `<G>.replay`, a topic only G's
consumer reads (stayops_kit.consumer); no other group sees them, and G's offsets
on the original topics do not move. G applies them through its inbox, so an event
it already applied has no effect; the report says, per event, whether it was new,
already applied, or parked on G's dead-letter topic, from G's inbox table and its
dead-letter topic.

Into a sandbox (`--sandbox SERVICE`): the service's handlers, in this process, on a
scratch database its migrations build, are fed a correlation's events in their
original order through the consumer's own apply path (`InboxConsumer.consume_batch`)
without a consumer group; nothing is published. The result is the rows the
handlers wrote, per table, and the events they announced (the sandbox's outbox).
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import importlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from stayops_infra.dlq import read_dead_letters
from stayops_kit.claims import HttpResultReader
from stayops_kit.consumer import InboxConsumer
from stayops_kit.db import create_engine, inbox, messaging_metadata, outbox
from stayops_kit.metrics import Metrics
from stayops_kit.migrations import upgrade_head
from stayops_kit.outbox import UnitOfWorkFactory
from stayops_kit.runtime import ServiceSpec
from stayops_schemas.catalog import CATALOG, ORG_DIRECTORY, event_type, replay_topic
from stayops_schemas.ownership import OWNERS
from stayops_schemas.subscriptions import consumed_by

# The groups that apply events through an inbox (a service's database).
SERVICE_GROUPS = ("task-service", "workflow-service", "automation-service", "agent-service")
REPLAYED_FROM_HEADER = "stayops_replayed_from"

Progress = Callable[[str, int, int | None], None]  # (phase, done, total)


def _no_progress(phase: str, done: int, total: int | None) -> None:
    pass


class ReplayError(Exception):
    pass


@dataclass(frozen=True)
class Selection:
    """Which records of a topic: a window of broker timestamps and/or one correlation."""

    topic: str
    since: datetime | None = None
    until: datetime | None = None
    correlation_id: str | None = None


def _header(record: ConsumerRecord[Any, Any], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


def _ms(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)


async def read_topic(bootstrap: str, selection: Selection, *, types: Iterable[str] | None = None,
                     orgs: Iterable[str] | None = None, progress: Progress = _no_progress,
                     ) -> list[ConsumerRecord[Any, Any]]:
    """The selected records, as they are on the broker, in their original order (each
    partition's order, partitions merged by timestamp). Read without a consumer group:
    nobody's offsets move. `types`/`orgs` narrow by `ce_type`/`ce_orgid`."""
    wanted_types = frozenset(types) if types is not None else None
    wanted_orgs = frozenset(orgs) if orgs is not None else None
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await reader.start()
    try:
        partitions = sorted(await _partitions(bootstrap, selection.topic))
        tps = [TopicPartition(selection.topic, p) for p in partitions]
        reader.assign(tps)
        end = await reader.end_offsets(tps)
        start = await reader.beginning_offsets(tps)
        if selection.since is not None:
            found = await reader.offsets_for_times({tp: _ms(selection.since) for tp in tps})
            start = {tp: (found[tp].offset if found[tp] is not None else end[tp]) for tp in tps}
        for tp in tps:
            reader.seek(tp, start[tp])
        total = sum(end[tp] - start[tp] for tp in tps)
        until_ms = _ms(selection.until) if selection.until is not None else None
        per_partition: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {tp: [] for tp in tps}
        remaining = {tp for tp in tps if start[tp] < end[tp]}
        scanned = idle = 0
        while remaining:
            batch = await reader.getmany(*remaining, timeout_ms=2000, max_records=2000)
            if not batch:
                idle += 1
                if idle >= 5:
                    raise ReplayError(f"{selection.topic}: no records for 10 s before the end of the topic")
                continue
            idle = 0
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= end[tp]:
                        continue
                    scanned += 1
                    if until_ms is not None and record.timestamp > until_ms:
                        continue
                    if selection.correlation_id is not None \
                            and _header(record, "ce_correlationid") != selection.correlation_id:
                        continue
                    if wanted_types is not None and _header(record, "ce_type") not in wanted_types:
                        continue
                    if wanted_orgs is not None and _header(record, "ce_orgid") not in wanted_orgs:
                        continue
                    per_partition[tp].append(record)
                if await reader.position(tp) >= end[tp]:
                    remaining.discard(tp)
            progress(f"reading {selection.topic}", scanned, total)
    finally:
        await reader.stop()
    return merge_in_order(per_partition.values())


def merge_in_order(parts: Iterable[Sequence[ConsumerRecord[Any, Any]]]) -> list[ConsumerRecord[Any, Any]]:
    """One sequence from several partitions' (or topics'): each keeps its own order,
    the others are interleaved by broker timestamp."""
    return list(heapq.merge(*parts, key=lambda r: r.timestamp))


async def _partitions(bootstrap: str, topic: str) -> set[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    found = {int(p["partition"]) for entry in described if entry["topic"] == topic and not entry["error_code"]
             for p in entry["partitions"]}
    if not found:
        raise ReplayError(f"no topic {topic!r} on the broker")
    return found


# --- to a consumer group ---------------------------------------------------


@dataclass
class ReplayReport:
    group: str
    selected: int  # records of the topic the selection matched
    replayed: int  # of those, the types the group handles (sent to <group>.replay)
    new: list[str] = field(default_factory=list)  # event ids applied by this replay
    already_applied: list[str] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # not consumed within the wait

    def summary(self) -> dict[str, int]:
        return {"selected": self.selected, "replayed": self.replayed, "new": len(self.new),
                "already_applied": len(self.already_applied), "parked": len(self.parked),
                "pending": len(self.pending)}


async def _applied(database_url: str, group: str, ids: Sequence[str]) -> set[str]:
    """The event ids of `ids` that `group`'s inbox records as applied."""
    if not ids:
        return set()
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.select(inbox.c.event_id).where(
                inbox.c.consumer_group == group, inbox.c.event_id.in_(list(ids))))
            return {row.event_id for row in rows}
    finally:
        await engine.dispose()


async def _committed(admin: AIOKafkaAdminClient, group: str, tp: TopicPartition) -> int:
    offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    found = offsets.get(tp)
    return found.offset if found is not None and found.offset >= 0 else -1


async def replay_to_group(bootstrap: str, database_url: str, group: str, selection: Selection, *,
                          wait_s: float = 120.0, progress: Progress = _no_progress) -> ReplayReport:
    """Copy the selected records of the types `group` handles to `<group>.replay`,
    wait until the group has consumed them (its committed offset there), and report
    what its inbox and dead-letter topic say of each."""
    if group not in SERVICE_GROUPS:
        raise ReplayError(f"{group!r} is not a service's consumer group ({', '.join(SERVICE_GROUPS)})")
    selected = await read_topic(bootstrap, selection, progress=progress)
    handled = consumed_by(group)
    records = [r for r in selected if _header(r, "ce_type") in handled]
    ids = [_header(r, "ce_id") or "" for r in records]
    report = ReplayReport(group, len(selected), len(records))
    if not records:
        return report
    before = await _applied(database_url, group, ids)
    target = replay_topic(group)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    first = last = -1
    try:
        for done, record in enumerate(records, 1):
            headers = [(k, v) for k, v in record.headers if k != REPLAYED_FROM_HEADER]
            headers.append((REPLAYED_FROM_HEADER, f"{record.topic}[{record.partition}]@{record.offset}".encode()))
            sent = await producer.send_and_wait(target, record.value, key=record.key, headers=headers)
            first = sent.offset if first < 0 else first
            last = sent.offset
            progress(f"sending to {target}", done, len(records))
    finally:
        await producer.stop()
    tp = TopicPartition(target, 0)
    deadline = time.monotonic() + wait_s
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        while True:
            committed = await _committed(admin, group, tp)
            progress(f"{group} applying", max(0, min(committed, last + 1) - first), last + 1 - first)
            if committed > last or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    after = await _applied(database_url, group, ids)
    parked = await _parked(bootstrap, group, target, first, set(ids))
    for event_id in dict.fromkeys(ids):
        if event_id in before:
            report.already_applied.append(event_id)
        elif event_id in after:
            report.new.append(event_id)
        elif event_id in parked:
            report.parked.append(event_id)
        else:
            report.pending.append(event_id)
    return report


async def _parked(bootstrap: str, group: str, target: str, first_offset: int, ids: set[str]) -> set[str]:
    """Ids of the replayed records `group` dead-lettered (from `target`, at or after
    `first_offset`)."""
    reader, letters = await read_dead_letters(bootstrap, group, limit=100_000)
    await reader.stop()
    found = set()
    for letter in letters:
        offset = letter.header("dlq_original_offset")
        if letter.header("dlq_original_topic") == target and offset.isdigit() and int(offset) >= first_offset \
                and letter.header("ce_id") in ids:
            found.add(letter.header("ce_id"))
    return found


# --- into a sandbox ---------------------------------------------------------


SANDBOX_SERVICES = ("task-service", "workflow-service", "automation-service", "agent-service")


def service_spec(service: str) -> ServiceSpec:
    """The service's spec (migrations, handlers), from its own package."""
    if service not in SANDBOX_SERVICES:
        raise ReplayError(f"{service!r} is not one of {', '.join(SANDBOX_SERVICES)}")
    module = importlib.import_module(f"{service.replace('-', '_')}.app")
    spec: ServiceSpec = module.spec()
    return spec


class _Parking:
    """Stands in for the consumer's producer in the sandbox: a record its handlers
    cannot apply is kept here (with the reason) instead of sent to a dead-letter topic."""

    def __init__(self) -> None:
        self.parked: list[dict[str, str]] = []

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                            headers: Sequence[tuple[str, bytes]] = ()) -> None:
        found = {k: v.decode(errors="replace") for k, v in headers}
        self.parked.append({"id": found.get("ce_id", ""), "type": found.get("ce_type", ""),
                            "reason": found.get("dlq_reason", ""), "error_type": found.get("dlq_error_type", "")})


@dataclass
class SandboxResult:
    service: str
    database_url: str
    fed: list[dict[str, str]]  # the events applied, in order: id, type, source, correlation
    parked: list[dict[str, str]]
    tables: dict[str, list[dict[str, Any]]]  # table -> rows the handlers wrote
    emitted: list[dict[str, Any]]  # the sandbox's outbox: what it would have published
    # Aggregate ids the sandbox gave (a task, a run) -> the ones production gave them.
    ids: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(json.dumps({
            "service": self.service, "database_url": self.database_url, "fed": self.fed, "parked": self.parked,
            "tables": self.tables, "emitted": self.emitted, "ids": self.ids}, default=str))
        return result


async def sandbox_replay(bootstrap: str, correlation_id: str, service: str, *,
                         create_database: Callable[[str], Any], result_urls: dict[str, str] | None = None,
                         service_api_key: str = "dev-internal-key", with_org_context: bool = True,
                         progress: Progress = _no_progress) -> SandboxResult:
    """Feed `service`'s handlers the correlation's events on a scratch database
    (`create_database(name)` makes it and returns its URL) and read back what they did.

    With `with_org_context`, the org directory events (members, policy) of the
    correlation's orgs that the service handles come first: its handlers read the
    org's people and policy, which those events made. Claim-check results are fetched
    over `result_urls` (read-only GETs), as the service would."""
    spec = service_spec(service)
    handled = spec.subscriptions.types
    topics = sorted({event_type(name).topic for name in handled})
    parts = []
    for topic in topics:
        parts.append(await read_topic(bootstrap, Selection(topic, correlation_id=correlation_id), types=handled,
                                      progress=progress))
    records = merge_in_order(parts)
    if not records:
        raise ReplayError(f"no event of correlation {correlation_id!r} that {service} handles is on the broker")
    context: list[ConsumerRecord[Any, Any]] = []
    if with_org_context and ORG_DIRECTORY in topics:
        orgs = {_header(r, "ce_orgid") or "" for r in records}
        first_ts = records[0].timestamp
        directory = await read_topic(bootstrap, Selection(ORG_DIRECTORY), types=handled, orgs=orgs,
                                     progress=progress)
        context = [r for r in directory if r.timestamp <= first_ts and _header(r, "ce_correlationid")
                   != correlation_id]
    # What production's service announced for each event it applied: the sandbox's
    # new aggregates get ids of their own, and the later events name production's.
    own_source = f"/{spec.name}"
    own_topics = sorted({entry.topic for entry in CATALOG.values() if own_source in OWNERS[entry.type]})
    announced: dict[str, list[ConsumerRecord[Any, Any]]] = {}
    for topic in own_topics:
        for record in await read_topic(bootstrap, Selection(topic, correlation_id=correlation_id),
                                       progress=progress):
            if _header(record, "ce_source") == own_source:
                announced.setdefault(_header(record, "ce_causationid") or "", []).append(record)
    url = await create_database(f"sandbox_{service.replace('-', '_')}_{uuid.uuid4().hex[:8]}")
    progress("migrating the scratch database", 0, None)
    await upgrade_head(spec.migrations_dir, url)
    engine = create_engine(url)
    parking = _Parking()
    consumer = InboxConsumer(
        group=spec.name, subscriptions=spec.subscriptions, uow_factory=UnitOfWorkFactory(engine, f"/{spec.name}"),
        producer=parking,  # only send_and_wait is used, for dead letters
        metrics=Metrics(), max_attempts=3, retry_base_s=0.05, batch_budget_s=600,
        results=HttpResultReader(result_urls or {}, service_api_key),
    )
    fed: list[dict[str, str]] = []
    to_sandbox: dict[str, str] = {}  # production id -> sandbox id
    try:
        feed = [*context, *records]
        for done, original in enumerate(feed, 1):
            record = _with_ids(original, to_sandbox)
            # One record per batch: each is applied (or parked) before the next, in order.
            await consumer.consume_batch([record])
            await _match_ids(engine, _header(record, "ce_id") or "",
                             announced.get(_header(record, "ce_id") or "", []), to_sandbox)
            fed.append({"id": _header(record, "ce_id") or "", "type": _header(record, "ce_type") or "",
                        "source": _header(record, "ce_source") or "",
                        "correlationid": _header(record, "ce_correlationid") or "",
                        "origin": f"{record.topic}[{record.partition}]@{record.offset}"})
            progress("applying", done, len(feed))
        tables, emitted = await _written(engine)
    finally:
        await engine.dispose()
    parked_ids = {p["id"] for p in parking.parked}
    return SandboxResult(service, url, [f for f in fed if f["id"] not in parked_ids], parking.parked, tables,
                         emitted, {sandbox: production for production, sandbox in to_sandbox.items()})


def _with_ids(record: ConsumerRecord[Any, Any], to_sandbox: dict[str, str]) -> ConsumerRecord[Any, Any]:
    """The record naming the sandbox's aggregates where it names production's."""
    if not to_sandbox:
        return record

    def swap(raw: Any) -> Any:
        if not isinstance(raw, bytes):
            return raw
        for production, sandbox in to_sandbox.items():
            raw = raw.replace(production.encode(), sandbox.encode())
        return raw

    return dataclasses.replace(record, key=swap(record.key), value=swap(record.value),
                               headers=[(k, swap(v)) for k, v in record.headers])


async def _match_ids(engine: Any, cause: str, production: list[ConsumerRecord[Any, Any]],
                     to_sandbox: dict[str, str]) -> None:
    """Pair what the sandbox announced for event `cause` with what production did (by
    type, in order) and remember production's aggregate id for each of the sandbox's."""
    async with engine.connect() as conn:
        ours = (await conn.execute(sa.select(outbox.c.event_type, outbox.c.partition_key)
                                   .where(outbox.c.causation_id == cause).order_by(outbox.c.id))).all()
    theirs: dict[str, list[str]] = {}
    for record in production:
        theirs.setdefault(_header(record, "ce_type") or "", []).append(_header(record, "ce_partitionkey") or "")
    for row in ours:
        keys = theirs.get(row.event_type)
        if keys:
            real = keys.pop(0)
            if real and real != row.partition_key and real not in to_sandbox:
                to_sandbox[real] = row.partition_key


async def _written(engine: Any) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Every row of the service's own tables (not the messaging or migration tables),
    and the outbox as the events it would have published."""
    skip = set(messaging_metadata.tables) | {"alembic_version"}
    tables: dict[str, list[dict[str, Any]]] = {}
    async with engine.connect() as conn:
        names = (await conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"))).scalars().all()
        for name in names:
            if name in skip:
                continue
            rows = (await conn.execute(sa.text(f'SELECT * FROM "{name}"'))).mappings().all()
            if rows:
                tables[name] = [dict(row) for row in rows]
        emitted = [
            {"id": str(row.event_id), "type": row.event_type, "topic": row.topic, "key": row.partition_key,
             "correlationid": row.correlation_id, "causationid": row.causation_id, "data": row.payload}
            for row in await conn.execute(sa.select(outbox).order_by(outbox.c.id))
        ]
    return tables, emitted
