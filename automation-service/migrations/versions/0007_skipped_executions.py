"""Skipped executions: an event an automation matched but did not act on (its filter
was false, or a debounce window dropped it) is recorded as `skipped`, with the reason.

Revision ID: 0007_skipped_executions
Revises: 0006_run_outcomes
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_skipped_executions"
down_revision = "0006_run_outcomes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("automation_executions", sa.Column("reason", sa.Text))
    op.drop_constraint("automation_executions_outcome", "automation_executions", type_="check")
    op.create_check_constraint("automation_executions_outcome", "automation_executions",
                               "outcome IN ('success', 'failure', 'skipped')")


def downgrade() -> None:
    op.execute("DELETE FROM automation_executions WHERE outcome = 'skipped'")
    op.drop_constraint("automation_executions_outcome", "automation_executions", type_="check")
    op.create_check_constraint("automation_executions_outcome", "automation_executions",
                               "outcome IN ('success', 'failure')")
    op.drop_column("automation_executions", "reason")
