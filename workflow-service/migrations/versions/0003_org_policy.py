"""The org policy read model: the price guardrails a decision is bounded by.

Revision ID: 0003_org_policy
Revises: 0002
"""

from alembic import op

from stayops_kit.policies import create_org_policies_table

revision = "0003_org_policy"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_org_policies_table(op.get_bind())


def downgrade() -> None:
    op.drop_table("org_policies")
