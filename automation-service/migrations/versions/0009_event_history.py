"""Event history: the inbox keeps each event's time, correlation, cause and attempts;
the outbox and inbox are indexed by what GET /v1/events filters on.

Revision ID: 0009_event_history
Revises: 0008_listing_segments
"""

from alembic import op

from stayops_kit.migrations import add_event_history

revision = "0009_event_history"
down_revision = "0008_listing_segments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_event_history(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("the event history columns are not downgraded")
