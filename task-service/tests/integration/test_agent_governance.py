"""Routing follows what agent-service announces about its agents, on real PostgreSQL
and Apache Kafka: a paused agent's open tasks go to the role's person or its queue
and a resume pulls nothing back; a manual or decision task never goes to an AI
agent; an analysis goes only to an agent with its skill."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from stayops_kit.db import inbox
from stayops_kit.testing import ServiceUnderTest, announced, eventually, service_under_test
from stayops_schemas.events.agents import AgentPaused, AgentResumed, AgentUpdated, Autonomy, KillSwitch
from stayops_schemas.events.base import Payload
from stayops_schemas.events.org import MemberJoined, UserType
from task_service import store
from task_service.app import NAME, create_app

pytestmark = pytest.mark.stack

EARLY = datetime(2025, 1, 1, tzinfo=UTC)
ROLE = "revenue-manager"


@pytest.fixture(scope="module")
async def service(stack: Any) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(create_app, NAME, stack) as running:
        yield running


async def join(service: ServiceUnderTest, org: str, user_id: str, user_type: UserType,
               joined_at: datetime = EARLY) -> None:
    await service.publish("org.member.joined", MemberJoined(
        org_id=org, user_id=user_id, user_type=user_type, display_name=user_id, role_id=ROLE, role_name=ROLE,
        joined_at=joined_at), key=org)

    async def in_directory() -> bool:
        async with service.runtime.engine.connect() as conn:
            return user_id in {m["user_id"] for m in await store.list_members(conn, org)}

    await eventually(in_directory, what=f"{user_id} in the directory")


def standing(org: str, agent: str, *, skills: tuple[str, ...] = ("pricing",), paused: bool = False,
             org_paused: bool = False, autonomy: Autonomy = Autonomy.SUGGEST,
             at: datetime | None = None) -> dict[str, Any]:
    return {"agent_user_id": agent, "org_id": org, "role_id": ROLE, "skills": list(skills), "autonomy": autonomy,
            "confidence_threshold": 0.7, "paused": paused, "org_paused": org_paused,
            "changed_at": at or datetime.now(UTC), "changed_by": "u-owner"}


async def announce(service: ServiceUnderTest, type_: str, payload: Payload, org: str, agent: str,
                   *, expect_paused: bool | None = None) -> None:
    """Publish as agent-service does and wait until task-service keeps it."""
    await service.publish(type_, payload, key=agent)

    async def kept() -> bool:
        async with service.runtime.engine.connect() as conn:
            row = (await conn.execute(sa.select(store.agent_standing).where(
                store.agent_standing.c.org_id == org, store.agent_standing.c.user_id == agent))).first()
        return row is not None and (expect_paused is None or bool(row.paused or row.org_paused) == expect_paused)

    await eventually(kept, what=f"{type_} of {agent} kept")


async def create(service: ServiceUnderTest, org: str, task_type: str = "analysis",
                 skill: str | None = "pricing") -> dict[str, Any]:
    body: dict[str, Any] = {"title": f"{task_type} {skill}", "task_type": task_type, "role_id": ROLE}
    if skill is not None:
        body["data"] = {"skill": skill}
    created = await service.client.post("/v1/tasks", json=body, headers=service.auth(org))
    assert created.status_code == 201, created.text
    task: dict[str, Any] = created.json()
    return task


async def task(service: ServiceUnderTest, org: str, task_id: str) -> dict[str, Any]:
    found: dict[str, Any] = (await service.client.get(f"/v1/tasks/{task_id}", headers=service.auth(org))).json()
    return found


async def holders(service: ServiceUnderTest, org: str, tasks: list[dict[str, Any]]) -> set[str | None]:
    return {(await task(service, org, t["id"]))["assigned_to"] for t in tasks}


async def assignments(service: ServiceUnderTest, org: str) -> list[dict[str, Any]]:
    return await announced(service.runtime.engine, org, "stayops.task.assigned")


async def test_a_paused_agents_open_analyses_go_to_the_roles_person_and_resume_pulls_none_back(
    service: ServiceUnderTest,
) -> None:
    org = str(uuid.uuid4())
    await join(service, org, "ai-rm", UserType.AI_AGENT)
    await announce(service, "stayops.agent.updated", AgentUpdated(**standing(org, "ai-rm")), org, "ai-rm")
    held = [await create(service, org) for _ in range(4)]
    assert {t["assigned_to"] for t in held} == {"ai-rm"}, "the only member, with the skill"
    started = await service.client.post(f"/v1/tasks/{held[0]['id']}/start",
                                        headers=service.auth(org, "ai-rm", ROLE, user_type="ai_agent"))
    assert started.status_code == 200, started.text
    await join(service, org, "rita", UserType.HUMAN, EARLY + timedelta(days=1))

    await announce(service, "stayops.agent.paused", AgentPaused(**standing(org, "ai-rm", paused=True),
                                                                switch=KillSwitch.AGENT), org, "ai-rm")

    async def handed_back() -> bool:
        return await holders(service, org, held) == {"rita"}

    await eventually(handed_back, what="the paused agent's four tasks with rita")
    inbox = (await service.client.get("/v1/inbox", headers=service.auth(org, "rita", ROLE))).json()["items"]
    assert {t["id"] for t in inbox} == {t["id"] for t in held}
    assert (await task(service, org, held[0]["id"]))["status"] == "in_progress", "open work stays open"
    rules = {e["task_id"]: e["rule"] for e in await assignments(service, org) if e["assigned_to"] == "rita"}
    assert set(rules) == {t["id"] for t in held}, "every hand-back is announced"
    assert all(r.startswith("AI agent ai-rm may no longer hold it (paused); role:revenue-manager -> ")
               for r in rules.values())
    assert (await create(service, org))["assigned_to"] == "rita", "a paused agent gets no new work"

    await announce(service, "stayops.agent.resumed", AgentResumed(**standing(org, "ai-rm"), switch=KillSwitch.AGENT),
                   org, "ai-rm", expect_paused=False)
    assert await holders(service, org, held) == {"rita"}, "nothing pulled back"
    assert (await create(service, org))["assigned_to"] == "ai-rm", "resumed, it takes new work again"


async def test_an_orgs_kill_switch_sends_its_only_members_work_to_the_roles_queue(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    await join(service, org, "ai-rm", UserType.AI_AGENT)
    await announce(service, "stayops.agent.updated", AgentUpdated(**standing(org, "ai-rm")), org, "ai-rm")
    held = [await create(service, org) for _ in range(3)]
    assert {t["assigned_to"] for t in held} == {"ai-rm"}

    await announce(service, "stayops.agent.paused", AgentPaused(**standing(org, "ai-rm", org_paused=True),
                                                                switch=KillSwitch.ORG), org, "ai-rm")

    async def queued() -> bool:
        return await holders(service, org, held) == {None}

    await eventually(queued, what="the tasks back in the role's queue")
    inbox = (await service.client.get("/v1/inbox", headers=service.auth(org, "rita", ROLE))).json()["items"]
    assert {t["id"] for t in inbox} == {t["id"] for t in held}, "a person of the role sees them to claim"
    [rule] = {e["rule"] for e in await assignments(service, org) if e["assigned_to"] is None}
    assert rule == ("AI agent ai-rm may no longer hold it (its org's agents are paused); "
                    "role:revenue-manager -> role queue (no active member)")


@pytest.mark.parametrize("task_type", ["manual", "decision"])
async def test_a_manual_or_decision_task_goes_to_a_person_though_the_agent_has_fewer_open_tasks(
    service: ServiceUnderTest, task_type: str,
) -> None:
    org = str(uuid.uuid4())
    await join(service, org, "ai-rm", UserType.AI_AGENT)
    await join(service, org, "rita", UserType.HUMAN, EARLY + timedelta(days=1))
    await announce(service, "stayops.agent.updated", AgentUpdated(**standing(org, "ai-rm")), org, "ai-rm")
    for _ in range(2):
        busy = await service.client.post("/v1/tasks", headers=service.auth(org), json={
            "title": "Call the guest", "task_type": "manual", "assigned_to": "rita"})
        assert busy.status_code == 201

    given = await create(service, org, task_type, skill=None)

    assert (given["assigned_to"], given["assignee_type"]) == ("rita", "human")
    assert given["assignment_rule"] == (f"role:revenue-manager -> only member who may take it; "
                                        f"passed over: ai-rm (an AI agent takes no {task_type} task)")


async def test_an_analysis_skips_an_agent_without_its_skill(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    await join(service, org, "ai-review", UserType.AI_AGENT)
    await join(service, org, "ai-price", UserType.AI_AGENT, EARLY + timedelta(days=1))
    await join(service, org, "rita", UserType.HUMAN, EARLY + timedelta(days=2))
    await announce(service, "stayops.agent.updated",
                   AgentUpdated(**standing(org, "ai-review", skills=("performance-review",))), org, "ai-review")
    await announce(service, "stayops.agent.updated", AgentUpdated(**standing(org, "ai-price")), org, "ai-price")

    pricing = await create(service, org, skill="pricing")
    review = await create(service, org, skill="performance-review")
    astrology = await create(service, org, skill="astrology")

    assert pricing["assigned_to"] == "ai-price"
    assert "passed over: ai-review (lacks the skill 'pricing')" in pricing["assignment_rule"]
    assert review["assigned_to"] == "ai-review"
    assert astrology["assigned_to"] == "rita", "no agent has it: a person does"

    # The owner takes the skill away: the task the agent held for it goes on.
    await announce(service, "stayops.agent.updated",
                   AgentUpdated(**standing(org, "ai-price", skills=("performance-review",))), org, "ai-price")

    async def moved() -> str | None:
        holder = (await task(service, org, pricing["id"]))["assigned_to"]
        return holder if holder != "ai-price" else None

    assert await eventually(moved, what="the pricing task handed on") == "rita"


async def test_an_older_announcement_arriving_late_changes_nothing(service: ServiceUnderTest) -> None:
    org = str(uuid.uuid4())
    await join(service, org, "ai-rm", UserType.AI_AGENT)
    now = datetime.now(UTC)
    await announce(service, "stayops.agent.resumed", AgentResumed(**standing(org, "ai-rm", at=now),
                                                                  switch=KillSwitch.AGENT), org, "ai-rm")
    late = AgentPaused(**standing(org, "ai-rm", paused=True, at=now - timedelta(seconds=5)), switch=KillSwitch.AGENT)
    await service.publish("stayops.agent.paused", late, key="ai-rm")

    async def late_handled() -> bool:
        async with service.runtime.engine.connect() as conn:
            return (await conn.execute(sa.select(inbox.c.event_id).where(
                inbox.c.org_id == org, inbox.c.event_type == "stayops.agent.paused"))).first() is not None

    await eventually(late_handled, what="the late pause handled")
    assert (await create(service, org))["assigned_to"] == "ai-rm", "the late pause was not applied"
