"""Messaging tables, automations, their executions and the automated task queue.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from stayops_kit.migrations import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables(op.get_bind())
    op.create_table(
        "automations",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("cron", sa.Text),
        sa.Column("timezone", sa.Text),
        sa.Column("event_type", sa.Text),
        sa.Column("condition", pg.JSONB),
        sa.Column("action", pg.JSONB, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('scheduled', 'event', 'conditional')", name="automations_kind"),
    )
    op.create_index("automations_org_created", "automations", ["org_id", "created_at", "id"])
    op.create_index("automations_active_kind", "automations", ["kind", "event_type"],
                    postgresql_where=sa.text("is_active"))
    op.create_table(
        "automation_executions",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("automation_id", sa.Text, sa.ForeignKey("automations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.Text),
        sa.Column("error", sa.Text),
        sa.CheckConstraint("outcome IN ('success', 'failure')", name="automation_executions_outcome"),
    )
    op.create_index("automation_executions_org_automation", "automation_executions",
                    ["org_id", "automation_id", sa.text("started_at DESC")])
    op.create_table(
        "automated_task_queue",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("task_id", sa.Text, primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("data", pg.JSONB, nullable=False),
        sa.Column("workflow_run_id", sa.Text),
        sa.Column("workflow_step", sa.Text),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("automated_task_queue_received", "automated_task_queue", ["received_at"])


def downgrade() -> None:
    op.drop_table("automated_task_queue")
    op.drop_table("automation_executions")
    op.drop_table("automations")
