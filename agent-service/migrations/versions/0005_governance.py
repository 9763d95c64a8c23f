"""Agents an owner governs: autonomy `suggest` | `act_within_limits` | `off`, a pause
per agent and per org, work held while its agent is paused, and which run's sync
each listing's data came with (a pricing task waits for its own run's).

Revision ID: 0005_governance
Revises: 0004_pricing_v2
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_governance"
down_revision = "0004_pricing_v2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("agent_profiles_autonomy", "agent_profiles", type_="check")
    op.execute("UPDATE agent_profiles SET autonomy = 'act_within_limits' WHERE autonomy = 'act'")
    op.create_check_constraint("agent_profiles_autonomy", "agent_profiles",
                               "autonomy IN ('suggest', 'act_within_limits', 'off')")
    op.add_column("agent_profiles", sa.Column("paused_at", sa.DateTime(timezone=True)))
    op.create_table(
        "org_agent_pauses",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paused_by", sa.Text, nullable=False),
    )
    op.add_column("agent_work", sa.Column("assignee", sa.Text))
    op.execute("UPDATE agent_work SET assignee = assignment->>'assigned_to'")
    op.create_table(
        "listing_syncs",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("listing_id", sa.Text, primary_key=True),
        sa.Column("correlation_id", sa.Text, primary_key=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("listing_syncs")
    op.drop_column("agent_work", "assignee")
    op.drop_table("org_agent_pauses")
    op.drop_column("agent_profiles", "paused_at")
    op.drop_constraint("agent_profiles_autonomy", "agent_profiles", type_="check")
    op.execute("UPDATE agent_profiles SET autonomy = 'act' WHERE autonomy = 'act_within_limits'")
    op.execute("UPDATE agent_profiles SET autonomy = 'suggest' WHERE autonomy = 'off'")
    op.create_check_constraint("agent_profiles_autonomy", "agent_profiles", "autonomy IN ('suggest', 'act')")
