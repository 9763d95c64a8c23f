"""Schedules (next fire time, one execution per scheduled time), the actions of
automated tasks in place of the bare queue, and notifications.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("automations", sa.Column("next_fire_at", sa.DateTime(timezone=True)))
    op.create_index("automations_due", "automations", ["next_fire_at"],
                    postgresql_where=sa.text("is_active AND kind = 'scheduled'"))
    op.add_column("automation_executions", sa.Column("scheduled_for", sa.DateTime(timezone=True)))
    op.add_column("automation_executions",
                  sa.Column("trigger", sa.Text, nullable=False, server_default="schedule"))
    op.add_column("automation_executions",
                  sa.Column("skipped_runs", sa.Integer, nullable=False, server_default="0"))
    op.create_check_constraint("automation_executions_trigger", "automation_executions",
                               "trigger IN ('schedule', 'manual')")
    op.create_unique_constraint("automation_executions_once_per_time", "automation_executions",
                                ["automation_id", "scheduled_for"])
    op.drop_table("automated_task_queue")
    op.create_table(
        "automated_actions",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("task_id", sa.Text, primary_key=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("data", pg.JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("workflow_run_id", sa.Text),
        sa.Column("workflow_step", sa.Text),
        sa.Column("correlation_id", sa.Text),
        sa.Column("awaiting", pg.JSONB, nullable=False),
        sa.Column("answers", pg.JSONB, nullable=False),
        sa.Column("result", pg.JSONB),
        sa.Column("error", sa.Text),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="automated_actions_status"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("task_id", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("org_id", "task_id", name="notifications_once_per_task"),
    )
    op.create_index("notifications_org_user_created", "notifications",
                    ["org_id", "user_id", sa.text("created_at DESC")])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("automated_actions")
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
    op.drop_constraint("automation_executions_once_per_time", "automation_executions")
    op.drop_constraint("automation_executions_trigger", "automation_executions")
    op.drop_column("automation_executions", "skipped_runs")
    op.drop_column("automation_executions", "trigger")
    op.drop_column("automation_executions", "scheduled_for")
    op.drop_index("automations_due", "automations")
    op.drop_column("automations", "next_fire_at")
