"""The task product over REST: edit with optimistic concurrency, claim, release,
cancel and reopen, comments with mentions, watchers, subtasks with progress, team
queues in the inbox, and a history written in the same transaction as each change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from stayops_kit.testing import announced, event_envelope, eventually, send
from stayops_schemas.events.tasks import (
    ReassignMode,
    TaskCancelRequested,
    TaskReassignRequested,
    TaskRequested,
    TaskType,
)
from stayops_schemas.ownership import WORKFLOW_SERVICE
from task_service import handlers, store
from task_service.testing import auth, create, history

pytestmark = pytest.mark.stack

Service = tuple[httpx.AsyncClient, Any, str]


async def join(runtime: Any, org: str, user: str, role: str, department: str | None = None) -> None:
    async with runtime.engine.begin() as conn:
        await store.upsert_member(conn, {
            "org_id": org, "user_id": user, "user_type": "human", "display_name": user, "role_id": role,
            "role_name": role, "department_id": department, "department_name": department,
            "joined_at": datetime(2025, 1, 1, tzinfo=UTC)}, joined=True)


async def test_an_edit_needs_the_version_read_and_is_in_the_history(service: Service, stack: Any) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    task = await create(client, owner)
    read = await client.get(f"/v1/tasks/{task['id']}", headers=owner)
    assert read.headers["ETag"] == '"1"'

    edited = await client.patch(f"/v1/tasks/{task['id']}", headers={**owner, "If-Match": '"1"'}, json={
        "title": "Replace the boiler", "priority": "urgent", "labels": ["plumbing", "plumbing", "winter"],
        "due_at": "2030-01-02T09:00:00Z", "assigned_to": "olga"})
    assert edited.status_code == 200, edited.text
    assert edited.headers["ETag"] == '"2"'
    body = edited.json()
    assert (body["title"], body["priority"], body["labels"], body["assigned_to"], body["version"]) == (
        "Replace the boiler", "urgent", ["plumbing", "winter"], "olga", 2)

    stale = await client.patch(f"/v1/tasks/{task['id']}", headers={**owner, "If-Match": '"1"'},
                               json={"title": "Too late"})
    assert stale.status_code == 412, stale.text
    assert stale.json()["code"] == "stale-version"
    assert (await client.get(f"/v1/tasks/{task['id']}", headers=owner)).json()["title"] == "Replace the boiler"

    entries = await history(client, owner, task["id"])
    assert [(e["action"], e["actor"], e["actor_type"], e["version"]) for e in entries] == [
        ("created", "owner-1", "person", 1), ("edited", "owner-1", "person", 2)]
    assert entries[1]["changes"]["title"] == {"from": "Check the boiler", "to": "Replace the boiler"}
    assert entries[1]["changes"]["assigned_to"] == {"from": None, "to": "olga"}
    assert set(entries[1]["changes"]) == {"title", "priority", "labels", "due_at", "assigned_to"}

    assigned = await announced(runtime.engine, org, "stayops.task.assigned")
    assert [e["assigned_to"] for e in assigned] == ["olga"]
    rescheduled = await announced(runtime.engine, org, "stayops.task.rescheduled")
    assert [e["due_at"] for e in rescheduled] == ["2030-01-02T09:00:00Z"]


async def test_a_failing_change_leaves_no_history(service: Service, stack: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The history row is written with the change: when announcing the change fails
    after the row was written, neither the change nor its history stays."""
    client, _, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    task = await create(client, owner)

    def broken(*_: Any) -> Any:
        raise RuntimeError("announcing failed")

    monkeypatch.setattr(handlers, "task_assigned", broken)
    with pytest.raises(RuntimeError, match="announcing failed"):
        await client.patch(f"/v1/tasks/{task['id']}", headers=owner, json={"assigned_to": "olga"})
    monkeypatch.undo()
    assert [e["action"] for e in await history(client, owner, task["id"])] == ["created"]
    assert (await client.get(f"/v1/tasks/{task['id']}", headers=owner)).json()["assigned_to"] is None

    refused = await client.post(f"/v1/tasks/{task['id']}/reopen", headers=owner)
    assert refused.status_code == 409
    assert [e["action"] for e in await history(client, owner, task["id"])] == ["created"]


async def test_who_may_edit_cancel_and_reopen(service: Service, stack: Any) -> None:
    client, _, _ = service
    org = str(uuid.uuid4())
    task = await create(client, auth(stack, org))
    member = auth(stack, org, "mia", "member")
    for method, path, body in [("PATCH", "", {"title": "Mine now"}), ("POST", "/cancel", {"reason": "no"}),
                               ("POST", "/reopen", None)]:
        response = await client.request(method, f"/v1/tasks/{task['id']}{path}", headers=member, json=body)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["missing_permission"] == "tasks.manage"
    holding = auth(stack, org, "olga", "operations", permissions=["tasks.manage"])
    assert (await client.patch(f"/v1/tasks/{task['id']}", headers=holding, json={"title": "Ok"})).status_code == 200


async def test_another_orgs_task_is_not_found_on_every_route(service: Service, stack: Any) -> None:
    client, _, _ = service
    task = await create(client, auth(stack, str(uuid.uuid4())))
    stranger = auth(stack, str(uuid.uuid4()))
    for method, path, body in [
        ("GET", "", None), ("PATCH", "", {"title": "x"}), ("POST", "/claim", None), ("POST", "/release", None),
        ("POST", "/cancel", {"reason": "x"}), ("POST", "/reopen", None), ("GET", "/history", None),
        ("GET", "/subtasks", None), ("GET", "/comments", None), ("POST", "/comments", {"body": "hi"}),
        ("GET", "/watchers", None), ("POST", "/watchers", {}), ("DELETE", "/watchers/x", None),
    ]:
        response = await client.request(method, f"/v1/tasks/{task['id']}{path}", headers=stranger, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == "task-not-found"


async def test_team_queues_are_in_the_inbox_and_claimed(service: Service, stack: Any) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    by_role = await create(client, owner, role_id="housekeeping")
    by_department = await create(client, owner, department_id="north")
    hanna = auth(stack, org, "hanna", "housekeeping", department="north")
    olga = auth(stack, org, "olga", "operations", department="south")

    inbox = (await client.get("/v1/inbox", headers=hanna)).json()
    assert {t["id"] for t in inbox["items"]} == {by_role["id"], by_department["id"]}
    assert (await client.get("/v1/inbox", headers=olga)).json()["items"] == []

    outsider = await client.post(f"/v1/tasks/{by_role['id']}/claim", headers=olga)
    assert outsider.status_code == 403 and outsider.json()["code"] == "not-in-queue"
    claimed = await client.post(f"/v1/tasks/{by_role['id']}/claim", headers=hanna)
    assert claimed.status_code == 200, claimed.text
    assert (claimed.json()["assigned_to"], claimed.json()["status"]) == ("hanna", "pending")
    again = await client.post(f"/v1/tasks/{by_role['id']}/claim", headers=hanna)
    assert again.status_code == 409 and again.json()["code"] == "already-assigned"
    assert (await client.post(f"/v1/tasks/{by_role['id']}/release", headers=olga)).status_code == 403

    await client.post(f"/v1/tasks/{by_role['id']}/start", headers=hanna)
    released = await client.post(f"/v1/tasks/{by_role['id']}/release", headers=hanna)
    assert (released.json()["assigned_to"], released.json()["status"]) == (None, "pending")
    assigned = [e for e in await announced(runtime.engine, org, "stayops.task.assigned")
                if e["task_id"] == by_role["id"]]
    # Its creation put it in the role's queue; then claimed, then released to the queue again.
    assert [e["assigned_to"] for e in assigned] == [None, "hanna", None]
    assert [e["action"] for e in await history(client, owner, by_role["id"])] == [
        "created", "claimed", "started", "released"]


async def test_cancel_and_reopen(service: Service, stack: Any) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    task = await create(client, owner, assigned_to="olga")
    assert (await client.post(f"/v1/tasks/{task['id']}/reopen", headers=owner)).status_code == 409
    cancelled = await client.post(f"/v1/tasks/{task['id']}/cancel", headers=owner, json={"reason": "Guest left"})
    assert (cancelled.json()["status"], cancelled.json()["status_reason"]) == ("cancelled", "Guest left")
    twice = await client.post(f"/v1/tasks/{task['id']}/cancel", headers=owner, json={"reason": "again"})
    assert twice.status_code == 409
    editing = await client.patch(f"/v1/tasks/{task['id']}", headers=owner, json={"title": "x"})
    assert editing.status_code == 409
    cancellations = await announced(runtime.engine, org, "stayops.task.cancelled")
    assert [(e["reason"], e["cancelled_by"]) for e in cancellations] == [("Guest left", "owner-1")]
    reopened = await client.post(f"/v1/tasks/{task['id']}/reopen", headers=owner)
    assert (reopened.json()["status"], reopened.json()["assigned_to"]) == ("pending", "olga")
    entries = await history(client, owner, task["id"])
    assert [e["action"] for e in entries] == ["created", "cancelled", "reopened"]
    assert entries[2]["changes"]["status"] == {"from": "cancelled", "to": "pending"}


async def test_a_parent_completes_after_its_required_subtasks(service: Service, stack: Any) -> None:
    client, _, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    parent = await create(client, owner, assigned_to="owner-1", title="Turn over flat 3")
    linen = await create(client, owner, parent_task_id=parent["id"], assigned_to="owner-1", title="Linen")
    await create(client, owner, parent_task_id=parent["id"], title="Flowers", required=False)

    subtasks = (await client.get(f"/v1/tasks/{parent['id']}/subtasks", headers=owner)).json()
    assert [t["title"] for t in subtasks] == ["Linen", "Flowers"]
    assert (await client.get(f"/v1/tasks/{parent['id']}", headers=owner)).json()["progress"] == {
        "done": 0, "total": 2}
    refused = await client.post(f"/v1/tasks/{parent['id']}/complete", headers=owner, json={})
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "subtasks-open"
    assert linen["id"] in refused.json()["detail"] and "Flowers" not in refused.json()["detail"]

    await client.post(f"/v1/tasks/{linen['id']}/complete", headers=owner, json={})
    assert (await client.get(f"/v1/tasks/{parent['id']}", headers=owner)).json()["progress"] == {
        "done": 1, "total": 2}
    done = await client.post(f"/v1/tasks/{parent['id']}/complete", headers=owner, json={})
    assert done.status_code == 200 and done.json()["status"] == "completed"


async def test_a_mention_notifies_the_member_and_makes_them_watch(service: Service, stack: Any) -> None:
    client, runtime, _ = service
    org = str(uuid.uuid4())
    owner = auth(stack, org)
    await join(runtime, org, "bob", "operations")
    task = await create(client, owner)
    added = await client.post(f"/v1/tasks/{task['id']}/comments", headers=owner,
                              json={"body": "@bob can you look? cc @ghost, mail me at a@b.c"})
    assert added.status_code == 201, added.text
    assert (added.json()["mentions"], added.json()["notified"]) == (["bob", "ghost"], ["bob"])

    listed = (await client.get(f"/v1/tasks/{task['id']}/comments", headers=owner)).json()
    assert [c["body"] for c in listed] == ["@bob can you look? cc @ghost, mail me at a@b.c"]
    notes = (await client.get("/v1/tasks", params={"assignee": "automation"}, headers=owner)).json()["items"]
    assert [(n["data"]["action"], n["data"]["user_id"], n["data"]["about_task_id"]) for n in notes] == [
        ("notify", "bob", task["id"])]
    assert (await client.get(f"/v1/tasks/{task['id']}/watchers", headers=owner)).json()["watchers"] == [
        "bob", "owner-1"]

    watched = await client.post(f"/v1/tasks/{task['id']}/watchers", headers=owner, json={"user_id": "carl"})
    assert watched.json()["watchers"] == ["bob", "carl", "owner-1"]
    left = await client.delete(f"/v1/tasks/{task['id']}/watchers/bob", headers=owner)
    assert left.json()["watchers"] == ["carl", "owner-1"]


async def test_changes_made_by_events_are_in_the_history(service: Service, stack: Any) -> None:
    """A workflow's request creates the task and an automation's cancel (a cancelled
    reservation) cancels it: both are in the history, with who asked and through what."""
    client, _, _ = service
    org = str(uuid.uuid4())
    request_id = f"run-1:step-{uuid.uuid4().hex[:6]}"
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await send(producer, event_envelope("stayops.task.requested", TaskRequested(
            request_id=request_id, org_id=org, title="Clean flat 3", task_type=TaskType.MANUAL,
            requested_by="wf-owner"), org, source=WORKFLOW_SERVICE))

        async def requested() -> Any:
            items = (await client.get("/v1/tasks", headers=auth(stack, org))).json()["items"]
            return items[0] if items else None

        task = await eventually(requested, timeout=30)
        await send(producer, event_envelope("stayops.task.cancel.requested", TaskCancelRequested(
            request_id=request_id, org_id=org, reason="reservation cancelled", requested_by="wf-owner"), org))

        async def cancelled() -> Any:
            entries = await history(client, auth(stack, org), task["id"])
            return entries if len(entries) == 2 else None

        entries = await eventually(cancelled, timeout=30)
    finally:
        await producer.stop()
    assert [(e["action"], e["actor"], e["actor_type"]) for e in entries] == [
        ("created", "wf-owner", "workflow"), ("cancelled", "wf-owner", "automation")]
    assert entries[1]["changes"]["status"] == {"from": "pending", "to": "cancelled"}


async def test_a_reassignment_asked_by_its_workflow_hands_the_open_task_on(service: Service, stack: Any) -> None:
    """An escalated decision: the workflow that asked for the task hands it to a user,
    then to a role's queue; each move is announced as an assignment and in the history."""
    client, runtime, _ = service
    org = str(uuid.uuid4())
    request_id = f"run-1:approve-{uuid.uuid4().hex[:6]}:1"
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await send(producer, event_envelope("stayops.task.requested", TaskRequested(
            request_id=request_id, org_id=org, title="Approve the refund", task_type=TaskType.DECISION,
            role_id="night-auditor", requested_by="workflow-service"), org, source=WORKFLOW_SERVICE))

        async def requested() -> Any:
            items = (await client.get("/v1/tasks", headers=auth(stack, org))).json()["items"]
            return items[0] if items else None

        task = await eventually(requested, timeout=30)
        for moved in ({"assigned_to": "boss-1"}, {"role_id": "owner"}):
            await send(producer, event_envelope("stayops.task.reassign.requested", TaskReassignRequested(
                request_id=request_id, org_id=org, reason="not decided within PT1S", requested_by="workflow-service",
                **moved), org))

        async def reassigned() -> Any:
            entries = await history(client, auth(stack, org), task["id"])
            return entries if len(entries) == 3 else None

        entries = await eventually(reassigned, timeout=30)
    finally:
        await producer.stop()
    assert [(e["action"], e["actor_type"]) for e in entries] == [
        ("created", "workflow"), ("reassigned", "workflow"), ("reassigned", "workflow")]
    assert entries[1]["changes"]["assigned_to"] == {"from": None, "to": "boss-1"}
    assert entries[2]["changes"]["role_id"] == {"from": "night-auditor", "to": "owner"}
    body = (await client.get(f"/v1/tasks/{task['id']}", headers=auth(stack, org))).json()
    assert (body["status"], body["assigned_to"], body["role_id"]) == ("pending", None, "owner")
    assigned = await announced(runtime.engine, org, "stayops.task.assigned")
    assert [(e["assigned_to"], e["rule"].startswith("not decided within PT1S")) for e in assigned][-2:] == [
        ("boss-1", True), (None, True)]


async def test_a_reviewer_added_by_its_workflow_sees_the_task_in_their_inbox_and_decides_it(
    service: Service, stack: Any,
) -> None:
    """An escalation that adds a reviewer: the task stays where it is (here, its role's
    queue), the reviewer sees it in their inbox and may decide it; nobody else may."""
    client, _, _ = service
    org = str(uuid.uuid4())
    request_id = f"run-1:approve-{uuid.uuid4().hex[:6]}:1"
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await send(producer, event_envelope("stayops.task.requested", TaskRequested(
            request_id=request_id, org_id=org, title="Approve the refund", task_type=TaskType.DECISION,
            role_id="night-auditor", requested_by="workflow-service"), org, source=WORKFLOW_SERVICE))

        async def requested() -> Any:
            items = (await client.get("/v1/tasks", headers=auth(stack, org))).json()["items"]
            return items[0] if items else None

        task = await eventually(requested, timeout=30)
        boss = auth(stack, org, user="boss-1")
        assert (await client.get("/v1/inbox", headers=boss)).json()["items"] == []
        await send(producer, event_envelope("stayops.task.reassign.requested", TaskReassignRequested(
            request_id=request_id, org_id=org, reason="not decided within PT1S", requested_by="workflow-service",
            assigned_to="boss-1", mode=ReassignMode.ADD_REVIEWER), org))

        async def in_inbox() -> Any:
            items = (await client.get("/v1/inbox", headers=boss)).json()["items"]
            return items[0] if items else None

        shown = await eventually(in_inbox, timeout=30)
    finally:
        await producer.stop()
    assert (shown["id"], shown["assigned_to"], shown["role_id"], shown["reviewers"]) == (
        task["id"], None, "night-auditor", ["boss-1"])
    entries = await history(client, auth(stack, org), task["id"])
    assert [e["action"] for e in entries] == ["created", "reviewer added"]
    assert entries[1]["changes"] == {"reviewers": {"from": [], "to": ["boss-1"]}}
    other = await client.post(f"/v1/tasks/{task['id']}/decision", headers=auth(stack, org, user="owner-2"),
                              json={"outcome": "approved"})
    assert other.status_code == 403, other.text
    decided = await client.post(f"/v1/tasks/{task['id']}/decision", headers=boss, json={"outcome": "approved"})
    assert decided.status_code == 200, decided.text
    assert (decided.json()["status"], decided.json()["completed_by"]) == ("completed", "boss-1")
