"""Alembic environment of workflow-service."""

from stayops_kit.migrations import run_env
from workflow_service.store import metadata

run_env(metadata)
