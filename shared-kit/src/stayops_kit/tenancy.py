"""Org scoping that a query cannot forget: every read or write of a tenant table
goes through `OrgScope`, which adds `org_id = :caller_org` itself."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


class OrgScope:
    """Queries on one tenant table, limited to one org."""

    def __init__(self, table: sa.Table, org_id: str) -> None:
        if "org_id" not in table.c:
            raise ValueError(f"table {table.name} has no org_id column: it cannot be org-scoped")
        if not org_id:
            raise ValueError("an org scope needs an org id")
        self.table = table
        self.org_id = org_id

    @property
    def where(self) -> sa.ColumnElement[bool]:
        return self.table.c.org_id == self.org_id

    def select(self, *columns: Any) -> sa.Select[Any]:
        return sa.select(*(columns or (self.table,))).where(self.where)

    def insert(self, **values: Any) -> postgresql.Insert:
        """An INSERT of one row into this org (PostgreSQL's, so it can say ON CONFLICT)."""
        if values.get("org_id", self.org_id) != self.org_id:
            raise ValueError("cannot insert a row into another org")
        return postgresql.insert(self.table).values({**values, "org_id": self.org_id})

    def update(self) -> sa.Update:
        return self.table.update().where(self.where)

    def delete(self) -> sa.Delete:
        return self.table.delete().where(self.where)
