"""The ops console: server-rendered pages over the four services' REST APIs.

Every page calls the services with the signed-in member's token; a route a service
does not offer (404) shows as "not available" on that page, a service that cannot be
reached as such, and neither is ever a 500."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from stayops_console import views
from stayops_console.auth import (
    CSRF_COOKIE,
    CSRF_FIELD,
    TOKEN_COOKIE,
    BadToken,
    DevDirectory,
    Member,
    csrf_matches,
    member_of,
    new_csrf,
)
from stayops_console.client import ServiceError, Services
from stayops_console.settings import ConsoleSettings
from stayops_infra.trace import TraceError, collect_trace
from stayops_schemas.catalog import CONSUMER_GROUPS

HERE = Path(__file__).parent
DLQ_TIMEOUT_S = 20.0
BOARD_GROUPS = ("status", "assignee", "priority")
CALENDAR_DAYS = 28
RUN_FILTERS = ("workflow_key", "status", "started_after", "started_before", "started_by", "listing_id", "cursor")


class SignInNeeded(Exception):
    pass


class CsrfRefused(Exception):
    pass


def create_app(settings: ConsoleSettings | None = None, *, transport: httpx.AsyncBaseTransport | None = None,
               dead_letters: Any = None) -> FastAPI:
    """`transport` replaces the network under the service calls (tests); `dead_letters`
    replaces stayops_infra.dlq (an object with `list_dead_letters` and `redrive`)."""
    settings = settings or ConsoleSettings()
    urls = settings.service_urls()
    directory = (DevDirectory(settings.registry_file, settings.dev_private_key_file, settings.dev_token_ttl_s)
                 if settings.registry_file is not None and settings.dev_private_key_file is not None else None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["when"] = views.short_time
    templates.env.globals["quote"] = quote
    templates.env.globals["alike_runs"] = views.alike_runs

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=settings.request_timeout_s, transport=transport) as http:
            app.state.http = http
            yield

    app = FastAPI(title="StayOps console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def csrf_cookie(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Every visitor gets a CSRF token in a cookie; forms echo it back (double submit)."""
        token = request.cookies.get(CSRF_COOKIE)
        request.state.csrf = token or new_csrf()
        response = await call_next(request)
        if token is None:
            response.set_cookie(CSRF_COOKIE, request.state.csrf, httponly=True, samesite="lax",
                                secure=settings.secure_cookies, path="/")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
        return response

    def member(request: Request) -> Member:
        token = request.cookies.get(TOKEN_COOKIE)
        if not token:
            raise SignInNeeded
        try:
            return member_of(token)
        except BadToken as exc:
            raise SignInNeeded from exc

    def services(request: Request, who: Member) -> Services:
        return Services(urls, request.app.state.http, who.token)

    def page(request: Request, name: str, who: Member | None, status_code: int = 200, **context: Any) -> HTMLResponse:
        names = directory.names() if directory else {}
        return templates.TemplateResponse(request, name, {
            "me": who, "csrf": request.state.csrf, "csrf_field": CSRF_FIELD, "names": names,
            "path": request.url.path, **context}, status_code=status_code)

    async def form(request: Request) -> dict[str, str]:
        """The submitted form, once its CSRF token matched the cookie's."""
        submitted = {key: str(value) for key, value in (await request.form()).items()}
        if not csrf_matches(request.cookies.get(CSRF_COOKIE), submitted.get(CSRF_FIELD)):
            raise CsrfRefused
        return submitted

    async def optional(call: Awaitable[Any]) -> tuple[Any, ServiceError | None]:
        """A part of a page: its answer, or why it is missing (401 still signs out)."""
        try:
            return await call, None
        except ServiceError as exc:
            if exc.signed_out:
                raise
            return None, exc

    async def decision_nights(client: Services, task: dict[str, Any]) -> list[views.Night]:
        """A decision's nights: inline in `data.proposal`, or, for a large proposal,
        stored by the service that made it (claim check: `data.proposal_ref`) and read
        from its REST API; unreadable, the decision shows no nights."""
        ref = (task.get("data") or {}).get("proposal_ref")
        if not isinstance(ref, dict) or not ref.get("id") or ref.get("service") not in client.urls:
            return views.proposal_nights(task)
        stored, _missing = await optional(client.get(ref["service"], f"/v1/results/{quote(str(ref['id']))}"))
        result = (stored or {}).get("result") or {}
        return views.proposal_nights({"data": {"proposal": result.get("recommendations") or []}})

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        target = f"/sign-in?next={quote(request.url.path)}"
        if request.headers.get("X-Console-Fragment"):
            return Response(status_code=401, headers={"X-Console-Sign-In": target})
        response = RedirectResponse(target, status_code=303)
        response.delete_cookie(TOKEN_COOKIE, path="/")
        return response

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, exc: CsrfRefused) -> Response:
        return page(request, "error.html", None, 403, title="Form expired",
                    message="This form's security token did not match. Go back, reload the page and try again.")

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        if exc.signed_out:
            response = RedirectResponse(f"/sign-in?expired=1&next={quote(request.url.path)}", status_code=303)
            response.delete_cookie(TOKEN_COOKIE, path="/")
            return response
        status = {0: 503, 404: 404, 403: 403, 409: 409, 422: 422}.get(exc.status, 502)
        title = {404: "Not available", 403: "Not allowed", 0: "Service unreachable"}.get(exc.status, "Refused")
        who = None
        with contextlib.suppress(SignInNeeded):
            who = member(request)
        return page(request, "error.html", who, status, title=title, error=exc,
                    message=f"{exc.service} answered {exc.status or 'nothing'} for {exc.path}: {exc.detail}")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/")
    async def home() -> RedirectResponse:
        return RedirectResponse("/inbox", status_code=303)

    # --- sign-in ---------------------------------------------------------------

    @app.get("/sign-in", response_class=HTMLResponse)
    async def sign_in_page(request: Request, next: str = "/inbox", expired: bool = False) -> HTMLResponse:
        orgs, problem = [], None
        if directory is not None:
            try:
                orgs = directory.orgs()
            except (OSError, ValueError, KeyError) as exc:
                problem = f"The org registry cannot be read: {exc}"
        return page(request, "sign_in.html", None, orgs=orgs, dev=directory is not None, next=_local(next),
                    expired=expired, problem=problem)

    async def signed_in(request: Request, token: str, next_path: str) -> Response:
        try:
            who = member_of(token)
            await services(request, who).get("task-service", "/v1/inbox", {"limit": 1})
        except (BadToken, ServiceError) as exc:
            orgs = []
            with contextlib.suppress(OSError, ValueError, KeyError):
                orgs = directory.orgs() if directory else []
            return page(request, "sign_in.html", None, 400, orgs=orgs, dev=directory is not None, next=next_path,
                        expired=False, problem=f"That token was refused: {exc}")
        response = RedirectResponse(_local(next_path), status_code=303)
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="lax", secure=settings.secure_cookies,
                            path="/")
        return response

    @app.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        submitted = await form(request)
        return await signed_in(request, submitted.get("token", "").strip(), submitted.get("next", "/inbox"))

    @app.post("/sign-in/dev")
    async def sign_in_dev(request: Request) -> Response:
        submitted = await form(request)
        if directory is None:
            return page(request, "error.html", None, 404, title="Not available",
                        message="Picking a seeded member is only offered in dev.")
        try:
            token = directory.token_for(submitted.get("org_id", ""), submitted.get("user_id", ""))
        except (KeyError, OSError, ValueError) as exc:
            return page(request, "error.html", None, 400, title="Unknown member", message=str(exc))
        return await signed_in(request, token, submitted.get("next", "/inbox"))

    @app.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        await form(request)
        response = RedirectResponse("/sign-in", status_code=303)
        response.delete_cookie(TOKEN_COOKIE, path="/")
        return response

    # --- inbox and tasks -------------------------------------------------------

    @app.get("/inbox", response_class=HTMLResponse)
    async def inbox(request: Request, done: str | None = None) -> HTMLResponse:
        who = member(request)
        answer = await services(request, who).get("task-service", "/v1/inbox", {"limit": 200})
        tasks = views.due_first(t for t in answer["items"] if t.get("status") not in views.TERMINAL_TASK)
        client = services(request, who)
        decisions = [(t, await decision_nights(client, t)) for t in tasks
                     if t.get("task_type") == "decision" and t.get("status") == "pending"]
        return page(request, "inbox.html", who, tasks=tasks, decisions=decisions, done=done,
                    may_decide=who.may("decisions.decide"))

    @app.get("/tasks/{task_id}", response_class=HTMLResponse)
    async def task_page(request: Request, task_id: str) -> HTMLResponse:
        who = member(request)
        task = await services(request, who).get("task-service", f"/v1/tasks/{quote(task_id)}")
        history, missing = await optional(services(request, who).get("task-service",
                                                                     f"/v1/tasks/{quote(task_id)}/history"))
        return page(request, "task.html", who, task=task, nights=await decision_nights(services(request, who), task),
                    history=history or [], history_missing=missing, may_decide=who.may("decisions.decide"))

    @app.post("/tasks/{task_id}/decision")
    async def decide(request: Request, task_id: str) -> Response:
        who = member(request)
        submitted = await form(request)
        client = services(request, who)
        action = submitted.get("action", "")
        body: dict[str, Any] = {"outcome": "rejected" if action == "reject" else "approved",
                                "comment": submitted.get("comment") or None}
        if action == "edit":
            task = await client.get("task-service", f"/v1/tasks/{quote(task_id)}")
            try:
                body["changes"] = views.price_changes(await decision_nights(client, task), submitted)
            except ValueError as exc:
                return page(request, "error.html", who, 422, title="Not a price", message=str(exc))
        elif action not in ("approve", "reject"):
            return page(request, "error.html", who, 422, title="Unknown action", message=repr(action))
        await client.post("task-service", f"/v1/tasks/{quote(task_id)}/decision", body)
        return RedirectResponse(f"/inbox?done={quote(task_id)}", status_code=303)

    @app.get("/board", response_class=HTMLResponse)
    async def board(request: Request, group_by: str = "status") -> HTMLResponse:
        who = member(request)
        client = services(request, who)
        group_by = group_by if group_by in BOARD_GROUPS else "status"
        found, missing = await optional(client.get("task-service", "/v1/board", {"group_by": group_by}))
        columns = views.board_columns(found) if found is not None else None
        source = "GET /v1/board"
        if columns is None:
            tasks = await client.get("task-service", "/v1/tasks", {"limit": 200})
            columns, source = views.by_status(tasks["items"]), "GET /v1/tasks, by status"
        return page(request, "board.html", who, columns=columns, source=source, group_by=group_by,
                    groups=BOARD_GROUPS if found is not None else (), fallback=missing is not None)

    @app.get("/calendar", response_class=HTMLResponse)
    async def calendar(request: Request) -> HTMLResponse:
        who = member(request)
        client = services(request, who)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        window = {"from": (today - timedelta(days=7)).isoformat(),
                  "to": (today + timedelta(days=CALENDAR_DAYS)).isoformat()}
        found, missing = await optional(client.get("task-service", "/v1/calendar", window))
        days = views.calendar_days(found) if found is not None else None
        source = "GET /v1/calendar"
        if days is None:
            tasks = await client.get("task-service", "/v1/tasks", {"limit": 200})
            days, source = views.by_day(tasks["items"]), "GET /v1/tasks, by due date"
        return page(request, "calendar.html", who, days=days, source=source, fallback=missing is not None)

    # --- runs ------------------------------------------------------------------

    @app.get("/runs", response_class=HTMLResponse)
    async def runs(request: Request) -> HTMLResponse:
        who = member(request)
        filters = {key: request.query_params.get(key, "").strip() for key in RUN_FILTERS}
        params = {key: value for key, value in filters.items() if value}
        found = await services(request, who).get("workflow-service", "/v1/runs", params)
        return page(request, "runs.html", who, runs=found["items"], next_cursor=found.get("next_cursor"),
                    filters=filters, statuses=("running", "waiting", "paused", "completed", "failed", "cancelled"))

    async def run_timeline(request: Request, who: Member, run_id: str) -> views.Timeline:
        client = services(request, who)
        run = await client.get("workflow-service", f"/v1/runs/{quote(run_id)}")
        agents, _ = await optional(client.get("agent-service", "/v1/agents"))
        agent_ids = {a["user_id"] for a in (agents or {}).get("items", [])}
        return views.timeline(run, agent_ids, directory.names() if directory else {})

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run_page(request: Request, run_id: str) -> HTMLResponse:
        who = member(request)
        return page(request, "run.html", who, timeline=await run_timeline(request, who, run_id))

    @app.get("/runs/{run_id}/timeline", response_class=HTMLResponse)
    async def run_fragment(request: Request, run_id: str) -> HTMLResponse:
        """The timeline alone: the run page polls it every 2 s while the run goes on."""
        who = member(request)
        return page(request, "_timeline.html", who, timeline=await run_timeline(request, who, run_id))

    # --- trace -----------------------------------------------------------------

    @app.get("/trace", response_class=HTMLResponse)
    async def trace(request: Request, q: str = "") -> HTMLResponse:
        who = member(request)
        found, problem = None, None
        query = q.strip()
        if query:
            try:
                found = await collect_trace(urls, {"Authorization": f"Bearer {who.token}"}, query,
                                            http=request.app.state.http)
            except TraceError as exc:
                problem = str(exc)
        return page(request, "trace.html", who, q=query, trace=found, problem=problem)

    # --- agents ----------------------------------------------------------------

    @app.get("/agents", response_class=HTMLResponse)
    async def agents(request: Request) -> HTMLResponse:
        who = member(request)
        found = await services(request, who).get("agent-service", "/v1/agents")
        return page(request, "agents.html", who, agents=found["items"], may_manage=who.may("agents.manage"))

    @app.get("/agents/{user_id}", response_class=HTMLResponse)
    async def agent_page(request: Request, user_id: str) -> HTMLResponse:
        who = member(request)
        client = services(request, who)
        listed = await client.get("agent-service", "/v1/agents")
        agent = next((a for a in listed["items"] if a["user_id"] == user_id), None)
        if agent is None:
            raise ServiceError("agent-service", f"/v1/agents/{user_id}", 404, "no such agent in this org")
        activity, activity_missing = await optional(client.get("agent-service", f"/v1/agents/{quote(user_id)}/activity",
                                                               {"limit": 100}))
        scorecard, scorecard_missing = await optional(client.get("agent-service",
                                                                 f"/v1/agents/{quote(user_id)}/scorecard"))
        return page(request, "agent.html", who, agent=agent, activity=(activity or {}).get("items", []),
                    activity_missing=activity_missing, scorecard=scorecard, scorecard_missing=scorecard_missing,
                    may_manage=who.may("agents.manage"))

    @app.post("/agents/{user_id}/{switch}")
    async def agent_switch(request: Request, user_id: str, switch: str) -> Response:
        who = member(request)
        await form(request)
        if switch not in ("pause", "resume"):
            return page(request, "error.html", who, 404, title="Not available", message=f"no {switch!r} switch")
        await services(request, who).post("agent-service", f"/v1/agents/{quote(user_id)}/{switch}")
        return RedirectResponse(f"/agents/{quote(user_id)}", status_code=303)

    # --- dead letters ----------------------------------------------------------

    def dlq() -> Any:
        if dead_letters is not None:
            return dead_letters
        from stayops_infra import dlq as module

        return module

    def may_redrive(who: Member) -> bool:
        return settings.operator_redrive and who.is_owner

    @app.get("/dead-letters", response_class=HTMLResponse)
    async def dead_letter_groups(request: Request) -> HTMLResponse:
        who = member(request)
        return page(request, "dead_letters.html", who, groups=sorted(CONSUMER_GROUPS), group=None, letters=[],
                    available=settings.kafka_bootstrap_servers is not None, may_redrive=may_redrive(who),
                    problem=None, redriven=None)

    @app.get("/dead-letters/{group}", response_class=HTMLResponse)
    async def dead_letter_group(request: Request, group: str, redriven: str | None = None) -> HTMLResponse:
        who = member(request)
        letters: list[dict[str, str]] = []
        problem = None
        available = settings.kafka_bootstrap_servers is not None
        if group not in CONSUMER_GROUPS:
            raise ServiceError("console", f"/dead-letters/{group}", 404, "no such consumer group")
        if available:
            try:
                found = await asyncio.wait_for(
                    dlq().list_dead_letters(settings.kafka_bootstrap_servers, group, 500), DLQ_TIMEOUT_S)
                letters = [letter for letter in found if letter.get("orgid") in (who.org_id, "")]
            except Exception as exc:
                problem = f"Kafka could not be read: {exc!r}"
        return page(request, "dead_letters.html", who, groups=sorted(CONSUMER_GROUPS), group=group,
                    letters=letters, available=available, may_redrive=may_redrive(who), problem=problem,
                    redriven=redriven)

    @app.post("/dead-letters/{group}/redrive")
    async def redrive(request: Request, group: str) -> Response:
        who = member(request)
        await form(request)
        if not may_redrive(who):
            return page(request, "error.html", who, 403, title="Not allowed",
                        message="Only an org owner or admin, on the operator's console, may redrive dead letters.")
        if group not in CONSUMER_GROUPS or settings.kafka_bootstrap_servers is None:
            return page(request, "error.html", who, 404, title="Not available",
                        message="Dead letters are not available here.")
        try:
            sent, parked = await asyncio.wait_for(dlq().redrive(settings.kafka_bootstrap_servers, group),
                                                  DLQ_TIMEOUT_S)
        except Exception as exc:
            return page(request, "error.html", who, 503, title="Redrive failed",
                        message=f"Kafka could not be reached or refused the redrive: {exc!r}")
        return RedirectResponse(f"/dead-letters/{quote(group)}?redriven={sent}+sent,+{parked}+left+parked",
                                status_code=303)

    return app


def _local(path: str) -> str:
    """Only a path on this console (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") else "/inbox"
