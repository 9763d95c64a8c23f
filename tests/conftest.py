"""End-to-end fixtures: the whole system (four service processes and the sync
simulator) on the session's PostgreSQL and Apache Kafka, and solo orgs seeded
through the org-service simulator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stayops_infra.orgsim import OrgRegistry, seed_solo
from stayops_infra.scenario import OrgHandle, PricingClient
from stayops_infra.services import SERVICES
from stayops_infra.system import LocalSystem


@pytest.fixture(scope="session")
async def system(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSystem]:
    suffix = uuid.uuid4().hex[:6]

    async def database_url(name: str) -> str:
        url: str = await stack.create_database(f"e2e_{suffix}_{name}")
        return url

    running = LocalSystem(
        bootstrap=stack.kafka_bootstrap,
        database_url=database_url,
        public_key_file=stack.jwt_public_key_file,
        work_dir=tmp_path_factory.mktemp("system"),
    )
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def solo_org(stack: Any, tmp_path: Path) -> dict[str, Any]:
    """A fresh solo-host org: owner, AI Revenue Manager, two listings, tokens."""
    seeded = await seed_solo(stack.kafka_bootstrap, stack.keys, OrgRegistry(tmp_path / "orgs.json"))
    return seeded.as_json()


@pytest.fixture
async def pricing(system: LocalSystem) -> AsyncIterator[PricingClient]:
    """A client of the four services' REST APIs, driving the pricing scenario."""
    async with httpx.AsyncClient(timeout=20) as http:
        yield PricingClient({spec.name: system.url(spec.name) for spec in SERVICES}, http)


@pytest.fixture
def org(solo_org: dict[str, Any]) -> OrgHandle:
    return OrgHandle.from_seed(solo_org)
