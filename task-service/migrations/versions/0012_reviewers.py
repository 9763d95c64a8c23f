"""Reviewers: people who may decide a task besides its assignee (a decision escalated
by adding a reviewer), and the inbox's lookup of them.

Revision ID: 0012_reviewers
Revises: 0011_sla_views
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0012_reviewers"
down_revision = "0011_sla_views"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("reviewers", pg.ARRAY(sa.Text), nullable=False, server_default="{}"))
    op.create_index("tasks_reviewers", "tasks", ["reviewers"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("tasks_reviewers", table_name="tasks")
    op.drop_column("tasks", "reviewers")
