"""The inbox by cursor: overdue first, then due soonest, then undated; keyset pages
that tasks added while paging never shift. And a milestone's edit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from task_service.testing import auth, create

pytestmark = pytest.mark.stack

Service = tuple[httpx.AsyncClient, Any, str]


def at(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


async def test_the_inbox_puts_the_overdue_first_and_pages_stably(service: Service, stack: Any) -> None:
    client, _, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    bob = auth(stack, org, "bob", "cleaner", department="ops", permissions=["tasks.act"])
    overdue = await create(client, owner, title="overdue", assigned_to="bob", due_at=at(-5))
    queued_soon = await create(client, owner, title="queue, soon", role_id="cleaner", due_at=at(1))
    department_later = await create(client, owner, title="department, later", department_id="ops", due_at=at(30))
    undated = await create(client, owner, title="undated", assigned_to="bob")
    finished = await create(client, owner, title="finished", assigned_to="bob", due_at=at(-10))
    assert (await client.post(f"/v1/tasks/{finished['id']}/cancel", json={"reason": "dup"},
                              headers=owner)).status_code == 200
    await create(client, owner, title="carol's", assigned_to="carol", due_at=at(-20))
    await create(client, auth(stack, str(uuid.uuid4())), title="elsewhere", assigned_to="bob", due_at=at(-30))

    page = (await client.get("/v1/inbox", headers=bob)).json()
    assert [t["title"] for t in page["items"]] == ["overdue", "queue, soon", "department, later", "undated"]
    assert [t["overdue"] for t in page["items"]] == [True, False, False, False]
    assert page["next_cursor"] is None and "total" not in page
    cancelled = (await client.get("/v1/inbox", params={"status": "cancelled"}, headers=bob)).json()
    assert [t["id"] for t in cancelled["items"]] == [finished["id"]]
    assert not cancelled["items"][0]["overdue"]

    # Many more, then walked 3 at a time while tasks are added before and after the
    # cursor's position: each task there from the start is seen exactly once.
    for hours in range(2, 14):
        await create(client, owner, title=f"due in {hours} h", assigned_to="bob", due_at=at(hours))
    expected = {t["id"] for t in (await client.get("/v1/inbox", params={"limit": 200}, headers=bob)).json()["items"]}
    assert len(expected) == 16 and {overdue["id"], queued_soon["id"], department_later["id"], undated["id"]} <= expected
    seen: list[str] = []
    cursor = None
    added = 0
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        answer = await client.get("/v1/inbox", params=params, headers=bob)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen.extend(t["id"] for t in body["items"])
        if body["next_cursor"] is None:
            break
        cursor = body["next_cursor"]
        added += 1
        await create(client, owner, title="new, overdue", assigned_to="bob", due_at=at(-1 - added))
        await create(client, owner, title="new, far", role_id="cleaner", due_at=at(100 + added))
    originals = [i for i in seen if i in expected]
    assert len(originals) == len(set(originals)) == len(expected)  # no duplicate, no gap
    assert len(seen) == len(set(seen))

    other_sort = (await client.get("/v1/tasks", params={"limit": 1}, headers=owner)).json()["next_cursor"]
    wrong = await client.get("/v1/inbox", params={"cursor": other_sort}, headers=bob)
    assert (wrong.status_code, wrong.json()["code"]) == (422, "cursor-invalid")
    assert (await client.get("/v1/inbox", params={"status": "sleeping"}, headers=bob)).status_code == 422


async def test_a_milestone_is_edited_by_a_manager_of_its_org(service: Service, stack: Any) -> None:
    client, _, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    project = (await client.post("/v1/projects", json={"name": "Renovate listing X"}, headers=owner)).json()
    other = (await client.post("/v1/projects", json={"name": "Another"}, headers=owner)).json()
    milestone = (await client.post(f"/v1/projects/{project['id']}/milestones",
                                   json={"name": "Inspection", "target_date": "2030-04-01"}, headers=owner)).json()
    assert (milestone["status"], milestone["updated_at"]) == ("active", None)
    path = f"/v1/projects/{project['id']}/milestones/{milestone['id']}"

    renamed = await client.patch(path, json={"name": "Inspection and report", "target_date": "2030-04-15"},
                                 headers=owner)
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["target_date"], renamed.json()["status"]) == (
        "Inspection and report", "2030-04-15", "active")
    done = (await client.patch(path, json={"status": "done", "target_date": None}, headers=owner)).json()
    assert (done["status"], done["target_date"], done["name"]) == ("done", None, "Inspection and report")
    assert done["updated_at"] is not None
    listed = (await client.get(f"/v1/projects/{project['id']}/milestones", headers=owner)).json()
    assert [(m["name"], m["status"]) for m in listed] == [("Inspection and report", "done")]

    for bad in ({"status": "finished"}, {"name": ""}, {"name": None}, {"status": None}, {"colour": "red"},
                {"target_date": 20300401}):
        assert (await client.patch(path, json=bad, headers=owner)).status_code == 422, bad
    worker = auth(stack, org, "carl", "cleaner", permissions=["tasks.act"])
    assert (await client.patch(path, json={"name": "Mine"}, headers=worker)).status_code == 403
    wrong_project = await client.patch(f"/v1/projects/{other['id']}/milestones/{milestone['id']}",
                                       json={"name": "Moved?"}, headers=owner)
    assert (wrong_project.status_code, wrong_project.json()["code"]) == (404, "milestone-not-found")
    elsewhere = await client.patch(path, json={"name": "Theirs"}, headers=auth(stack, str(uuid.uuid4())))
    assert elsewhere.status_code == 404
    assert (await client.get(f"/v1/projects/{project['id']}/milestones", headers=owner)).json()[0]["name"] == (
        "Inspection and report")
