"""Messaging tables, workflow definitions, runs and the run log.

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
        "workflow_definitions",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("document", pg.JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.CheckConstraint("version >= 1", name="workflow_definitions_version_positive"),
    )
    op.create_table(
        "workflow_runs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("workflow_key", sa.Text, nullable=False),
        sa.Column("workflow_version", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("current_step", sa.Text),
        sa.Column("parameters", pg.JSONB, nullable=False),
        sa.Column("started_by", sa.Text),
        sa.Column("request_id", sa.Text),
        sa.Column("correlation_id", sa.Text),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id", "workflow_key", "workflow_version"],
            ["workflow_definitions.org_id", "workflow_definitions.key", "workflow_definitions.version"],
            name="workflow_runs_definition_fkey",
        ),
    )
    op.create_index("workflow_runs_org_started", "workflow_runs",
                    ["org_id", sa.text("started_at DESC"), "id"])
    op.create_index("workflow_runs_org_status", "workflow_runs", ["org_id", "status"])
    op.create_index("workflow_runs_request", "workflow_runs", ["org_id", "request_id"], unique=True,
                    postgresql_where=sa.text("request_id IS NOT NULL"))
    op.create_table(
        "run_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("run_id", sa.Text, sa.ForeignKey("workflow_runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("run_log_org_run_at", "run_log", ["org_id", "run_id", "at", "id"])


def downgrade() -> None:
    op.drop_table("run_log")
    op.drop_table("workflow_runs")
    op.drop_table("workflow_definitions")
