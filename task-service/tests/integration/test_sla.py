"""SLAs: the org's (or a project's) policy over REST, due reminders and the overdue
escalation on durable timers — fired once each, after a restart too, re-armed when
the due time moves, never for a finished task."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from stayops_kit.settings import ServiceSettings
from stayops_kit.testing import app_client, eventually
from task_service import store
from task_service.app import create_app
from task_service.testing import auth, create

pytestmark = pytest.mark.stack

Service = tuple[httpx.AsyncClient, Any, str]


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def put_policy(client: httpx.AsyncClient, headers: dict[str, str], **policy: Any) -> dict[str, Any]:
    response = await client.put("/v1/sla-policy", json=policy, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def notifications(runtime: Any, org: str, task_id: str) -> list[tuple[str, str]]:
    """(to whom, subject) of each notification sent about the task, oldest first."""
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(
            sa.select(store.tasks.c.data).where(store.tasks.c.org_id == org,
                                                store.tasks.c.data["about_task_id"].astext == task_id)
            .order_by(store.tasks.c.created_at, store.tasks.c.id))).all()
    return [(row.data["user_id"], row.data["subject"]) for row in rows]


async def sla_history(client: httpx.AsyncClient, headers: dict[str, str], task_id: str) -> list[dict[str, Any]]:
    entries = (await client.get(f"/v1/tasks/{task_id}/history", headers=headers)).json()
    return [e for e in entries if e["actor"] == "task-service" and e["action"] in {"reminded", "escalated",
                                                                                   "reassigned"}]


async def timer(runtime: Any, org: str, task_id: str) -> dict[str, Any] | None:
    async with runtime.engine.connect() as conn:
        return await store.timer_of(conn, org, task_id)


async def assigned_to(client: httpx.AsyncClient, headers: dict[str, str], task_id: str, user_id: str) -> bool:
    got = (await client.get(f"/v1/tasks/{task_id}", headers=headers)).json()
    return got["assigned_to"] == user_id  # type: ignore[no-any-return]


async def own_database(stack: Any) -> ServiceSettings:
    """Settings for a task-service of its own database, to stop and start again."""
    url = await stack.create_database(f"task_{uuid.uuid4().hex[:10]}")
    return ServiceSettings(service_name="task-service", database_url=url, kafka_bootstrap_servers=stack.kafka_bootstrap,
                           jwt_public_key_file=stack.jwt_public_key_file, relay_poll_interval_s=0.2)


async def test_the_policy_is_checked_and_needs_tasks_manage(service: Service, stack: Any) -> None:
    client, _, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    assert (await client.get("/v1/sla-policy", headers=owner)).json()["policy"] is None
    for bad in (
        {"remind_before": ["-PT1H"]},
        {"remind_before": [3600]},
        {"remind_before": ["PT1H", "PT1H"]},
        {"remind_before": ["P365D"]},
        {"escalation": [{"after": "PT2H", "action": "notify_assignee"},
                        {"after": "PT1H", "action": "notify_assignee"}]},
        {"escalation": [{"after": "PT1H", "action": "reassign"}]},
        {"escalation": [{"after": "PT1H", "action": "reassign", "user_id": "ana", "role_id": "cleaner"}]},
        {"escalation": [{"after": "PT1H", "action": "notify_assignee", "user_id": "ana"}]},
        {"escalation": [{"after": "PT1H", "action": "notify_lead"}]},
        {"escalation": [{"after": "PT0S", "action": "notify_assignee"}]},
        {"escalation": [{"after": "PT1H", "action": "page_everyone"}]},
        {"remind_at_due": "yes"},
        {"surprise": True},
    ):
        response = await client.put("/v1/sla-policy", json=bad, headers=owner)
        assert response.status_code == 422, (bad, response.text)
    policy = {"remind_before": ["PT1H"], "remind_at_due": True,
              "escalation": [{"after": "PT1H", "action": "notify_assignee"},
                             {"after": "PT4H", "action": "notify_lead"},
                             {"after": "P1D", "action": "reassign", "role_id": "supervisor"}],
              "leads": {"cleaner": "lea"}}
    cleaner = auth(stack, org, "carl", "cleaner", permissions=["tasks.act"])
    refused = await client.put("/v1/sla-policy", json=policy, headers=cleaner)
    assert (refused.status_code, refused.json()["code"]) == (403, "permission-missing")
    saved = await put_policy(client, owner, **policy)
    assert saved["policy"]["escalation"][2] == {"after": "P1D", "action": "reassign", "role_id": "supervisor"}
    assert saved["updated_by"] == "owner-1"
    assert (await client.get("/v1/sla-policy", headers=cleaner)).json()["policy"] == saved["policy"]
    elsewhere = auth(stack, str(uuid.uuid4()))
    assert (await client.get("/v1/sla-policy", headers=elsewhere)).json()["policy"] is None
    assert (await client.delete("/v1/sla-policy", headers=cleaner)).status_code == 403
    assert (await client.delete("/v1/sla-policy", headers=owner)).json()["policy"] is None
    assert (await client.get("/v1/sla-policy", headers=owner)).json()["policy"] is None


async def test_reminders_and_the_escalation_each_fire_once(service: Service, stack: Any) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    await put_policy(client, owner, remind_before=["PT2S"], remind_at_due=True, leads={"cleaner": "lea"},
                     escalation=[{"after": "PT1S", "action": "notify_assignee"},
                                 {"after": "PT2S", "action": "notify_lead"},
                                 {"after": "PT3S", "action": "reassign", "user_id": "sam"}])
    task = await create(client, owner, assigned_to="ana", role_id="cleaner", due_at=soon(4))
    assert (await timer(runtime, org, task["id"])) is not None

    await eventually(lambda: assigned_to(client, owner, task["id"], "sam"), timeout=60)
    await asyncio.sleep(1.5)  # nothing more fires
    sent = await notifications(runtime, org, task["id"])
    assert [to for to, _ in sent] == ["ana", "ana", "ana", "lea"], sent
    assert sent[0][1].startswith("Due in") and sent[1][1].startswith("Due now")
    assert sent[2][1].startswith("Overdue:") and sent[3][1].startswith("Overdue in your team")
    entries = await sla_history(client, owner, task["id"])
    assert [e["action"] for e in entries] == ["reminded", "reminded", "escalated", "escalated", "reassigned"]
    assert "notified lead of cleaner lea" in entries[3]["changes"]["sla"]["to"]
    assert entries[4]["changes"]["assigned_to"] == {"from": "ana", "to": "sam"}
    got = (await client.get(f"/v1/tasks/{task['id']}", headers=owner)).json()
    assert "SLA escalation" in got["assignment_rule"]
    assert await timer(runtime, org, task["id"]) is None  # the last stage fired: nothing left


async def test_a_moved_due_time_rearms_and_a_finished_task_never_fires(service: Service, stack: Any) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    await put_policy(client, owner, remind_at_due=True)
    moved = await create(client, owner, assigned_to="owner-1", due_at=soon(2))
    done = await create(client, owner, assigned_to="owner-1", due_at=soon(2))
    cancelled = await create(client, owner, assigned_to="owner-1", due_at=soon(2))
    later = datetime.now(UTC) + timedelta(hours=1)
    patched = await client.patch(f"/v1/tasks/{moved['id']}", json={"due_at": later.isoformat()}, headers=owner)
    assert patched.status_code == 200, patched.text
    assert (await client.post(f"/v1/tasks/{done['id']}/complete", json={}, headers=owner)).status_code == 200
    assert (await client.post(f"/v1/tasks/{cancelled['id']}/cancel", json={"reason": "not needed"},
                              headers=owner)).status_code == 200
    armed = await timer(runtime, org, moved["id"])
    assert armed is not None and armed["fire_at"] == later and armed["due_at"] == later
    assert await timer(runtime, org, done["id"]) is None and await timer(runtime, org, cancelled["id"]) is None
    # Moved back to soon: re-armed, and it fires at its new due time, once.
    await client.patch(f"/v1/tasks/{moved['id']}", json={"due_at": soon(1)}, headers=owner)

    async def reminded() -> bool:
        return len(await notifications(runtime, org, moved["id"])) == 1

    await eventually(reminded, timeout=30)
    await asyncio.sleep(2)
    assert len(await notifications(runtime, org, moved["id"])) == 1
    assert await notifications(runtime, org, done["id"]) == []
    assert await notifications(runtime, org, cancelled["id"]) == []


async def test_a_project_policy_and_a_policy_set_later_arm_open_tasks(service: Service, stack: Any) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    before = await create(client, owner, assigned_to="owner-1", due_at=soon(3))
    assert await timer(runtime, org, before["id"]) is None  # no policy yet
    project = (await client.post("/v1/projects", json={"name": "Renovate", "sla_policy": {
        "remind_at_due": False, "escalation": [{"after": "PT1S", "action": "notify_assignee"}]}},
        headers=owner)).json()
    assert project["sla_policy"]["escalation"][0]["after"] == "PT1S"
    in_project = await create(client, owner, assigned_to="owner-1", due_at=soon(2), project_id=project["id"])
    saved = await put_policy(client, owner, remind_at_due=True)
    assert saved["rearmed"] == 1  # the task in no project; the project's task keeps its own policy
    assert await timer(runtime, org, before["id"]) is not None

    async def both_fired() -> bool:
        return (len(await notifications(runtime, org, before["id"])) == 1
                and len(await notifications(runtime, org, in_project["id"])) == 1)

    await eventually(both_fired, timeout=30)
    assert (await notifications(runtime, org, before["id"]))[0][1].startswith("Due now")
    assert (await notifications(runtime, org, in_project["id"]))[0][1].startswith("Overdue:")
    # The project's policy cleared: its tasks follow the org's again.
    cleared = await client.patch(f"/v1/projects/{project['id']}", json={"sla_policy": None}, headers=owner)
    assert cleared.status_code == 200 and cleared.json()["sla_policy"] is None


async def test_a_reminder_armed_before_a_restart_fires_once_after_it(stack: Any) -> None:
    settings = await own_database(stack)
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    app = create_app(settings=settings)
    async with app_client(app) as client:
        await put_policy(client, owner, remind_before=["PT1S"], remind_at_due=True)
        task = await create(client, owner, assigned_to="owner-1", due_at=soon(5))
    # Down while both stages come due: the reminder before the due time is then
    # pointless and skipped, the one at the due time fires once the service is back.
    await asyncio.sleep(6)
    app = create_app(settings=settings)
    async with app_client(app) as client:
        runtime = app.state.runtime

        async def fired() -> bool:
            return len(await notifications(runtime, org, task["id"])) >= 1

        await eventually(fired, timeout=30)
        await asyncio.sleep(1.5)
        assert [s for _, s in await notifications(runtime, org, task["id"])] == ["Due now: Check the boiler"]
        assert [e["action"] for e in await sla_history(client, owner, task["id"])] == ["reminded"]
        assert await timer(runtime, org, task["id"]) is None
    # And once more across another restart: nothing fires again.
    app = create_app(settings=settings)
    async with app_client(app) as client:
        await asyncio.sleep(1.5)
        assert len(await notifications(app.state.runtime, org, task["id"])) == 1


async def test_an_escalation_that_came_due_while_the_service_was_down_fires_each_stage_once_after_it(
        stack: Any) -> None:
    settings = await own_database(stack)
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    app = create_app(settings=settings)
    async with app_client(app) as client:
        await put_policy(client, owner, remind_at_due=False,
                         escalation=[{"after": "PT1S", "action": "notify_assignee"},
                                     {"after": "PT2S", "action": "reassign", "user_id": "sam"}])
        task = await create(client, owner, assigned_to="ana", due_at=soon(3))
    await asyncio.sleep(7)  # down while both stages come due
    app = create_app(settings=settings)
    async with app_client(app) as client:
        runtime = app.state.runtime

        await eventually(lambda: assigned_to(client, owner, task["id"], "sam"), timeout=30)
        await asyncio.sleep(1.5)  # nothing more fires
        sent = await notifications(runtime, org, task["id"])
        assert [to for to, _ in sent] == ["ana"] and sent[0][1].startswith("Overdue:"), sent
        assert [e["action"] for e in await sla_history(client, owner, task["id"])] == ["escalated", "reassigned"]
        assert await timer(runtime, org, task["id"]) is None
    # Across another restart nothing fires again.
    app = create_app(settings=settings)
    async with app_client(app) as client:
        await asyncio.sleep(1.5)
        assert len(await notifications(app.state.runtime, org, task["id"])) == 1
        assert [e["action"] for e in await sla_history(client, owner, task["id"])] == ["escalated", "reassigned"]
