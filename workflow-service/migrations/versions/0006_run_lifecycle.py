"""Run lifecycle: the concurrency key overlapping runs share, the parent of a child
run, and the indexes GET /v1/runs filters on.

Revision ID: 0006_run_lifecycle
Revises: 0005_event_history
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_run_lifecycle"
down_revision = "0005_event_history"
branch_labels = None
depends_on = None

_OPEN = "status IN ('queued', 'running', 'waiting', 'paused')"


def upgrade() -> None:
    op.add_column("workflow_runs", sa.Column("concurrency_key", sa.Text))
    op.add_column("workflow_runs", sa.Column("parent_run_id", sa.Text))
    op.create_foreign_key("workflow_runs_parent_run_id_fkey", "workflow_runs", "workflow_runs",
                          ["parent_run_id"], ["id"], ondelete="SET NULL")
    op.create_index("workflow_runs_org_key_started", "workflow_runs",
                    ["org_id", "workflow_key", sa.text("started_at DESC"), "id"])
    op.create_index("workflow_runs_org_started_by", "workflow_runs",
                    ["org_id", "started_by", sa.text("started_at DESC")])
    op.create_index("workflow_runs_parameters", "workflow_runs", ["parameters"], postgresql_using="gin",
                    postgresql_ops={"parameters": "jsonb_path_ops"})
    op.create_index("workflow_runs_open_key", "workflow_runs",
                    ["org_id", "workflow_key", "concurrency_key", "started_at"], postgresql_where=sa.text(_OPEN))
    op.create_index("workflow_runs_parent", "workflow_runs", ["org_id", "parent_run_id"],
                    postgresql_where=sa.text("parent_run_id IS NOT NULL"))


def downgrade() -> None:
    for index in ("workflow_runs_parent", "workflow_runs_open_key", "workflow_runs_parameters",
                  "workflow_runs_org_started_by", "workflow_runs_org_key_started"):
        op.drop_index(index, table_name="workflow_runs")
    op.drop_constraint("workflow_runs_parent_run_id_fkey", "workflow_runs", type_="foreignkey")
    op.drop_column("workflow_runs", "parent_run_id")
    op.drop_column("workflow_runs", "concurrency_key")
