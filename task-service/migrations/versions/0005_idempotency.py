"""Idempotency keys of REST creates: a retried POST /v1/tasks answers the task
the first attempt made.

Revision ID: 0005_idempotency
Revises: 0004_guard
"""

from alembic import op

from stayops_kit.idempotency import create_idempotency_table

revision = "0005_idempotency"
down_revision = "0004_guard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_idempotency_table(op.get_bind())


def downgrade() -> None:
    op.drop_table("idempotency_keys")
