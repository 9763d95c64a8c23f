"""Rows a transaction defers (`UnitOfWork.defer_insert`) go in at its end, by COPY when
they can, and hold what a Core INSERT would have stored: JSON encoded as its column's
type says, Python-side defaults filled, and nothing left behind by a rollback."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from stayops_kit.testing import ProbeDb

metadata = sa.MetaData()
notes = sa.Table(
    "deferred_notes", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("changes", pg.JSONB, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("label", sa.Text, nullable=False, default="from Python"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def _stored(probe: ProbeDb) -> list[tuple[object, ...]]:
    async with probe.engine.connect() as conn:
        rows = await conn.execute(sa.select(notes.c.org_id, notes.c.changes, notes.c.at, notes.c.label,
                                            notes.c.created_at.is_not(None)).order_by(notes.c.id))
        return [tuple(row) for row in rows]


@pytest.mark.parametrize("begun", [True, False], ids=["transaction-begun", "nothing-before"])
async def test_deferred_rows_hold_what_an_insert_would_store(probe: ProbeDb, begun: bool) -> None:
    async with probe.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    rows = [
        {"org_id": "o1", "changes": {"status": {"from": "open", "to": "done"}}, "at": AT, "label": "given"},
        # A JSON string is a string value, not JSON text to parse.
        {"org_id": "o1", "changes": "plain words", "at": AT, "label": "given"},
    ]
    async with probe.uow.begin() as uow:
        if begun:
            await uow.conn.execute(sa.text("SELECT 1"))
        for row in rows:
            uow.defer_insert(notes, row)
    async with probe.uow.begin() as uow:  # a column with a Python default left out
        await uow.conn.execute(sa.text("SELECT 1"))
        uow.defer_insert(notes, {"org_id": "o2", "changes": [1, 2], "at": AT})
    with pytest.raises(RuntimeError):
        async with probe.uow.begin() as uow:
            await uow.conn.execute(sa.text("SELECT 1"))
            uow.defer_insert(notes, {"org_id": "o4", "changes": {}, "at": AT, "label": "given"})
            await uow.flush()
            raise RuntimeError("failed after the flush")

    assert await _stored(probe) == [
        ("o1", {"status": {"from": "open", "to": "done"}}, AT, "given", True),
        ("o1", "plain words", AT, "given", True),
        ("o2", [1, 2], AT, "from Python", True),
    ]
