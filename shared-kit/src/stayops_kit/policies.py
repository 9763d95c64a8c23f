"""The org policy read model every service that enforces the policy keeps: the
latest `org.policy.updated` per org, in the service's own database. An org that
never announced one has the defaults of `stayops_schemas.guardrails`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from stayops_kit.outbox import UnitOfWork
from stayops_kit.tenancy import OrgScope
from stayops_schemas.events.org import OrgPolicyUpdated
from stayops_schemas.guardrails import default_policy

policy_metadata = sa.MetaData()

org_policies = sa.Table(
    "org_policies",
    policy_metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("policy", pg.JSONB, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


def create_org_policies_table(connection: sa.Connection) -> None:
    """A migration step: the read model's table (call it from a service's migration)."""
    policy_metadata.create_all(connection)


async def store_policy(uow: UnitOfWork, event: OrgPolicyUpdated) -> None:
    """Keep the policy unless a newer one is already stored (events may arrive late)."""
    scope = OrgScope(org_policies, event.org_id)
    await uow.conn.execute(scope.upsert_newest(
        [{"policy": event.model_dump(mode="json"), "updated_at": event.updated_at}],
        key=(), version="updated_at",
    ))
    uow.reads.forget((org_policies.name, event.org_id))


async def org_policy(uow: UnitOfWork, org_id: str) -> OrgPolicyUpdated:
    """The org's policy, read once per transaction (`TransactionReads`): a consumer
    batch's events of one org share the read."""
    return await uow.reads.once((org_policies.name, org_id), lambda: policy_of(uow.conn, org_id))


async def policy_of(conn: AsyncConnection, org_id: str) -> OrgPolicyUpdated:
    scope = OrgScope(org_policies, org_id)
    row = (await conn.execute(scope.select(org_policies.c.policy))).first()
    if row is None:
        return default_policy(org_id)
    return OrgPolicyUpdated.model_validate(row.policy)
