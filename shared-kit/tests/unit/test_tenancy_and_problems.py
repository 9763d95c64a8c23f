"""Org scoping cannot be bypassed, and errors map to problem+json once."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from stayops_kit.consumer import Subscriptions
from stayops_kit.errors import Conflict, InvalidRequest, NotFound, PermissionDenied, Unauthorized
from stayops_kit.problems import status_for
from stayops_kit.tenancy import OrgScope, OrgTemplate
from stayops_schemas.errors import UnknownEventType

things = sa.Table("things", sa.MetaData(), sa.Column("id", sa.Text), sa.Column("org_id", sa.Text))


def sql(statement: sa.ClauseElement) -> str:
    return str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def test_every_scoped_statement_filters_by_the_org() -> None:
    scope = OrgScope(things, "org-a")
    for statement in (scope.select(), scope.update().values(id="x"), scope.delete()):
        assert "things.org_id = 'org-a'" in sql(statement)


def test_a_scoped_insert_cannot_write_into_another_org() -> None:
    scope = OrgScope(things, "org-a")
    assert "'org-a'" in sql(scope.insert(id="t1"))
    with pytest.raises(ValueError, match="another org"):
        scope.insert(id="t1", org_id="org-b")


def test_a_table_without_org_id_cannot_be_scoped() -> None:
    plain = sa.Table("plain", sa.MetaData(), sa.Column("id", sa.Text))
    with pytest.raises(ValueError, match="no org_id"):
        OrgScope(plain, "org-a")
    with pytest.raises(ValueError, match="no org_id"):
        OrgTemplate(plain)


def test_a_template_statement_takes_its_org_when_run_and_cannot_run_without_one() -> None:
    statement = OrgTemplate(things).select(things.c.id)
    compiled = statement.compile(dialect=postgresql.dialect())
    assert "things.org_id = %(org_id)s" in str(compiled)
    assert compiled.construct_params({"org_id": "org-a"})["org_id"] == "org-a"
    with pytest.raises(sa.exc.InvalidRequestError, match="org_id"):
        compiled.construct_params({})


def test_a_template_update_sets_only_its_columns_of_one_row_of_the_org_given_when_run() -> None:
    wide = sa.Table("wide", sa.MetaData(), sa.Column("id", sa.Text), sa.Column("org_id", sa.Text),
                    sa.Column("status", sa.Text), sa.Column("note", sa.Text))
    compiled = OrgTemplate(wide).update_columns(wide.c.id, ["status"]).compile(dialect=postgresql.dialect())
    text = str(compiled)
    set_clause, _, where = text.partition(" WHERE ")
    assert "status=" in set_clause.replace(" ", "")
    assert "org_id" not in set_clause and "note" not in set_clause and "id=" not in set_clause.replace(" ", "")
    assert "wide.org_id = " in where and "wide.id = " in where
    params = compiled.construct_params(OrgTemplate.update_parameters("org-a", "t1", {"status": "done"}))
    assert "org-a" in params.values() and "t1" in params.values() and "done" in params.values()
    with pytest.raises(sa.exc.InvalidRequestError):
        compiled.construct_params({OrgTemplate.NEW_PREFIX + "status": "done"})


class TaskMissing(NotFound):
    pass


@pytest.mark.parametrize(
    ("error", "status"),
    [(TaskMissing("x"), 404), (Conflict("x"), 409), (PermissionDenied("x"), 403),
     (InvalidRequest("x"), 422), (Unauthorized("x"), 401), (RuntimeError("x"), 500)],
)
def test_error_kinds_map_to_statuses(error: Exception, status: int) -> None:
    assert status_for(error) == status


def test_subscribing_to_a_type_outside_the_catalog_fails_at_start_up() -> None:
    subs = Subscriptions()
    with pytest.raises(UnknownEventType):
        subs.on("stayops.nothing.happened")(lambda ctx, event: None)  # type: ignore[arg-type,return-value]


def test_a_type_has_one_handler() -> None:
    subs = Subscriptions()

    async def handler(ctx: object, event: object) -> None:
        return None

    subs.on("stayops.task.created")(handler)
    with pytest.raises(ValueError, match="already has a handler"):
        subs.on("stayops.task.created")(handler)
    assert subs.topics == ["stayops.tasks"]


versioned = sa.Table("versioned", sa.MetaData(), sa.Column("org_id", sa.Text), sa.Column("id", sa.Text),
                     sa.Column("value", sa.Text), sa.Column("as_of", sa.Integer))


def test_upsert_newest_writes_into_the_org_and_never_over_a_newer_row() -> None:
    statement = sql(OrgScope(versioned, "org-a").upsert_newest([{"id": "x", "value": "v", "as_of": 2}],
                                                               key=["id"], version="as_of"))
    assert "ON CONFLICT (org_id, id) DO UPDATE SET value = excluded.value, as_of = excluded.as_of" in statement
    assert "WHERE versioned.as_of <= excluded.as_of" in statement
    assert "'org-a'" in statement
    with pytest.raises(ValueError, match="another org"):
        OrgScope(versioned, "org-a").upsert_newest([{"id": "x", "org_id": "org-b", "as_of": 1}],
                                                   key=["id"], version="as_of")
