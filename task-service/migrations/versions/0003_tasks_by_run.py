"""Index tasks by workflow run: a run's tasks are listed for its timeline.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("tasks_org_run", "tasks", ["org_id", "workflow_run_id"],
                    postgresql_where=sa.text("workflow_run_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("tasks_org_run", table_name="tasks")
