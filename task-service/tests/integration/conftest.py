"""A running task-service (migrations, relay, consumer) on a fresh database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from stayops_kit.settings import ServiceSettings
from stayops_kit.testing import app_client
from task_service.app import create_app


@pytest.fixture
async def service(stack: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any, str]]:
    url = await stack.create_database(f"task_{uuid.uuid4().hex[:10]}")
    settings = ServiceSettings(
        service_name="task-service",
        database_url=url,
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        jwt_public_key_file=stack.jwt_public_key_file,
        relay_poll_interval_s=0.2,
    )
    app = create_app(settings=settings)
    async with app_client(app) as client:
        yield client, app.state.runtime, url
