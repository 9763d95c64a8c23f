"""Reads a consumer batch shares (`TransactionReads`): the org policy, read once for
the batch's events, is read again after an event of the batch changed it."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from stayops_kit.consumer import EventContext, InboxConsumer, Subscriptions
from stayops_kit.metrics import Metrics
from stayops_kit.policies import create_org_policies_table, org_policy, store_policy
from stayops_kit.testing import PROBE_EVENT, ProbeDb, event_envelope, probe_payload
from stayops_schemas.binding import to_kafka
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.org import OrgPolicyUpdated
from stayops_schemas.events.tasks import TaskCreated


def _record(envelope: Envelope, offset: int) -> Any:
    record = to_kafka(envelope)
    return SimpleNamespace(topic="probe", partition=0, offset=offset, key=record.key, value=record.value,
                           headers=record.headers)


async def test_an_event_after_a_policy_change_in_the_same_batch_sees_the_new_policy(probe: ProbeDb) -> None:
    async with probe.engine.begin() as conn:
        await conn.run_sync(create_org_policies_table)
    org = probe.org_id
    seen: list[bool] = []

    async def task_created(ctx: EventContext, event: TaskCreated) -> None:
        seen.append((await org_policy(ctx.uow, event.org_id)).ai_agents_may_decide)

    async def policy_updated(ctx: EventContext, event: OrgPolicyUpdated) -> None:
        await store_policy(ctx.uow, event)

    subscriptions = Subscriptions()
    subscriptions.on(PROBE_EVENT)(task_created)
    subscriptions.on("org.policy.updated")(policy_updated)
    consumer = InboxConsumer(group=probe.group, subscriptions=subscriptions, uow_factory=probe.uow,
                             producer=None, metrics=Metrics(), check_sources=False)  # type: ignore[arg-type]
    batch = [
        event_envelope(PROBE_EVENT, probe_payload(org, "t1", 1), "t1"),
        event_envelope("org.policy.updated", OrgPolicyUpdated(
            org_id=org, ai_agents_may_decide=True, updated_at=datetime.now(UTC)), org),
        event_envelope(PROBE_EVENT, probe_payload(org, "t2", 2), "t2"),
        event_envelope(PROBE_EVENT, probe_payload(org, "t3", 3), "t3"),
    ]

    held = await consumer.consume_batch([_record(envelope, n) for n, envelope in enumerate(batch)])

    assert held == {}
    assert seen == [False, True, True]
