"""The console against services mocked at the HTTP boundary: what each page shows,
sign-in and sign-out, CSRF, and a service without a route ("not available", never 500)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from stayops_console.app import create_app
from stayops_console.auth import CSRF_COOKIE, TOKEN_COOKIE, member_of
from stayops_console.settings import ConsoleSettings
from stayops_infra.keys import ensure_keys
from stayops_infra.orgsim import OrgRegistry, solo_host_org

TASKS, RUNS, AGENTS = "http://tasks.test", "http://runs.test", "http://agents.test"


@pytest.fixture
def org(tmp_path: Path) -> Any:
    found = solo_host_org()
    OrgRegistry(tmp_path / "orgs.json").save(found)
    return found


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(assert_all_called=False)


@pytest.fixture
def settings(tmp_path: Path, org: Any) -> ConsoleSettings:
    keys = ensure_keys(tmp_path / "keys")
    return ConsoleSettings(task_service_url=TASKS, workflow_service_url=RUNS, agent_service_url=AGENTS,
                           automation_service_url="http://automations.test", registry_file=tmp_path / "orgs.json",
                           dev_private_key_file=keys.private_key, kafka_bootstrap_servers="kafka.test:9092",
                           operator_redrive=True)


class FakeDeadLetters:
    def __init__(self) -> None:
        self.letters: list[dict[str, str]] = []
        self.redriven: list[str] = []
        self.broken = False

    async def list_dead_letters(self, bootstrap: str, group: str, limit: int = 1000) -> list[dict[str, str]]:
        return self.letters

    async def redrive(self, bootstrap: str, group: str, limit: int = 1000) -> tuple[int, int]:
        if self.broken:
            raise ConnectionError("no broker")
        self.redriven.append(group)
        return len(self.letters), 0


@pytest.fixture
def dead_letters() -> FakeDeadLetters:
    return FakeDeadLetters()


@pytest.fixture
def client(settings: ConsoleSettings, router: respx.Router, dead_letters: FakeDeadLetters) -> Iterator[TestClient]:
    app = create_app(settings, transport=httpx.MockTransport(router.handler), dead_letters=dead_letters)
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def csrf_of(client: TestClient) -> str:
    if CSRF_COOKIE not in client.cookies:
        client.get("/sign-in")
    return str(client.cookies[CSRF_COOKIE])


def sign_in(client: TestClient, router: respx.Router, org: Any, role: str = "owner") -> None:
    router.get(f"{TASKS}/v1/inbox", params={"limit": "1"}).respond(json={"items": [], "total": 0})
    member = next(m for m in org.members if m.role_id == role)
    response = client.post("/sign-in/dev", data={"csrf": csrf_of(client), "org_id": org.org_id,
                                                 "user_id": member.user_id, "next": "/inbox"})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/inbox"


def task(**fields: Any) -> dict[str, Any]:
    base = {"id": "t-1", "title": "Clean after checkout", "task_type": "cleaning", "status": "pending",
            "priority": "medium", "assigned_to": None, "due_at": None, "created_at": "2026-01-01T00:00:00Z",
            "data": {}, "workflow_run_id": None, "role_id": "owner", "description": None}
    return {**base, **fields}


NIGHTS = [
    {"listing_id": "listing-a", "date": "2026-02-06", "current_price": "100.00", "recommended_price": "118.00",
     "currency": "EUR", "change_pct": 18.0, "confidence": 0.82,
     "factors": [{"name": "occupancy", "effect_pct": 12.0, "detail": "busy"}, {"name": "season", "effect_pct": 0}]},
    {"listing_id": "listing-a", "date": "2026-02-07", "current_price": "100.00", "recommended_price": "90.00",
     "currency": "EUR", "change_pct": -10.0, "confidence": 0.64,
     "factors": [{"name": "lead_time", "effect_pct": -10.0, "detail": "late"}]},
]
DECISION = task(id="d-1", title="Approve this week's prices", task_type="decision", due_at="2026-01-02T09:00:00Z",
                workflow_run_id="run-1", data={"proposal": NIGHTS})


def test_pages_ask_for_a_sign_in_first(client: TestClient) -> None:
    response = client.get("/inbox")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/sign-in")


def test_dev_sign_in_lists_the_seeded_members_and_sets_an_httponly_lax_cookie(
        client: TestClient, router: respx.Router, org: Any) -> None:
    page = client.get("/sign-in").text
    assert "Sign in as Owner" in page and "Sign in as AI Revenue Manager" in page
    router.get(f"{TASKS}/v1/inbox", params={"limit": "1"}).respond(json={"items": [], "total": 0})
    owner = next(m for m in org.members if m.role_id == "owner")
    response = client.post("/sign-in/dev", data={"csrf": csrf_of(client), "org_id": org.org_id,
                                                 "user_id": owner.user_id})
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(TOKEN_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert member_of(token).user_id == owner.user_id and member_of(token).org_id == org.org_id


def test_a_pasted_token_the_services_refuse_does_not_sign_in(client: TestClient, router: respx.Router) -> None:
    router.get(f"{TASKS}/v1/inbox").respond(401, json={"title": "Unauthorized", "detail": "signature"})
    token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1Iiwib3JnX2lkIjoibyIsInJvbGVfaWQiOiJvd25lciJ9."
    response = client.post("/sign-in", data={"csrf": csrf_of(client), "token": token})
    assert response.status_code == 400
    assert "refused" in response.text
    assert TOKEN_COOKIE not in client.cookies


def test_a_form_without_the_csrf_token_is_refused(client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    decided = router.post(f"{TASKS}/v1/tasks/d-1/decision").respond(json=DECISION)
    response = client.post("/tasks/d-1/decision", data={"action": "approve", "csrf": "forged"})
    assert response.status_code == 403
    assert not decided.called


def test_sign_out_clears_the_token(client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    response = client.post("/sign-out", data={"csrf": csrf_of(client)})
    assert response.status_code == 303
    assert TOKEN_COOKIE not in client.cookies
    assert client.get("/inbox").status_code == 303


def test_the_inbox_shows_a_proposal_as_a_table_of_nights_due_first(
        client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    later = task(id="t-2", title="Restock towels", due_at="2026-03-01T00:00:00Z")
    done = task(id="t-3", title="Old and done", status="completed")
    router.get(f"{TASKS}/v1/inbox", params={"limit": "200"}).respond(
        json={"items": [later, done, DECISION], "total": 3})
    page = client.get("/inbox").text
    assert page.index("Approve this week&#39;s prices") < page.index("Restock towels"), "due first"
    assert "Old and done" not in page
    assert re.search(r"100\.00 EUR</td>\s*<td class=\"num\">118\.00 EUR</td>\s*<td class=\"num up\">\+18\.0 %", page)
    assert "occupancy +12.0 %" in page and "season" not in page.split("Factors")[1].split("</table>")[0]
    assert "0.82" in page
    assert '<th scope="col">Current</th>' in page.replace(' class="num"', "")
    assert 'value="approve"' in page and 'value="reject"' in page and 'value="edit"' in page


def test_a_large_proposal_is_read_from_the_service_that_stored_it(
        client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    ref = {"service": "agent-service", "kind": "pricing", "id": "res-1", "org_id": org.org_id, "size": 10,
           "digest": "sha256:" + "0" * 64, "summary": {"max_abs_change_pct": 18.0}}
    stored = task(id="d-2", title="Approve the portfolio", task_type="decision", workflow_run_id="run-2",
                  data={"proposal_ref": ref})
    router.get(f"{TASKS}/v1/inbox", params={"limit": "200"}).respond(json={"items": [stored], "total": 1})
    router.get(f"{AGENTS}/v1/results/res-1").respond(json={"result": {"recommendations": NIGHTS}})
    page = client.get("/inbox").text
    assert re.search(r"100\.00 EUR</td>\s*<td class=\"num\">118\.00 EUR</td>", page), "the stored nights"
    assert page.count('name="price:') == len(NIGHTS)


def test_approving_with_edited_prices_sends_only_the_changed_nights(
        client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    router.get(f"{TASKS}/v1/tasks/d-1").respond(json=DECISION)
    decided = router.post(f"{TASKS}/v1/tasks/d-1/decision").respond(json={**DECISION, "status": "completed"})
    response = client.post("/tasks/d-1/decision", data={
        "csrf": csrf_of(client), "action": "edit", "comment": "a bit less",
        "price:listing-a|2026-02-06": "110.50", "price:listing-a|2026-02-07": "90.00"})
    assert response.status_code == 303 and response.headers["location"] == "/inbox?done=d-1"
    sent = __import__("json").loads(decided.calls.last.request.content)
    assert sent == {"outcome": "approved", "comment": "a bit less",
                    "changes": [{"listing_id": "listing-a", "date": "2026-02-06", "price": "110.50"}]}
    assert decided.calls.last.request.headers["authorization"].startswith("Bearer ")


def test_rejecting_sends_no_changes(client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    decided = router.post(f"{TASKS}/v1/tasks/d-1/decision").respond(json=DECISION)
    client.post("/tasks/d-1/decision", data={"csrf": csrf_of(client), "action": "reject", "comment": ""})
    assert __import__("json").loads(decided.calls.last.request.content) == {"outcome": "rejected", "comment": None}


def test_the_board_falls_back_to_tasks_by_status_when_task_service_has_no_board(
        client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    router.get(f"{TASKS}/v1/board").respond(404, json={"detail": "Not Found"})
    router.get(f"{TASKS}/v1/tasks").respond(json={"items": [task(status="blocked", title="Fix the boiler")],
                                                  "total": 1})
    response = client.get("/board")
    assert response.status_code == 200
    assert "not available" in response.text
    blocked = response.text.split(">blocked <")[1].split("</section>")[0]
    assert "Fix the boiler" in blocked


def test_the_board_uses_task_services_board_when_it_has_one(
        client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    router.get(f"{TASKS}/v1/board").respond(json={"columns": [{"title": "Doing", "tasks": [task(title="Paint")]}]})
    page = client.get("/board").text
    assert "GET /v1/board" in page and ">Doing <" in page and "Paint" in page


def test_a_route_a_service_does_not_have_is_not_available_not_a_500(
        client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    router.get(f"{RUNS}/v1/runs").respond(404, json={"detail": "Not Found"})
    response = client.get("/runs")
    assert response.status_code == 404
    assert "Not available" in response.text
    router.get(f"{AGENTS}/v1/agents").mock(side_effect=httpx.ConnectError("refused"))
    response = client.get("/agents")
    assert response.status_code == 503 and "cannot be reached" in response.text


def test_a_scorecard_the_agent_service_lacks_leaves_the_rest_of_the_agent_page(
        client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    agent = {"user_id": "agent-1", "display_name": "AI Revenue Manager", "role_id": "revenue-manager",
             "skills": ["pricing"], "autonomy": "propose", "confidence_threshold": "0.7", "paused_at": None}
    router.get(f"{AGENTS}/v1/agents").respond(json={"items": [agent]})
    router.get(f"{AGENTS}/v1/agents/agent-1/activity").respond(json={"items": [
        {"id": "a1", "at": "2026-01-01T00:00:00Z", "kind": "analysis", "task_id": "t-9", "summary": "priced 60 nights",
         "confidence": 0.7, "explanation": "busy weekend", "inputs": {"nights": 60}, "details": {}}]})
    router.get(f"{AGENTS}/v1/agents/agent-1/scorecard").respond(404, json={"detail": "Not Found"})
    paused = router.post(f"{AGENTS}/v1/agents/agent-1/pause").respond(json={**agent, "paused_at": "2026-01-01"})
    page = client.get("/agents/agent-1")
    assert page.status_code == 200
    assert "Scorecard: not available" in page.text and "priced 60 nights" in page.text
    assert "Pause this agent" in page.text
    assert client.post("/agents/agent-1/pause", data={"csrf": csrf_of(client)}).status_code == 303
    assert paused.called


def test_a_running_runs_timeline_polls_and_a_finished_one_stops(
        client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    owner = next(m for m in org.members if m.role_id == "owner")
    agent = next(m for m in org.members if m.user_type == "ai_agent")
    run = {"id": "run-1", "workflow_key": "dynamic-pricing", "workflow_version": 1, "status": "waiting",
           "current_step": "approve", "waiting_for": {"reply_type": "task.decided"}, "compensated": None,
           "failure_reason": None, "correlation_id": "run-1",
           "steps": {"approve": {"status": "waiting", "attempt": 1},
                     "analyse": {"status": "completed", "by": agent.user_id}},
           "log": [{"at": "2026-01-01T00:00:00Z", "actor": "workflow-service", "message": "run started"},
                   {"at": "2026-01-01T00:00:01Z", "actor": agent.user_id, "message": "step analyse done"},
                   {"at": "2026-01-01T00:00:02Z", "actor": "timer", "message": "step publish: attempt 2 of 3"},
                   {"at": "2026-01-01T00:00:03Z", "actor": owner.user_id, "message": "step approve: approved"}]}
    router.get(f"{AGENTS}/v1/agents").respond(json={"items": [{"user_id": agent.user_id}]})
    router.get(f"{RUNS}/v1/runs/run-1").respond(json=run)
    page = client.get("/runs/run-1").text
    assert 'data-live="/runs/run-1/timeline"' in page
    assert page.index('<th scope="row">analyse') < page.index('<th scope="row">approve'), "in the order reached"
    assert re.search(r"AI agent</span>\s*<strong[^>]*>AI Revenue Manager", page)
    assert re.search(r"timer</span>\s*<strong[^>]*>timer</strong>\s*<span class=\"tag\">retry", page)
    assert re.search(r"person</span>\s*<strong[^>]*>Owner", page)
    assert re.search(r"automation</span>\s*<strong[^>]*>workflow-service", page)
    router.get(f"{RUNS}/v1/runs/run-1").respond(json={**run, "status": "completed", "current_step": None})
    fragment = client.get("/runs/run-1/timeline").text
    assert fragment.lstrip().startswith('<div id="timeline"') and "data-live" not in fragment
    assert ">completed<" in fragment


def test_the_trace_page_draws_the_causal_tree(client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    started = {"id": "e1", "type": "workflow.run.started", "source": "/workflow-service",
               "time": "2026-01-01T00:00:00+00:00", "subject": "run-1", "correlationid": "run-1",
               "causationid": None, "data": {}}
    asked = {"id": "e2", "type": "task.requested", "source": "/workflow-service",
             "time": "2026-01-01T00:00:01+00:00", "subject": "run-1", "correlationid": "run-1",
             "causationid": "e1", "data": {}}
    consumed = {"event_id": "e2", "type": "task.requested", "source": "/workflow-service", "group": "task-service",
                "handled_at": "2026-01-01T00:00:02+00:00", "attempts": 2, "correlationid": "run-1", "causationid": "e1"}
    empty = {"items": [], "consumed": [], "next_after": None}
    router.get(f"{RUNS}/v1/events").respond(json={"items": [started, asked], "consumed": [], "next_after": None})
    router.get(f"{TASKS}/v1/events").respond(json={"items": [], "consumed": [consumed], "next_after": None})
    router.get(f"{AGENTS}/v1/events").respond(json=empty)
    router.get("http://automations.test/v1/events").respond(json=empty)
    page = client.get("/trace", params={"q": "run-1"}).text
    tree = page.split('aria-label="Causal tree"')[1]
    assert tree.index("workflow.run.started") < tree.index("task.requested")
    nested = tree.split("workflow.run.started")[1]
    assert "<ul>" in nested.split("task.requested")[0], "the request sits under its cause"
    assert "task-service (2 tries)" in tree


def test_dead_letters_of_this_org_and_a_redrive_only_for_the_owner(
        client: TestClient, router: respx.Router, org: Any, dead_letters: FakeDeadLetters) -> None:
    dead_letters.letters = [
        {"offset": "0", "type": "task.requested", "id": "ev-1", "orgid": org.org_id, "reason": "bad data",
         "error_type": "ValueError", "original": "stayops.tasks[0]@7", "attempts": "5", "redrives": "0"},
        {"offset": "1", "type": "task.requested", "id": "ev-2", "orgid": "another-org", "reason": "secret",
         "error_type": "", "original": "stayops.tasks[1]@9", "attempts": "5", "redrives": "0"}]
    sign_in(client, router, org)
    page = client.get("/dead-letters/task-service").text
    assert "bad data" in page and "stayops.tasks[0]@7" in page and "secret" not in page
    response = client.post("/dead-letters/task-service/redrive", data={"csrf": csrf_of(client)})
    assert response.status_code == 303 and dead_letters.redriven == ["task-service"]

    client.cookies.clear()
    sign_in(client, router, org, role="revenue-manager")
    assert "/redrive" not in client.get("/dead-letters/task-service").text
    response = client.post("/dead-letters/task-service/redrive", data={"csrf": csrf_of(client)})
    assert response.status_code == 403 and dead_letters.redriven == ["task-service"]


def test_only_an_operators_console_redrives_as_the_topic_holds_every_orgs_records(
        settings: ConsoleSettings, router: respx.Router, org: Any, dead_letters: FakeDeadLetters) -> None:
    tenant_console = create_app(settings.model_copy(update={"operator_redrive": False}),
                                transport=httpx.MockTransport(router.handler), dead_letters=dead_letters)
    with TestClient(tenant_console, follow_redirects=False) as client:
        sign_in(client, router, org)
        assert "/redrive" not in client.get("/dead-letters/task-service").text
        response = client.post("/dead-letters/task-service/redrive", data={"csrf": csrf_of(client)})
    assert response.status_code == 403 and dead_letters.redriven == []


def test_the_calendar_uses_task_services_days_or_falls_back_to_due_dates(
        client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    calendar = router.get(f"{TASKS}/v1/calendar").respond(
        json={"days": [{"date": "2026-02-01", "tasks": [task(title="Inspect the roof")]}]})
    page = client.get("/calendar").text
    assert "GET /v1/calendar" in page and "2026-02-01" in page and "Inspect the roof" in page
    assert {"from", "to"} <= set(calendar.calls.last.request.url.params)
    router.get(f"{TASKS}/v1/calendar").respond(404, json={"detail": "Not Found"})
    router.get(f"{TASKS}/v1/tasks").respond(json={"items": [
        task(title="Later", due_at="2026-03-02T10:00:00Z"), task(title="Sooner", due_at="2026-03-01T10:00:00Z"),
        task(title="Whenever")], "total": 3})
    page = client.get("/calendar").text
    assert "not available" in page and page.index("2026-03-01") < page.index("Sooner") < page.index("2026-03-02")
    assert "Whenever" not in page


class _Markup(HTMLParser):
    """What the accessibility rules look at: labels, controls, headers, landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.labelled: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.headers: list[dict[str, str | None]] = []
        self.tags: list[str] = []
        self.in_thead = False
        self.skip_link = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append(tag)
        if tag == "label" and found.get("for"):
            self.labelled.add(str(found["for"]))
        if tag in ("input", "select", "textarea") and found.get("type") != "hidden":
            self.controls.append(found)
        if tag == "thead":
            self.in_thead = True
        if tag == "th" and self.in_thead:
            self.headers.append(found)
        if tag == "a" and found.get("href") == "#main" and found.get("class") == "skip":
            self.skip_link = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "thead":
            self.in_thead = False


def test_pages_are_accessible_markup(client: TestClient, router: respx.Router, org: Any) -> None:
    sign_in(client, router, org)
    router.get(f"{TASKS}/v1/inbox", params={"limit": "200"}).respond(json={"items": [DECISION], "total": 1})
    router.get(f"{RUNS}/v1/runs").respond(json={"items": [], "next_cursor": None})
    router.get(f"{TASKS}/v1/board").respond(404)
    router.get(f"{TASKS}/v1/tasks").respond(json={"items": [], "total": 0})
    for path in ("/inbox", "/runs", "/board", "/trace", "/dead-letters"):
        markup = _Markup()
        markup.feed(client.get(path).text)
        assert markup.skip_link and {"header", "nav", "main"} <= set(markup.tags), path
        unlabelled = [c for c in markup.controls if c.get("id") not in markup.labelled]
        assert not unlabelled, f"{path}: inputs without a label: {unlabelled}"
        assert all(h.get("scope") == "col" for h in markup.headers), path
    client.cookies.delete(TOKEN_COOKIE)
    markup = _Markup()
    markup.feed(client.get("/sign-in").text)
    assert markup.controls and all(c.get("id") in markup.labelled for c in markup.controls)


def test_a_redrive_kafka_refuses_is_said_not_a_500(
        client: TestClient, router: respx.Router, org: Any, dead_letters: FakeDeadLetters) -> None:
    sign_in(client, router, org)
    dead_letters.broken = True
    response = client.post("/dead-letters/task-service/redrive", data={"csrf": csrf_of(client)})
    assert response.status_code == 503 and "Redrive failed" in response.text


def test_alike_leaves_of_a_trace_fold_into_one_line_and_a_count() -> None:
    from stayops_console.views import alike_runs
    from stayops_infra.trace import build_tree

    def event(id_: str, type_: str, cause: str | None, second: int) -> dict[str, Any]:
        return {"id": id_, "type": type_, "source": "/sync-airbnb", "time": f"2026-01-01T00:00:{second:02d}+00:00",
                "causationid": cause}

    items = [event("root", "stayops.sync.requested", None, 0),
             *(event(f"r{i}", "airbnb.reservation.created", "root", i) for i in range(1, 6)),
             event("done", "airbnb.sync.completed", "root", 9)]
    [root] = build_tree([{"items": items, "consumed": []}])
    runs = alike_runs(root.children)
    assert [(run[0].type, len(run)) for run in runs] == [("airbnb.reservation.created", 5),
                                                         ("airbnb.sync.completed", 1)]
