"""Who created each automated task (side effects only for a workflow's), notifications
for a role as well as for a user, and the org policy read model whose price
guardrails are checked before publishing.

Revision ID: 0003_guard
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from stayops_kit.policies import create_org_policies_table

revision = "0003_guard"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("automated_actions", sa.Column("created_by", sa.Text))
    op.add_column("notifications", sa.Column("role_id", sa.Text))
    op.alter_column("notifications", "user_id", nullable=True)
    op.create_check_constraint("notifications_for_someone", "notifications",
                               "user_id IS NOT NULL OR role_id IS NOT NULL")
    op.create_index("notifications_org_role_created", "notifications",
                    ["org_id", "role_id", sa.text("created_at DESC")],
                    postgresql_where=sa.text("role_id IS NOT NULL"))
    create_org_policies_table(op.get_bind())


def downgrade() -> None:
    op.drop_table("org_policies")
    op.drop_index("notifications_org_role_created", "notifications")
    op.drop_constraint("notifications_for_someone", "notifications")
    op.execute("DELETE FROM notifications WHERE user_id IS NULL")
    op.alter_column("notifications", "user_id", nullable=False)
    op.drop_column("notifications", "role_id")
    op.drop_column("automated_actions", "created_by")
