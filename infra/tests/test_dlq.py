"""A parked event can be inspected and redriven: it then applies once, and a record
that keeps failing is not redriven forever."""

from __future__ import annotations

import uuid
from typing import Any

from stayops_infra.dlq import list_dead_letters, redrive
from stayops_kit.consumer import EventContext, Subscriptions
from stayops_kit.db import create_engine
from stayops_kit.errors import PermanentError
from stayops_kit.outbox import UnitOfWorkFactory
from stayops_kit.testing import (
    PROBE_EVENT,
    effects_of,
    ensure_topic,
    eventually,
    prepare_database,
    probe_payload,
    record_effect,
    running_consumer,
    running_relay,
)
from stayops_schemas.events.tasks import TaskCreated


async def test_a_parked_event_is_listed_then_redriven_and_applies_once(stack: Any) -> None:
    url = await stack.create_database(f"dlq_{uuid.uuid4().hex[:8]}")
    engine = create_engine(url)
    await prepare_database(engine)
    group = f"dlq-{uuid.uuid4().hex[:8]}"
    await ensure_topic(stack.kafka_bootstrap, f"{group}.dlq")
    org = str(uuid.uuid4())
    broken = {"yes": True}

    async def sometimes_broken(ctx: EventContext, event: TaskCreated) -> None:
        if event.org_id == org and broken["yes"]:
            raise PermanentError("the listing is not synced yet")
        await record_effect(ctx, event)

    subscriptions = Subscriptions()
    subscriptions.on(PROBE_EVENT)(sometimes_broken)
    uow = UnitOfWorkFactory(engine, "/probe")
    async with uow.begin() as unit:
        await unit.announce(PROBE_EVENT, probe_payload(org, "k1", 1), org_id=org, key="k1")

    async def parked() -> list[dict[str, str]]:
        return [row for row in await list_dead_letters(stack.kafka_bootstrap, group) if row["orgid"] == org]

    async with running_relay(engine, url, stack.kafka_bootstrap, poll_interval_s=0.2), \
            running_consumer(engine, stack.kafka_bootstrap, group, subscriptions=subscriptions):
        letters = await eventually(parked, what="the event parked")
        assert letters[0]["reason"] == "the listing is not synced yet"
        assert letters[0]["original"].startswith("stayops.tasks[")
        assert await effects_of(engine, org) == []

        broken["yes"] = False
        # The group also parked other tests' bad records from the shared topic; they
        # fail again and come back, which is what the redrive guard is for.
        redriven, _ = await redrive(stack.kafka_bootstrap, group)
        assert redriven >= 1
        effects = await eventually(lambda: effects_of(engine, org), what="the redriven event applied")
        assert [(key, seq) for key, seq, _ in effects] == [("k1", 1)]

        await redrive(stack.kafka_bootstrap, group)
        assert len(await parked()) == 1, "once applied, our event is not parked again"
        assert [(key, seq) for key, seq, _ in await effects_of(engine, org)] == [("k1", 1)], "applied once"
    await engine.dispose()

