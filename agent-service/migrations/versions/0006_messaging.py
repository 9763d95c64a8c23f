"""Messaging tables: per-row relay retries and parking, pruning indexes, inbox
identity by (source, id).

Revision ID: 0006_messaging
Revises: 0005_governance
"""

from alembic import op

from stayops_kit.migrations import upgrade_messaging_tables

revision = "0006_messaging"
down_revision = "0005_governance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_messaging_tables(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("the messaging tables are not downgraded")
