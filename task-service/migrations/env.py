"""Alembic environment of task-service."""

from stayops_kit.migrations import run_env
from task_service.store import metadata

run_env(metadata)
