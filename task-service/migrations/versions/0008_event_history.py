"""Event history: the inbox keeps each event's time, correlation, cause and attempts;
the outbox and inbox are indexed by what GET /v1/events filters on.

Revision ID: 0008_event_history
Revises: 0007_agent_governance
"""

from alembic import op

from stayops_kit.migrations import add_event_history

revision = "0008_event_history"
down_revision = "0007_agent_governance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_event_history(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("the event history columns are not downgraded")
