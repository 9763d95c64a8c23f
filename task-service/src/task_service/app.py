"""task-service bootstrap: the spec, the app, the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from stayops_kit.app import create_app as create_service_app
from stayops_kit.app import serve
from stayops_kit.runtime import ServiceSpec
from task_service import api, consumers, timers

NAME = "task-service"
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def spec() -> ServiceSpec:
    return ServiceSpec(name=NAME, migrations_dir=MIGRATIONS_DIR, subscriptions=consumers.subscriptions(),
                       background=(timers.fire_due_timers,))


def create_app(**overrides: Any) -> FastAPI:
    return create_service_app(spec(), routers=[api.router], title="StayOps task-service", **overrides)


def main() -> None:
    serve(create_app, NAME)
