"""Trace context: the outbox keeps each event's W3C traceparent.

Revision ID: 0008_trace_context
Revises: 0007_run_branch
"""

from alembic import op

from stayops_kit.migrations import add_trace_context

revision = "0008_trace_context"
down_revision = "0007_run_branch"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_trace_context(op.get_bind())


def downgrade() -> None:
    op.execute("ALTER TABLE outbox DROP COLUMN IF EXISTS traceparent")
