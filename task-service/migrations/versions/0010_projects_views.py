"""Projects with milestones, dependencies between tasks, and what the list views
query: a task's project, milestone and listing, a full-text search vector (title,
description and comments), a priority rank to sort by, and keyset indexes.

Revision ID: 0010_projects_views
Revises: 0009_task_product
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0010_projects_views"
down_revision = "0009_task_product"
branch_labels = None
depends_on = None

PRIORITY_RANK = "CASE priority WHEN 'low' THEN 1 WHEN 'medium' THEN 2 WHEN 'high' THEN 3 ELSE 4 END"
SEARCH = ("setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
          "setweight(to_tsvector('english', coalesce(description, '')), 'B')")


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("owner_user_id", sa.Text),
        sa.Column("listing_id", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("start_date", sa.Date),
        sa.Column("target_date", sa.Date),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("projects_org_created", "projects", ["org_id", "created_at", "id"])
    op.create_table(
        "milestones",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("org_id", sa.Text, nullable=False),
        sa.Column("project_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("target_date", sa.Date),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("milestones_project", "milestones", ["org_id", "project_id", "target_date"])
    op.create_table(
        "task_dependencies",
        sa.Column("org_id", sa.Text, primary_key=True),
        sa.Column("task_id", sa.Text, primary_key=True),
        sa.Column("blocker_id", sa.Text, primary_key=True),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("task_dependencies_blocker", "task_dependencies", ["org_id", "blocker_id"])
    op.add_column("tasks", sa.Column("project_id", sa.Text))
    op.add_column("tasks", sa.Column("milestone_id", sa.Text))
    op.add_column("tasks", sa.Column("listing_id", sa.Text))
    op.add_column("tasks", sa.Column("search", pg.TSVECTOR))
    op.add_column("tasks", sa.Column("priority_rank", sa.SmallInteger, sa.Computed(PRIORITY_RANK, persisted=True)))
    op.execute("UPDATE tasks SET listing_id = data->>'listing_id' WHERE jsonb_typeof(data->'listing_id') = 'string'")
    op.execute(f"UPDATE tasks SET search = {SEARCH} || to_tsvector('english', coalesce((SELECT string_agg(body, ' ') "
               "FROM task_comments c WHERE c.org_id = tasks.org_id AND c.task_id = tasks.id), ''))")
    op.create_index("tasks_org_project", "tasks", ["org_id", "project_id", "milestone_id"],
                    postgresql_where=sa.text("project_id IS NOT NULL"))
    op.create_index("tasks_org_listing", "tasks", ["org_id", "listing_id"],
                    postgresql_where=sa.text("listing_id IS NOT NULL"))
    op.create_index("tasks_search", "tasks", ["search"], postgresql_using="gin")
    # Keyset pages: each sort key with the id, in one direction (read backwards for `-key`).
    op.drop_index("tasks_org_created", "tasks")
    op.create_index("tasks_org_created", "tasks", ["org_id", "created_at", "id"])
    op.create_index("tasks_org_updated", "tasks", ["org_id", "updated_at", "id"])
    op.create_index("tasks_org_priority", "tasks", ["org_id", "priority_rank", "id"])
    op.execute("CREATE INDEX tasks_org_due ON tasks (org_id, (coalesce(due_at, 'infinity'::timestamptz)), id)")


def downgrade() -> None:
    for index in ("tasks_org_due", "tasks_org_priority", "tasks_org_updated", "tasks_org_created", "tasks_search",
                  "tasks_org_listing", "tasks_org_project"):
        op.drop_index(index, "tasks")
    op.create_index("tasks_org_created", "tasks", ["org_id", sa.text("created_at DESC"), "id"])
    for column in ("priority_rank", "search", "listing_id", "milestone_id", "project_id"):
        op.drop_column("tasks", column)
    op.drop_table("task_dependencies")
    op.drop_table("milestones")
    op.drop_table("projects")
