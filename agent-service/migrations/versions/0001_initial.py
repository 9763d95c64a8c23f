"""Messaging tables, agent profiles, agent activity and the synced read model.

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
        "agent_profiles",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("role_id", sa.Text, nullable=False),
        sa.Column("skills", pg.JSONB, nullable=False),
        sa.Column("autonomy", sa.Text, nullable=False),
        sa.Column("confidence_threshold", sa.Numeric(3, 2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("autonomy IN ('suggest', 'act')", name="agent_profiles_autonomy"),
        sa.CheckConstraint("confidence_threshold BETWEEN 0 AND 1", name="agent_profiles_threshold"),
    )
    op.create_index("agent_profiles_role", "agent_profiles", ["org_id", "role_id"])
    op.create_table(
        "agent_activity",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("agent_user_id", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("task_id", sa.Text),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("details", pg.JSONB, nullable=False),
    )
    op.create_index("agent_activity_org_agent_at", "agent_activity",
                    ["org_id", "agent_user_id", sa.text("at DESC"), "id"])
    op.create_index("agent_activity_org_task", "agent_activity", ["org_id", "task_id"],
                    postgresql_where=sa.text("task_id IS NOT NULL"))
    op.create_table(
        "listings",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("listing_id", sa.Text, primary_key=True),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("city", sa.Text, nullable=False),
        sa.Column("country", sa.Text),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("bedrooms", sa.Integer),
        sa.Column("base_price", sa.Numeric(12, 2), nullable=False),
        sa.Column("min_price", sa.Numeric(12, 2)),
        sa.Column("max_price", sa.Numeric(12, 2)),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "reservations",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("reservation_id", sa.Text, primary_key=True),
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("check_in", sa.Date, nullable=False),
        sa.Column("check_out", sa.Date, nullable=False),
        sa.Column("guests", sa.Integer, nullable=False),
        sa.Column("nightly_rate", sa.Numeric(12, 2), nullable=False),
        sa.Column("total", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("booked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True)),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("reservations_org_listing_check_in", "reservations",
                    ["org_id", "listing_id", "check_in"])


def downgrade() -> None:
    op.drop_table("reservations")
    op.drop_table("listings")
    op.drop_table("agent_activity")
    op.drop_table("agent_profiles")
