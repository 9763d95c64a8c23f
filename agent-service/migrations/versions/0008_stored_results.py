"""Stored results (claim check): a result too big for an event is kept here and the
event carries its id, digest and summary; GET /v1/results/{id} serves it.

Revision ID: 0008_stored_results
Revises: 0007_event_history
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0008_stored_results"
down_revision = "0007_event_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_results",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("summary", pg.JSONB, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("stored_results_task", "stored_results", ["org_id", "task_id"])


def downgrade() -> None:
    op.drop_table("stored_results")
