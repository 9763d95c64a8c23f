"""Pricing v2: a listing's time zone and minimum stay; forecasts kept per run and
per night (a weekly run no longer overwrites the one its review reads).

Revision ID: 0004_pricing_v2
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_pricing_v2"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("listings", sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"))
    op.add_column("listings", sa.Column("min_stay", sa.Integer))
    op.create_table(
        "pricing_forecast_nights",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("task_id", sa.Text, primary_key=True),
        sa.Column("listing_id", sa.Text, primary_key=True),
        sa.Column("date", sa.Date, primary_key=True),
        sa.Column("agent_user_id", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text),
        sa.Column("produced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("current_price", sa.Numeric(12, 2), nullable=False),
        sa.Column("recommended_price", sa.Numeric(12, 2), nullable=False),
        sa.Column("change_pct", sa.Float, nullable=False),
        sa.Column("expected_occupancy", sa.Float, nullable=False),
    )
    op.create_index("pricing_forecast_nights_run", "pricing_forecast_nights", ["org_id", "run_id"])
    op.create_index("pricing_forecast_nights_agent_date", "pricing_forecast_nights",
                    ["org_id", "agent_user_id", "date"])
    # The last forecast of each listing survives as a forecast of its task, with no
    # known agent or price before it.
    op.execute("""
        INSERT INTO pricing_forecast_nights (org_id, task_id, listing_id, date, agent_user_id, run_id,
                                             produced_at, currency, current_price, recommended_price,
                                             change_pct, expected_occupancy)
        SELECT f.org_id, f.task_id, f.listing_id, (n->>'date')::date, '', NULL, f.produced_at, f.currency,
               (n->>'recommended_price')::numeric, (n->>'recommended_price')::numeric,
               (n->>'change_pct')::float, (n->>'expected_occupancy')::float
        FROM pricing_forecasts f, jsonb_array_elements(f.nights) n
        ON CONFLICT DO NOTHING
    """)
    op.drop_table("pricing_forecasts")


def downgrade() -> None:
    raise NotImplementedError("forecasts per run cannot be folded back into one per listing")
