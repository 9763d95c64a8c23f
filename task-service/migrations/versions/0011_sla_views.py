"""SLAs and the fast views: each org's SLA policy (and a project's own), one durable
due timer per open task with a due time, a milestone's status, and the indexes the
inbox (by due date, per assignee, role queue and department queue), the board
(per status, newest first) and a person's calendar read.

Revision ID: 0011_sla_views
Revises: 0010_projects_views
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0011_sla_views"
down_revision = "0010_projects_views"
branch_labels = None
depends_on = None

DUE = "(coalesce(due_at, 'infinity'::timestamptz))"
OPEN = "status IN ('pending', 'in_progress', 'blocked')"


def upgrade() -> None:
    op.create_table(
        "sla_policies",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("policy", pg.JSONB, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("projects", sa.Column("sla_policy", pg.JSONB))
    op.add_column("milestones", sa.Column("status", sa.Text, nullable=False, server_default="active"))
    op.add_column("milestones", sa.Column("updated_at", sa.DateTime(timezone=True)))
    op.create_table(
        "task_due_timers",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("task_id", sa.Text, primary_key=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        # The offset from due_at of the last stage fired (null: none yet).
        sa.Column("last_offset", sa.Interval),
        sa.Column("fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("armed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("task_due_timers_fire", "task_due_timers", ["fire_at"])
    op.execute(f"CREATE INDEX tasks_inbox_assignee ON tasks (org_id, assigned_to, {DUE}, id) WHERE {OPEN}")
    op.execute(f"CREATE INDEX tasks_inbox_role ON tasks (org_id, role_id, {DUE}, id) "
               f"WHERE {OPEN} AND assigned_to IS NULL")
    op.execute(f"CREATE INDEX tasks_inbox_department ON tasks (org_id, department_id, {DUE}, id) "
               f"WHERE {OPEN} AND assigned_to IS NULL")
    op.execute(f"CREATE INDEX tasks_org_assignee_due ON tasks (org_id, assigned_to, {DUE}, id)")
    op.create_index("tasks_org_status_created", "tasks", ["org_id", "status", "created_at", "id"])


def downgrade() -> None:
    for index in ("tasks_org_status_created", "tasks_org_assignee_due", "tasks_inbox_department",
                  "tasks_inbox_role", "tasks_inbox_assignee"):
        op.drop_index(index, "tasks")
    op.drop_table("task_due_timers")
    op.drop_column("milestones", "updated_at")
    op.drop_column("milestones", "status")
    op.drop_column("projects", "sla_policy")
    op.drop_table("sla_policies")
