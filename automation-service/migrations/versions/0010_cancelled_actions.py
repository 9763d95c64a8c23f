"""An automated action whose task was withdrawn (its run cancelled) is `cancelled`.

Revision ID: 0010_cancelled_actions
Revises: 0009_event_history
"""

from alembic import op

revision = "0010_cancelled_actions"
down_revision = "0009_event_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("automated_actions_status", "automated_actions", type_="check")
    op.create_check_constraint("automated_actions_status", "automated_actions",
                               "status IN ('pending', 'succeeded', 'failed', 'cancelled')")


def downgrade() -> None:
    op.drop_constraint("automated_actions_status", "automated_actions", type_="check")
    op.create_check_constraint("automated_actions_status", "automated_actions",
                               "status IN ('pending', 'succeeded', 'failed')")
