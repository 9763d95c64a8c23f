"""Each AI agent's standing as agent-service last announced it (skills, autonomy,
its own and its org's kill switch), read by the assignment rule.

Revision ID: 0007_agent_governance
Revises: 0006_messaging
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0007_agent_governance"
down_revision = "0006_messaging"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_standing",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("skills", pg.JSONB, nullable=False),
        sa.Column("autonomy", sa.Text, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("org_paused", sa.Boolean, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agent_standing")
