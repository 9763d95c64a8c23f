"""Messaging tables, tasks and the org directory read model.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from stayops_kit.migrations import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables(op.get_bind())
    op.create_table(
        "tasks",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("task_type", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("priority", sa.Text, nullable=False),
        sa.Column("department_id", sa.Text),
        sa.Column("role_id", sa.Text),
        sa.Column("assigned_to", sa.Text),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("data", pg.JSONB, nullable=False),
        sa.Column("result", pg.JSONB),
        sa.Column("parent_task_id", sa.Text),
        sa.Column("workflow_run_id", sa.Text),
        sa.Column("workflow_step", sa.Text),
        sa.Column("request_id", sa.Text),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("tasks_org_created", "tasks", ["org_id", sa.text("created_at DESC"), "id"])
    op.create_index("tasks_org_assignee_status", "tasks", ["org_id", "assigned_to", "status"])
    op.create_index("tasks_org_role_status", "tasks", ["org_id", "role_id", "status"])
    op.create_index("tasks_request", "tasks", ["org_id", "request_id"], unique=True,
                    postgresql_where=sa.text("request_id IS NOT NULL"))
    op.create_table(
        "directory_members",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("user_type", sa.Text, nullable=False),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("role_id", sa.Text, nullable=False),
        sa.Column("role_name", sa.Text, nullable=False),
        sa.Column("department_id", sa.Text),
        sa.Column("department_name", sa.Text),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    )
    op.create_index("directory_members_role", "directory_members", ["org_id", "role_id"])


def downgrade() -> None:
    op.drop_table("directory_members")
    op.drop_table("tasks")
