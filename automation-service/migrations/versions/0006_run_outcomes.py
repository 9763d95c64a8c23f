"""The runs an execution started and waits for: an execution that started a workflow
succeeds or fails when its runs end, not when it asked for them.

Revision ID: 0006_run_outcomes
Revises: 0005_event_automations
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_run_outcomes"
down_revision = "0005_event_automations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "automation_execution_runs",
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("execution_id", sa.Text, sa.ForeignKey("automation_executions.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("run_id", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("org_id", "request_id"),
    )
    # What the scheduler looks up: requests no run has answered yet.
    op.create_index("automation_execution_runs_unanswered", "automation_execution_runs", ["requested_at"],
                    postgresql_where=sa.text("status = 'requested'"))
    op.create_index("automation_execution_runs_run", "automation_execution_runs", ["org_id", "run_id"],
                    postgresql_where=sa.text("run_id IS NOT NULL"))
    op.create_index("automation_execution_runs_execution", "automation_execution_runs", ["execution_id"])


def downgrade() -> None:
    op.drop_table("automation_execution_runs")
