"""Idempotency keys for REST commands: a client that retries a create with the
same `Idempotency-Key` gets what the first attempt made, not a second one; the
same key with another body is refused, since the client has mixed up its keys.

A key belongs to one caller in one org. The key's row is claimed before the
command runs, in the command's own transaction: a concurrent retry waits on the
row until the first attempt commits (then answers its result) or rolls back
(then runs itself)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from stayops_kit.errors import InvalidRequest

metadata = sa.MetaData()

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("caller", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("resource_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)


def create_idempotency_table(connection: sa.Connection) -> None:
    """For a service's migration: the table `claim` and `settle` use."""
    metadata.create_all(connection, tables=[idempotency_keys])


class IdempotencyKeyReused(InvalidRequest):
    title = "Idempotency key reused"
    code = "idempotency-key-reused"

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used for a different request; "
            "send a new key for a new request, or the same body to retry the first"
        )


def fingerprint(body: Mapping[str, Any]) -> str:
    """A digest of a request body that does not depend on key order or spacing."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim(conn: AsyncConnection, org_id: str, caller: str, key: str, digest: str) -> str | None:
    """None: the key is new and now ours; run the command and `settle` it. Else the
    id of what the first request with this key made. Raises IdempotencyKeyReused if
    that request had another body."""
    inserted = await conn.execute(
        pg.insert(idempotency_keys)
        .values(org_id=org_id, caller=caller, key=key, fingerprint=digest)
        .on_conflict_do_nothing()
        .returning(idempotency_keys.c.key)
    )
    if inserted.first() is not None:
        return None
    earlier = (await conn.execute(
        sa.select(idempotency_keys.c.fingerprint, idempotency_keys.c.resource_id).where(
            idempotency_keys.c.org_id == org_id, idempotency_keys.c.caller == caller,
            idempotency_keys.c.key == key)
    )).one()
    if earlier.fingerprint != digest:
        raise IdempotencyKeyReused(key)
    resource_id: str = earlier.resource_id
    return resource_id


async def settle(conn: AsyncConnection, org_id: str, caller: str, key: str, resource_id: str) -> None:
    """Record what the request with this key made, in the same transaction."""
    await conn.execute(
        sa.update(idempotency_keys)
        .where(idempotency_keys.c.org_id == org_id, idempotency_keys.c.caller == caller,
               idempotency_keys.c.key == key)
        .values(resource_id=resource_id)
    )
