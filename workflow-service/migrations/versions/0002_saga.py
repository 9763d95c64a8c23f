"""The saga engine: run state and outcome, runs of built-in definitions, durable timers.

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
    # A run of a built-in definition points at the built-in's row, not at its own org's.
    op.add_column("workflow_runs", sa.Column("definition_org_id", sa.Text))
    op.execute("UPDATE workflow_runs SET definition_org_id = org_id")
    op.alter_column("workflow_runs", "definition_org_id", nullable=False)
    op.drop_constraint("workflow_runs_definition_fkey", "workflow_runs", type_="foreignkey")
    op.create_foreign_key(
        "workflow_runs_definition_fkey", "workflow_runs", "workflow_definitions",
        ["definition_org_id", "workflow_key", "workflow_version"], ["org_id", "key", "version"],
    )
    op.add_column("workflow_runs", sa.Column("state", pg.JSONB, nullable=False,
                                             server_default=sa.text("'{}'::jsonb")))
    op.add_column("workflow_runs", sa.Column("result", pg.JSONB))
    op.add_column("workflow_runs", sa.Column("compensated", sa.Boolean))
    op.add_column("workflow_runs", sa.Column("failure_reason", sa.Text))
    op.create_table(
        "timers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("run_id", sa.Text, sa.ForeignKey("workflow_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("step", sa.Text, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True)),
    )
    op.create_index("timers_due", "timers", ["due_at"], postgresql_where=sa.text("fired_at IS NULL"))
    op.create_index("timers_org_run", "timers", ["org_id", "run_id"])


def downgrade() -> None:
    op.drop_table("timers")
    for column in ("failure_reason", "compensated", "result", "state"):
        op.drop_column("workflow_runs", column)
    op.drop_constraint("workflow_runs_definition_fkey", "workflow_runs", type_="foreignkey")
    op.create_foreign_key(
        "workflow_runs_definition_fkey", "workflow_runs", "workflow_definitions",
        ["org_id", "workflow_key", "workflow_version"], ["org_id", "key", "version"],
    )
    op.drop_column("workflow_runs", "definition_org_id")
