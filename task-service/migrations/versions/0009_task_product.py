"""The task product: a version per task (ETag), labels, required subtasks, the
per-task history, comments and watchers; indexes for the queues and subtasks.

Revision ID: 0009_task_product
Revises: 0008_event_history
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0009_task_product"
down_revision = "0008_event_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.add_column("tasks", sa.Column("labels", pg.ARRAY(sa.Text), nullable=False, server_default="{}"))
    op.add_column("tasks", sa.Column("required", sa.Boolean, nullable=False, server_default=sa.true()))
    op.create_index("tasks_org_parent", "tasks", ["org_id", "parent_task_id"],
                    postgresql_where=sa.text("parent_task_id IS NOT NULL"))
    op.create_index("tasks_org_department_status", "tasks", ["org_id", "department_id", "status"],
                    postgresql_where=sa.text("assigned_to IS NULL"))
    op.create_index("tasks_labels", "tasks", ["labels"], postgresql_using="gin")
    op.create_table(
        "task_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("actor_type", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("changes", pg.JSONB, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("task_history_task", "task_history", ["org_id", "task_id", "id"])
    op.create_table(
        "task_comments",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("mentions", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("task_comments_task", "task_comments", ["org_id", "task_id", "created_at", "id"])
    op.create_table(
        "task_watchers",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("task_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("task_watchers")
    op.drop_table("task_comments")
    op.drop_table("task_history")
    op.drop_index("tasks_labels", "tasks")
    op.drop_index("tasks_org_department_status", "tasks")
    op.drop_index("tasks_org_parent", "tasks")
    for column in ("required", "labels", "version"):
        op.drop_column("tasks", column)
