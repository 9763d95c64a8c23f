"""Alembic environment of agent-service."""

from agent_service.store import metadata
from stayops_kit.migrations import run_env

run_env(metadata)
