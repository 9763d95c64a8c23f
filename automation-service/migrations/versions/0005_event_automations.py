"""Event automations and schedule policies: their filter, dedupe and debounce keys and actions; event
executions (the event, the filter's value, each action's outcome, once per dedupe
key); the tasks they asked for, by link; the listings whose time zone plans local
times; the reservations conditions read; a schedule's overlap policy and catch-up window, and the run each firing asked
for.

Revision ID: 0005_event_automations
Revises: 0004_messaging
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0005_event_automations"
down_revision = "0004_messaging"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("automations", sa.Column("filter", sa.Text))
    op.add_column("automations", sa.Column("dedupe_key", sa.Text))
    op.add_column("automations", sa.Column("debounce_s", sa.Integer, nullable=False, server_default="0"))
    op.add_column("automations", sa.Column("debounce_key", sa.Text))
    op.add_column("automations", sa.Column("actions", pg.JSONB, nullable=False, server_default="[]"))
    op.add_column("automations", sa.Column("overlap", sa.Text, nullable=False, server_default="skip"))
    op.add_column("automations", sa.Column("catch_up_s", sa.Integer))
    op.add_column("automations", sa.Column("condition_held", sa.Boolean))
    op.create_index("automations_conditions_due", "automations", ["next_fire_at"],
                    postgresql_where=sa.text("is_active AND kind = 'conditional'"))
    op.create_table(
        "automation_reservations",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("reservation_id", sa.Text, primary_key=True),
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.Column("check_in", sa.Date, nullable=False),
        sa.Column("check_out", sa.Date, nullable=False),
        sa.Column("cancelled", sa.Boolean, nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("automation_executions", sa.Column("run_id", sa.Text))
    op.add_column("automation_executions", sa.Column("run_status", sa.Text))
    op.create_index("automation_executions_open_runs", "automation_executions", ["automation_id", "run_status"],
                    postgresql_where=sa.text("run_status IN ('buffered', 'requested', 'running', 'waiting')"))
    op.create_index("automation_executions_run", "automation_executions", ["org_id", "run_id"],
                    postgresql_where=sa.text("run_id IS NOT NULL"))
    op.create_index("automations_org_active_event", "automations", ["org_id"],
                    postgresql_where=sa.text("is_active AND kind = 'event'"))
    for name in ("event_id", "event_type", "dedupe_key", "debounce_key"):
        op.add_column("automation_executions", sa.Column(name, sa.Text))
    op.add_column("automation_executions", sa.Column("filter_value", pg.JSONB))
    op.add_column("automation_executions",
                  sa.Column("action_outcomes", pg.JSONB, nullable=False, server_default="[]"))
    op.drop_constraint("automation_executions_trigger", "automation_executions")
    op.create_check_constraint("automation_executions_trigger", "automation_executions",
                               "trigger IN ('schedule', 'manual', 'event', 'condition')")
    op.create_unique_constraint("automation_executions_once_per_key", "automation_executions",
                                ["automation_id", "dedupe_key"])
    op.create_index("automation_executions_debounce", "automation_executions",
                    ["automation_id", "debounce_key", sa.text("started_at DESC")],
                    postgresql_where=sa.text("debounce_key IS NOT NULL"))
    op.create_table(
        "automation_task_links",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("link", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("automation_id", sa.Text, nullable=False),
        sa.Column("execution_id", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('open', 'cancelled')", name="automation_task_links_status"),
    )
    op.create_table(
        "automation_listings",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("listing_id", sa.Text, primary_key=True),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("city", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("automation_reservations")
    op.drop_index("automations_conditions_due", "automations")
    op.drop_table("automation_listings")
    op.drop_table("automation_task_links")
    op.drop_index("automation_executions_run", "automation_executions")
    op.drop_index("automation_executions_open_runs", "automation_executions")
    op.drop_index("automation_executions_debounce", "automation_executions")
    op.drop_constraint("automation_executions_once_per_key", "automation_executions")
    op.drop_constraint("automation_executions_trigger", "automation_executions")
    op.create_check_constraint("automation_executions_trigger", "automation_executions",
                               "trigger IN ('schedule', 'manual')")
    for name in ("run_status", "run_id", "action_outcomes", "filter_value", "debounce_key", "dedupe_key", "event_type", "event_id"):
        op.drop_column("automation_executions", name)
    op.drop_index("automations_org_active_event", "automations")
    for name in ("condition_held", "catch_up_s", "overlap", "actions", "debounce_key", "debounce_s", "dedupe_key", "filter"):
        op.drop_column("automations", name)
