"""Tasks remember who they were assigned to (person or AI agent), by which rule,
and why they failed or are blocked.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("assignee_type", sa.Text))
    op.add_column("tasks", sa.Column("assignment_rule", sa.Text))
    op.add_column("tasks", sa.Column("status_reason", sa.Text))
    op.create_index("directory_members_role_active", "directory_members",
                    ["org_id", "role_id", "user_id"], postgresql_where=sa.text("active"))


def downgrade() -> None:
    op.drop_index("directory_members_role_active", table_name="directory_members")
    op.drop_column("tasks", "status_reason")
    op.drop_column("tasks", "assignment_rule")
    op.drop_column("tasks", "assignee_type")
