"""Alembic environment of automation-service."""

from automation_service.store import metadata
from stayops_kit.migrations import run_env

run_env(metadata)
