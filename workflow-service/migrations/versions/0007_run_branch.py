"""A run that is a parallel step's branch names it (`<step>/<branch>`, repeated for a
branch of a branch): its definition is that branch of its workflow version.

Revision ID: 0007_run_branch
Revises: 0006_run_lifecycle
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_run_branch"
down_revision = "0006_run_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workflow_runs", sa.Column("branch", sa.Text))


def downgrade() -> None:
    op.drop_column("workflow_runs", "branch")
