"""Who completed, decided or failed each task, and the org policy read model that
checks a decider's edited prices.

Revision ID: 0004_guard
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from stayops_kit.policies import create_org_policies_table

revision = "0004_guard"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("completed_by", sa.Text))
    create_org_policies_table(op.get_bind())


def downgrade() -> None:
    op.drop_table("org_policies")
    op.drop_column("tasks", "completed_by")
