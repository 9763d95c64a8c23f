"""Listings keep the owner's segment and tags (a property manager's luxury, standard,
budget), so an event automation's filter can read `listing.segment` and `listing.tags`.

Revision ID: 0008_listing_segments
Revises: 0007_skipped_executions
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0008_listing_segments"
down_revision = "0007_skipped_executions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("automation_listings", sa.Column("segment", sa.Text))
    op.add_column("automation_listings", sa.Column("tags", pg.JSONB, nullable=False, server_default="[]"))


def downgrade() -> None:
    op.drop_column("automation_listings", "tags")
    op.drop_column("automation_listings", "segment")
