"""agent-service only reads over REST: any member of the org may, with no
permission at all; agents.manage is for agent changes, which have no route yet."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent_service.app import NAME, create_app
from stayops_kit.testing import ServiceUnderTest, service_under_test

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(create_app, NAME, stack) as running:
        yield running


async def test_any_member_reads_the_agents(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    nobody = service.auth(org, "nina", "member", permissions=[])
    listed = await service.client.get("/v1/agents", headers=nobody)
    assert (listed.status_code, listed.json()["items"]) == (200, [])
    unknown = await service.client.get("/v1/agents/ai-nobody/activity", headers=nobody)
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["code"] == "agent-not-found"
