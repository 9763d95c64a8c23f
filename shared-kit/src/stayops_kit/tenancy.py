"""Org scoping that a query cannot forget: every read or write of a tenant table
goes through `OrgScope`, which adds `org_id = :caller_org` itself."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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

    def insert_many(self, rows: Sequence[dict[str, Any]]) -> postgresql.Insert:
        """An INSERT of several rows into this org."""
        if not rows:
            raise ValueError("insert_many needs at least one row")
        if any(row.get("org_id", self.org_id) != self.org_id for row in rows):
            raise ValueError("cannot insert a row into another org")
        return postgresql.insert(self.table).values([{**row, "org_id": self.org_id} for row in rows])

    def upsert_newest(
        self, rows: Sequence[dict[str, Any]], *, key: Sequence[str], version: str
    ) -> postgresql.Insert:
        """INSERT rows into this org; a row whose `key` exists replaces it unless the
        stored `version` column is newer, so an event arriving late changes nothing."""
        if not rows:
            raise ValueError("upsert_newest needs at least one row")
        if any(row.get("org_id", self.org_id) != self.org_id for row in rows):
            raise ValueError("cannot insert a row into another org")
        statement = postgresql.insert(self.table).values([{**row, "org_id": self.org_id} for row in rows])
        conflict = ("org_id", *key)
        return statement.on_conflict_do_update(
            index_elements=[self.table.c[name] for name in conflict],
            set_={name: statement.excluded[name] for name in rows[0] if name not in conflict},
            where=self.table.c[version] <= statement.excluded[version],
        )

    def update(self) -> sa.Update:
        return self.table.update().where(self.where)

    def delete(self) -> sa.Delete:
        return self.table.delete().where(self.where)


class OrgTemplate:
    """Statements on a tenant table for the org given when the statement runs: the
    statement's org is a required parameter, so a statement built once (and compiled
    once) serves every org, and one run without an org fails rather than reading or
    writing all of them. For the hot, many-part statements whose building costs more
    than their execution; `OrgScope` for the rest."""

    PARAMETER = "org_id"
    UPDATE_PARAMETER = "scope_org_id"

    def __init__(self, table: sa.Table) -> None:
        if "org_id" not in table.c:
            raise ValueError(f"table {table.name} has no org_id column: it cannot be org-scoped")
        self.table = table

    @property
    def where(self) -> sa.ColumnElement[bool]:
        return self.table.c.org_id == sa.bindparam(self.PARAMETER, type_=sa.Text, required=True)

    def select(self, *columns: Any) -> sa.Select[Any]:
        return sa.select(*(columns or (self.table,))).where(self.where)

    def update(self) -> sa.Update:
        """An UPDATE of this table's rows of the org given when it runs, as the
        parameter `UPDATE_PARAMETER` (an UPDATE's parameter named like a column would
        set that column)."""
        org = sa.bindparam(self.UPDATE_PARAMETER, type_=sa.Text, required=True)
        return self.table.update().where(self.table.c.org_id == org)

    KEY_PARAMETER = "scope_row_key"
    NEW_PREFIX = "new_"

    def update_columns(self, key: sa.Column[Any], columns: Iterable[str]) -> sa.Update:
        """An UPDATE that sets `columns` of the org's row whose `key` is given when it
        runs; `update_parameters` names its parameters (none is named like a column)."""
        row = sa.bindparam(self.KEY_PARAMETER, type_=key.type, required=True)
        return self.update().where(key == row).values(
            {name: sa.bindparam(self.NEW_PREFIX + name, type_=self.table.c[name].type) for name in columns})

    @classmethod
    def update_parameters(cls, org_id: str, key: Any, values: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """The parameters of an `update_columns` statement: the org, the row's key, each
        column's new value, and `extra` for the statement's other parameters."""
        return {cls.UPDATE_PARAMETER: org_id, cls.KEY_PARAMETER: key,
                **{cls.NEW_PREFIX + name: value for name, value in values.items()}, **extra}

    def insert(self, **expressions: Any) -> postgresql.Insert:
        """An INSERT of one row whose values (its `org_id` among them) come as the
        statement's parameters when it runs; `expressions` are the columns computed
        in SQL from parameters of other names."""
        return postgresql.insert(self.table).values(expressions) if expressions else postgresql.insert(self.table)
