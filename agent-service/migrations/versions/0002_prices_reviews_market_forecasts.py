"""Nightly prices, reviews and market rates in the read model; the last pricing
forecast per listing.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nightly_prices",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("listing_id", sa.Text, primary_key=True),
        sa.Column("date", sa.Date, primary_key=True),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "reviews",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("review_id", sa.Text, primary_key=True),
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("reservation_id", sa.Text),
        sa.Column("rating", sa.SmallInteger, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name="reviews_rating"),
    )
    op.create_index("reviews_org_listing", "reviews", ["org_id", "listing_id"])
    op.create_table(
        "market_rates",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("date", sa.Date, primary_key=True),
        sa.Column("median_price", sa.Numeric(12, 2), nullable=False),
        sa.Column("occupancy", sa.Float, nullable=False),
        sa.Column("sample_size", sa.Integer),
        sa.Column("local_event", sa.Text),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("occupancy BETWEEN 0 AND 1", name="market_rates_occupancy"),
    )
    op.create_table(
        "pricing_forecasts",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("listing_id", sa.Text, primary_key=True),
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("produced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("nights", pg.JSONB, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pricing_forecasts")
    op.drop_table("market_rates")
    op.drop_table("reviews")
    op.drop_table("nightly_prices")
