"""Planning work over REST: dependencies between tasks (blocked_by / blocks across
projects, a cycle refused naming its tasks, a blocked task that cannot start or
complete, the unblocked event and history entry once its last blocker is done),
projects with milestones and their roll-ups, the list views (filters, sorts,
search, cursor pages stable under inserts, count, board, calendar) and bulk actions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from stayops_kit.testing import announced
from task_service.testing import auth, create, history

pytestmark = pytest.mark.stack

Service = tuple[httpx.AsyncClient, Any, str]


async def depend(client: Any, headers: dict[str, str], task_id: str, blocker_id: str) -> Any:
    return await client.post(f"/v1/tasks/{task_id}/dependencies", json={"blocked_by": blocker_id}, headers=headers)


async def test_a_blocked_task_waits_for_its_blockers_and_is_announced_unblocked(service: Service,
                                                                                stack: Any) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    photos = await create(client, owner, title="Photos", assigned_to="owner-1")
    inspection = await create(client, owner, title="Inspection", assigned_to="owner-1")
    relist = await create(client, owner, title="Relist", assigned_to="owner-1")
    for blocker in (photos, inspection):
        added = await depend(client, owner, relist["id"], blocker["id"])
        assert added.status_code == 200, added.text
    shown = (await client.get(f"/v1/tasks/{relist['id']}", headers=owner)).json()
    assert [d["task_id"] for d in shown["blocked_by"]] == [photos["id"], inspection["id"]]
    assert shown["blocked"] is True and shown["blocks"] == []
    assert [d["task_id"] for d in (await client.get(f"/v1/tasks/{photos['id']}", headers=owner)).json()["blocks"]] \
        == [relist["id"]]

    for route in ("start", "complete"):
        refused = await client.post(f"/v1/tasks/{relist['id']}/{route}", json={}, headers=owner)
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "blocked"
        assert refused.json()["blockers"] == [photos["id"], inspection["id"]]

    assert (await client.post(f"/v1/tasks/{photos['id']}/complete", json={}, headers=owner)).status_code == 200
    assert await announced(runtime.engine, org, "stayops.task.unblocked") == []
    still = await client.post(f"/v1/tasks/{relist['id']}/start", headers=owner)
    assert still.status_code == 409 and still.json()["blockers"] == [inspection["id"]]

    cancelled = await client.post(f"/v1/tasks/{inspection['id']}/cancel", json={"reason": "not needed"},
                                  headers=owner)
    assert cancelled.status_code == 200
    unblocked = await announced(runtime.engine, org, "stayops.task.unblocked")
    assert [(e["task_id"], e["released_by"], sorted(e["blocker_ids"])) for e in unblocked] == [
        (relist["id"], inspection["id"], sorted([photos["id"], inspection["id"]]))]
    actions = [e["action"] for e in await history(client, owner, relist["id"])]
    assert actions == ["created", "dependency added", "dependency added", "unblocked"]
    assert (await client.get(f"/v1/tasks/{relist['id']}", headers=owner)).json()["blocked"] is False
    started = await client.post(f"/v1/tasks/{relist['id']}/start", headers=owner)
    assert started.status_code == 200, started.text


async def test_a_cycle_is_refused_naming_its_tasks(service: Service, stack: Any) -> None:
    client, _, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    a, b, c = [await create(client, owner, title=name) for name in "abc"]
    assert (await depend(client, owner, a["id"], b["id"])).status_code == 200
    assert (await depend(client, owner, b["id"], c["id"])).status_code == 200
    closing = await depend(client, owner, c["id"], a["id"])
    assert closing.status_code == 422, closing.text
    assert closing.json()["code"] == "dependency-cycle"
    assert closing.json()["cycle"] == [c["id"], a["id"], b["id"], c["id"]]
    itself = await depend(client, owner, a["id"], a["id"])
    assert itself.status_code == 422 and itself.json()["cycle"] == [a["id"], a["id"]]
    assert (await client.get(f"/v1/tasks/{c['id']}", headers=owner)).json()["blocked_by"] == []
    # Adding the same dependency twice is one dependency.
    again = await depend(client, owner, a["id"], b["id"])
    assert [d["task_id"] for d in again.json()["blocked_by"]] == [b["id"]]


async def test_removing_the_last_open_blocker_unblocks(service: Service, stack: Any) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    blocker, task = await create(client, owner, title="blocker"), await create(client, owner, title="task")
    assert (await depend(client, owner, task["id"], blocker["id"])).status_code == 200
    removed = await client.delete(f"/v1/tasks/{task['id']}/dependencies/{blocker['id']}", headers=owner)
    assert removed.status_code == 200, removed.text
    assert removed.json()["blocked_by"] == [] and removed.json()["blocked"] is False
    unblocked = await announced(runtime.engine, org, "stayops.task.unblocked")
    assert [(e["task_id"], e["released_by"]) for e in unblocked] == [(task["id"], None)]
    missing = await client.delete(f"/v1/tasks/{task['id']}/dependencies/{blocker['id']}", headers=owner)
    assert missing.status_code == 404 and missing.json()["code"] == "dependency-not-found"


async def test_dependencies_stay_in_the_org_and_need_tasks_manage(service: Service, stack: Any) -> None:
    client, _, _ = service
    org, other = str(uuid.uuid4()), str(uuid.uuid4())
    owner = auth(stack, org)
    mine, theirs = await create(client, owner), await create(client, auth(stack, other))
    crossed = await depend(client, owner, mine["id"], theirs["id"])
    assert crossed.status_code == 404, crossed.text
    assert (await depend(client, auth(stack, other), mine["id"], theirs["id"])).status_code == 404
    member = auth(stack, org, "mia", "member")
    blocker = await create(client, owner)
    refused = await depend(client, member, mine["id"], blocker["id"])
    assert refused.status_code == 403, refused.text


async def project(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/projects", json={"name": "A project", **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def milestone(client: httpx.AsyncClient, headers: dict[str, str], project_id: str, name: str,
                    target: str | None) -> dict[str, Any]:
    response = await client.post(f"/v1/projects/{project_id}/milestones", json={"name": name, "target_date": target},
                                 headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_renovating_a_listing_waits_for_the_photos_of_another_project(service: Service, stack: Any) -> None:
    """The seed's example: "renovate listing X" with milestones inspection, works,
    photos and relist, whose relist task is blocked by the photos task of another project."""
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    renovate = await project(client, owner, name="Renovate listing X", listing_id="listing-x",
                             owner_user_id="owner-1", start_date="2030-03-01", target_date="2030-05-31")
    assert (renovate["scope"], renovate["status"], renovate["progress"]["total"]) == ("listing", "active", 0)
    steps = {}
    for name, target in (("relist", "2030-05-31"), ("inspection", "2030-03-10"), ("works", "2030-04-30"),
                         ("photos", "2030-05-15")):
        steps[name] = await milestone(client, owner, renovate["id"], name, target)
    shoot = await project(client, owner, name="Photos for the portfolio")
    assert shoot["scope"] == "portfolio"
    tasks = {}
    for name, due in (("inspection", "2030-03-09T10:00:00Z"), ("works", "2030-04-29T10:00:00Z"),
                      ("photos", "2030-05-14T10:00:00Z"), ("relist", "2030-05-30T10:00:00Z")):
        tasks[name] = await create(client, owner, title=name, milestone_id=steps[name]["id"], due_at=due,
                                   assigned_to="owner-1")
        assert (tasks[name]["project_id"], tasks[name]["milestone_id"]) == (renovate["id"], steps[name]["id"])
    shoot_task = await create(client, owner, title="Shoot listing X", project_id=shoot["id"], assigned_to="owner-1",
                              data={"listing_id": "listing-x"})
    assert shoot_task["listing_id"] == "listing-x"
    assert (await depend(client, owner, tasks["relist"]["id"], shoot_task["id"])).status_code == 200
    blocked = await client.post(f"/v1/tasks/{tasks['relist']['id']}/start", headers=owner)
    assert blocked.status_code == 409 and blocked.json()["blockers"] == [shoot_task["id"]]

    assert (await client.post(f"/v1/tasks/{tasks['inspection']['id']}/complete", json={},
                              headers=owner)).status_code == 200
    read = (await client.get(f"/v1/projects/{renovate['id']}", headers=owner)).json()
    assert (read["progress"]["done"], read["progress"]["total"], read["progress"]["open"]) == (1, 4, 3)
    assert [m["name"] for m in read["milestones"]] == ["inspection", "works", "photos", "relist"]
    assert [(m["progress"]["done"], m["progress"]["total"]) for m in read["milestones"]] == [(1, 1), (0, 1), (0, 1),
                                                                                              (0, 1)]
    # The latest due of the open work, unless three times the median completion takes longer.
    finish = datetime.fromisoformat(read["progress"]["expected_finish"])
    assert finish >= datetime(2030, 5, 30, 10, tzinfo=UTC)
    assert read["milestones"][0]["progress"]["expected_finish"] is None

    line = (await client.get(f"/v1/projects/{renovate['id']}/timeline", headers=owner)).json()
    assert [(m["name"], [t["title"] for t in m["tasks"]]) for m in line["milestones"]] == [
        ("inspection", ["inspection"]), ("works", ["works"]), ("photos", ["photos"]), ("relist", ["relist"])]
    assert line["unscheduled"] == [] and line["truncated"] is False

    assert (await client.post(f"/v1/tasks/{shoot_task['id']}/complete", json={}, headers=owner)).status_code == 200
    unblocked = await announced(runtime.engine, org, "stayops.task.unblocked")
    assert [e["task_id"] for e in unblocked] == [tasks["relist"]["id"]]
    assert (await client.post(f"/v1/tasks/{tasks['relist']['id']}/start", headers=owner)).status_code == 200


async def test_projects_are_edited_listed_and_stay_in_their_org(service: Service, stack: Any) -> None:
    client, _, _ = service
    org, other = str(uuid.uuid4()), str(uuid.uuid4())
    owner = auth(stack, org)
    first = await project(client, owner, name="First")
    second = await project(client, owner, name="Second", listing_id="l-2")
    edited = await client.patch(f"/v1/projects/{first['id']}", json={"status": "done", "target_date": "2031-01-01",
                                                                    "listing_id": "l-1"}, headers=owner)
    assert edited.status_code == 200, edited.text
    assert (edited.json()["status"], edited.json()["target_date"], edited.json()["scope"]) == (
        "done", "2031-01-01", "listing")
    page = (await client.get("/v1/projects", params={"limit": 1}, headers=owner)).json()
    assert [p["name"] for p in page["items"]] == ["First"]
    rest = (await client.get("/v1/projects", params={"limit": 1, "cursor": page["next_cursor"]}, headers=owner)).json()
    assert [p["name"] for p in rest["items"]] == ["Second"] and rest["next_cursor"] is None
    assert [p["id"] for p in (await client.get("/v1/projects", params={"status": "active"},
                                               headers=owner)).json()["items"]] == [second["id"]]

    theirs = auth(stack, other)
    assert (await client.get(f"/v1/projects/{first['id']}", headers=theirs)).status_code == 404
    assert (await client.patch(f"/v1/projects/{first['id']}", json={"name": "x"}, headers=theirs)).status_code == 404
    assert (await client.get(f"/v1/projects/{first['id']}/timeline", headers=theirs)).status_code == 404
    assert (await client.post(f"/v1/projects/{first['id']}/milestones", json={"name": "m"},
                              headers=theirs)).status_code == 404
    assert (await client.get("/v1/projects", headers=theirs)).json()["items"] == []
    placed = await client.post("/v1/tasks", json={"title": "t", "task_type": "manual", "project_id": first["id"]},
                               headers=theirs)
    assert placed.status_code == 404 and placed.json()["code"] == "project-not-found"
    step = await milestone(client, owner, first["id"], "m", None)
    wrong = await client.post("/v1/tasks", json={"title": "t", "task_type": "manual", "project_id": second["id"],
                                                 "milestone_id": step["id"]}, headers=owner)
    assert wrong.status_code == 404 and wrong.json()["code"] == "milestone-not-found"
    member = auth(stack, org, "mia", "member")
    assert (await client.post("/v1/projects", json={"name": "x"}, headers=member)).status_code == 403
    assert (await client.patch(f"/v1/projects/{first['id']}", json={"name": "x"}, headers=member)).status_code == 403
    assert (await client.get(f"/v1/projects/{first['id']}", headers=member)).status_code == 200

    task = await create(client, owner, milestone_id=step["id"])
    moved = await client.patch(f"/v1/tasks/{task['id']}", json={"project_id": second["id"]}, headers=owner)
    assert moved.status_code == 200, moved.text
    assert (moved.json()["project_id"], moved.json()["milestone_id"]) == (second["id"], None)
    changes = (await history(client, owner, task["id"]))[-1]["changes"]
    assert changes["project_id"] == {"from": first["id"], "to": second["id"]}


async def ids(client: httpx.AsyncClient, headers: dict[str, str], path: str = "/v1/tasks", **params: Any
              ) -> list[str]:
    response = await client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["items"]]


async def test_one_query_language_filters_sorts_and_searches(service: Service, stack: Any) -> None:
    client, _, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    plan = await project(client, owner, name="Winter")
    step = await milestone(client, owner, plan["id"], "first", "2030-01-31")
    boiler = await create(client, owner, title="Service the boiler", description="The heating is noisy",
                          priority="urgent", labels=["plumbing"], due_at="2030-01-03T09:00:00Z",
                          assigned_to="owner-1", milestone_id=step["id"], listing_id="l-1")
    towels = await create(client, owner, title="Restock towels", priority="low", labels=["linen"],
                          due_at="2030-01-01T09:00:00Z", role_id="housekeeping", department_id="ops")
    roof = await create(client, owner, title="Inspect the roof", priority="high", assigned_to="ana",
                        data={"listing_id": "l-2"})
    child = await create(client, owner, title="Order the part", parent_task_id=boiler["id"], assigned_to="ana")
    await client.post(f"/v1/tasks/{roof['id']}/comments", json={"body": "Slates look cracked near the chimney"},
                      headers=owner)
    await client.post(f"/v1/tasks/{towels['id']}/start", headers=auth(stack, org, "hk-1", "housekeeping"))

    assert await ids(client, owner, status="pending,in_progress", sort="created") == [
        boiler["id"], towels["id"], roof["id"], child["id"]]
    assert await ids(client, owner, status="in_progress") == [towels["id"]]
    assert set(await ids(client, owner, assignee="me")) == {boiler["id"]}
    assert set(await ids(client, owner, assignee="ana,none")) == {roof["id"], child["id"]}
    assert await ids(client, owner, role="housekeeping") == [towels["id"]]
    assert await ids(client, owner, department="ops") == [towels["id"]]
    assert await ids(client, owner, label="plumbing,linen", sort="due") == [towels["id"], boiler["id"]]
    assert set(await ids(client, owner, priority="urgent,high")) == {boiler["id"], roof["id"]}
    assert await ids(client, owner, due_before="2030-01-02T00:00:00Z") == [towels["id"]]
    assert await ids(client, owner, due_after="2030-01-02T00:00:00Z") == [boiler["id"]]
    assert await ids(client, owner, project=plan["id"]) == [boiler["id"]]
    assert await ids(client, owner, milestone=step["id"]) == [boiler["id"]]
    assert set(await ids(client, owner, listing="l-1,l-2")) == {boiler["id"], roof["id"]}
    assert await ids(client, owner, type="decision") == []
    assert await ids(client, owner, parent=boiler["id"]) == [child["id"]]
    assert child["id"] not in await ids(client, owner, parent="none")
    # Sorts: due soonest first (none last), priority low to urgent, `-` reversed.
    assert await ids(client, owner, sort="due", parent="none") == [towels["id"], boiler["id"], roof["id"]]
    assert await ids(client, owner, sort="-priority", parent="none") == [boiler["id"], roof["id"], towels["id"]]
    assert (await ids(client, owner, sort="-updated"))[0] == towels["id"]
    # Full text: title, description (stemmed), comments.
    assert await ids(client, owner, q="boiler") == [boiler["id"]]
    assert await ids(client, owner, q="heat") == [boiler["id"]]
    assert await ids(client, owner, q="chimney slates") == [roof["id"]]
    assert await ids(client, owner, q="towels -boiler") == [towels["id"]]
    # A new title is searched, its comments still are, the old title no longer.
    renamed = await client.patch(f"/v1/tasks/{roof['id']}", json={"title": "Inspect the gutters"}, headers=owner)
    assert renamed.status_code == 200, renamed.text
    assert await ids(client, owner, q="gutters") == [roof["id"]]
    assert await ids(client, owner, q="chimney") == [roof["id"]]
    assert await ids(client, owner, q="roof") == []
    counted = await client.get("/v1/tasks/count", params={"status": "pending"}, headers=owner)
    assert counted.json() == {"count": 3}
    assert (await client.get("/v1/tasks/count", headers=auth(stack, str(uuid.uuid4())))).json() == {"count": 0}
    refused = await client.get("/v1/tasks", params={"status": "pending,nonsense"}, headers=owner)
    assert refused.status_code == 422


async def test_cursor_pages_neither_repeat_nor_skip_while_tasks_are_inserted(service: Service, stack: Any) -> None:
    client, _, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    before = []
    for n in range(24):
        due = f"2030-02-{1 + n % 12:02d}T09:00:00Z" if n % 5 else None
        made = await create(client, owner, title=f"task {n}", due_at=due, priority=("low", "high")[n % 2])
        before.append(made["id"])
    for sort in ("due", "-created", "created", "-priority"):
        seen: list[str] = []
        params: dict[str, Any] = {"sort": sort, "limit": 5}
        inserted = 0
        while True:
            page = (await client.get("/v1/tasks", params=params, headers=owner)).json()
            seen.extend(t["id"] for t in page["items"])
            # Inserted between pages: due anywhere in the month, created now.
            await create(client, owner, title=f"new {sort} {inserted}", priority="high",
                         due_at=f"2030-02-{1 + inserted % 12:02d}T08:00:00Z")
            inserted += 1
            if page["next_cursor"] is None:
                break
            params = {"sort": sort, "limit": 5, "cursor": page["next_cursor"]}
        assert len(seen) == len(set(seen)), f"{sort}: a task came twice"
        assert set(before) <= set(seen), f"{sort}: a task there from the start was skipped"
    wrong = await client.get("/v1/tasks", params={"sort": "due", "cursor": page["next_cursor"] or "AAAA"},
                             headers=owner)
    assert wrong.status_code == 422 and wrong.json()["code"] == "cursor-invalid"


async def test_the_board_and_the_calendar(service: Service, stack: Any) -> None:
    client, _, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    late = await create(client, owner, title="late evening", due_at="2030-03-01T23:30:00Z", assigned_to="ana")
    morning = await create(client, owner, title="morning", due_at="2030-03-02T08:00:00Z", priority="urgent")
    await create(client, owner, title="undated", assigned_to="ana")
    done = await create(client, owner, title="done", due_at="2030-03-05T12:00:00Z", assigned_to="owner-1")
    await client.post(f"/v1/tasks/{done['id']}/complete", json={}, headers=owner)

    board = (await client.get("/v1/board", params={"group_by": "status", "limit": 1}, headers=owner)).json()
    columns = {c["value"]: c for c in board["columns"]}
    assert [c["value"] for c in board["columns"]] == ["pending", "in_progress", "completed", "failed", "blocked",
                                                      "cancelled"]
    assert (columns["pending"]["count"], len(columns["pending"]["items"])) == (3, 1)
    rest = await ids(client, owner, status="pending", cursor=columns["pending"]["next_cursor"], limit=5)
    assert len(rest) == 2 and columns["pending"]["items"][0]["id"] not in rest
    assert columns["completed"]["count"] == 1 and columns["failed"] == {
        "value": "failed", "count": 0, "count_capped": False, "items": [], "next_cursor": None}
    by_assignee = (await client.get("/v1/board", params={"group_by": "assignee", "status": "pending"},
                                    headers=owner)).json()
    assert [(c["value"], c["count"]) for c in by_assignee["columns"]] == [("ana", 2), (None, 1)]
    assert by_assignee["columns"][1]["items"][0]["id"] == morning["id"]
    urgent = (await client.get("/v1/board", params={"group_by": "priority"}, headers=owner)).json()["columns"]
    assert [(c["value"], c["count"]) for c in urgent] == [("low", 0), ("medium", 3), ("high", 0), ("urgent", 1)]

    lisbon = (await client.get("/v1/calendar", params={"from": "2030-03-01", "to": "2030-03-31", "tz": "Europe/Lisbon"},
                               headers=owner)).json()
    assert [(d["date"], [t["title"] for t in d["items"]]) for d in lisbon["days"]] == [
        ("2030-03-01", ["late evening"]), ("2030-03-02", ["morning"]), ("2030-03-05", ["done"])]
    tokyo = (await client.get("/v1/calendar", params={"from": "2030-03-02", "to": "2030-03-02", "tz": "Asia/Tokyo",
                                                       "status": "pending"}, headers=owner)).json()
    assert [(d["date"], [t["id"] for t in d["items"]]) for d in tokyo["days"]] == [
        ("2030-03-02", [late["id"], morning["id"]])]
    assert tokyo["truncated"] is False
    assert (await client.get("/v1/calendar", params={"from": "2030-03-01", "to": "2030-03-31"},
                             headers=auth(stack, str(uuid.uuid4())))).json()["days"] == []
    bad = await client.get("/v1/calendar", params={"from": "2030-03-01", "to": "2030-03-31", "tz": "Mars/Base"},
                           headers=owner)
    assert bad.status_code == 422


async def test_bulk_actions_report_each_task(service: Service, stack: Any) -> None:
    client, runtime, _ = service
    org, other = str(uuid.uuid4()), str(uuid.uuid4())
    owner = auth(stack, org)
    a, b = await create(client, owner, labels=["old"]), await create(client, owner, labels=["old", "keep"])
    finished = await create(client, owner, assigned_to="owner-1")
    await client.post(f"/v1/tasks/{finished['id']}/complete", json={}, headers=owner)
    theirs = await create(client, auth(stack, other))
    everyone = [a["id"], b["id"], finished["id"], theirs["id"]]

    async def run(**body: Any) -> dict[str, Any]:
        response = await client.post("/v1/tasks/bulk", json=body, headers=owner)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    labelled = await run(action="label", task_ids=everyone, add=["winter"], remove=["old"])
    assert [(r["task_id"], r["ok"], r["status"], r["code"]) for r in labelled["results"]] == [
        (a["id"], True, 200, None), (b["id"], True, 200, None),
        (finished["id"], False, 409, "transition-not-allowed"), (theirs["id"], False, 404, "task-not-found")]
    assert (labelled["succeeded"], labelled["refused"]) == (2, 2)
    assert (await client.get(f"/v1/tasks/{b['id']}", headers=owner)).json()["labels"] == ["keep", "winter"]
    assert [e["action"] for e in await history(client, owner, a["id"])] == ["created", "edited"]

    assigned = await run(action="assign", task_ids=[a["id"], b["id"]], assigned_to="ana")
    assert assigned["succeeded"] == 2
    assigned_events = await announced(runtime.engine, org, "stayops.task.assigned")
    assert [e["assigned_to"] for e in assigned_events][-2:] == ["ana", "ana"]
    plan = await project(client, owner, name="Bulk")
    moved = await run(action="move", task_ids=[a["id"]], project_id=plan["id"])
    assert moved["succeeded"] == 1
    assert await ids(client, owner, project=plan["id"]) == [a["id"]]
    nowhere = await run(action="move", task_ids=[b["id"]], project_id="no-such-project")
    assert nowhere["results"][0]["code"] == "project-not-found"

    cancelled = await run(action="cancel", task_ids=[a["id"], a["id"], finished["id"]], reason="season over")
    assert [(r["task_id"], r["ok"]) for r in cancelled["results"]] == [(a["id"], True), (finished["id"], False)]
    assert (await client.get(f"/v1/tasks/{a['id']}", headers=owner)).json()["status"] == "cancelled"
    assert (await client.get(f"/v1/tasks/{theirs['id']}", headers=auth(stack, other))).json()["labels"] == []

    member = auth(stack, org, "mia", "member")
    refused = await client.post("/v1/tasks/bulk", json={"action": "cancel", "task_ids": [b["id"]], "reason": "x"},
                                headers=member)
    assert refused.status_code == 403
    too_many = await client.post("/v1/tasks/bulk", json={"action": "cancel", "reason": "x",
                                                         "task_ids": [str(n) for n in range(501)]}, headers=owner)
    assert too_many.status_code == 422
