"""`stayops trace ID`: one causal tree across the four services from any event id,
run id, task id or correlation id. Each service answers GET /v1/events from its
own outbox (what it published) and inbox (what it applied); the tree joins them by
`causationid`, and an event no service published (a sync platform's, org-service's)
still appears, from the inbox records of the services that applied it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

from stayops_schemas.asyncapi import service_of

# Pages of /v1/events read per service and correlation, at most: 100 000 events.
_MAX_PAGES = 200
_PAGE = 500
_EARLIEST = datetime.min.replace(tzinfo=UTC)


class TraceError(Exception):
    """A service could not be asked, or refused the question."""


@dataclass(frozen=True)
class Applied:
    """One consumer group's inbox record of an event."""

    group: str
    handled_at: datetime
    attempts: int


@dataclass
class TraceEvent:
    id: str
    type: str
    source: str
    time: datetime | None
    subject: str | None
    correlationid: str | None
    causationid: str | None
    data: dict[str, Any] | None = None
    published: bool = True  # False: known only from the inbox records of its consumers
    applied: list[Applied] = field(default_factory=list)
    children: list[TraceEvent] = field(default_factory=list)

    @property
    def service(self) -> str:
        return service_of(self.source)


@dataclass
class Trace:
    query: str
    resolved_by: str  # correlation_id, event_id or subject
    correlation_ids: list[str]
    roots: list[TraceEvent]

    def walk(self) -> Iterator[tuple[int, TraceEvent]]:
        """Every event, depth first, causes before effects, with its depth."""
        stack = [(0, root) for root in reversed(self.roots)]
        while stack:
            depth, event = stack.pop()
            yield depth, event
            stack.extend((depth + 1, child) for child in reversed(event.children))

    def events(self) -> list[TraceEvent]:
        return [event for _, event in self.walk()]


async def _ask(http: httpx.AsyncClient, url: str, headers: Mapping[str, str],
               params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of one service's answer, as the pages themselves."""
    pages: list[dict[str, Any]] = []
    after = 0
    for _ in range(_MAX_PAGES):
        try:
            response = await http.get(f"{url}/v1/events", params={**params, "limit": _PAGE, "after": after},
                                      headers=dict(headers))
        except httpx.HTTPError as exc:
            raise TraceError(f"{url} cannot be reached (is the system up?): {exc!r}") from exc
        if response.status_code != 200:
            raise TraceError(f"{url}/v1/events answered {response.status_code}: {response.text[:500]}")
        page: dict[str, Any] = response.json()
        pages.append(page)
        if page.get("next_after") is None:
            break
        after = int(page["next_after"])
    return pages


async def _ask_all(http: httpx.AsyncClient, urls: Mapping[str, str], headers: Mapping[str, str],
                   params: dict[str, Any]) -> list[dict[str, Any]]:
    answers = await asyncio.gather(*(_ask(http, url, headers, params) for url in urls.values()))
    return [page for pages in answers for page in pages]


def _correlations(pages: list[dict[str, Any]]) -> list[str]:
    found = {item.get("correlationid") for page in pages for item in page["items"]}
    found |= {record.get("correlationid") for page in pages for record in page["consumed"]}
    return sorted(c for c in found if c)


async def collect_trace(urls: Mapping[str, str], headers: Mapping[str, str], query: str,
                        http: httpx.AsyncClient | None = None) -> Trace:
    """Resolve `query` (a correlation id, else an event id, else a subject: a task,
    run or listing id), read every service's history of the correlations it
    belongs to, and join it into one tree."""
    async with _client(http) as client:
        pages: list[dict[str, Any]] = []
        resolved_by = "correlation_id"
        for resolved_by in ("correlation_id", "event_id", "subject"):
            pages = await _ask_all(client, urls, headers, {resolved_by: query})
            if any(page["items"] or page["consumed"] for page in pages):
                break
        correlations = [query] if resolved_by == "correlation_id" else _correlations(pages)
        if resolved_by != "correlation_id" and correlations:
            pages = []
            for correlation in correlations:
                pages += await _ask_all(client, urls, headers, {"correlation_id": correlation})
    return Trace(query, resolved_by, correlations, build_tree(pages))


class _client:
    """The given client, or one of our own for the block."""

    def __init__(self, http: httpx.AsyncClient | None) -> None:
        self._given = http
        self._own: httpx.AsyncClient | None = None

    async def __aenter__(self) -> httpx.AsyncClient:
        if self._given is not None:
            return self._given
        self._own = httpx.AsyncClient(timeout=20)
        return self._own

    async def __aexit__(self, *exc: object) -> None:
        if self._own is not None:
            await self._own.aclose()


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def build_tree(pages: list[dict[str, Any]]) -> list[TraceEvent]:
    """Join the services' answers: events by id (published ones from their outbox,
    the others from their consumers' inbox records), each under its cause when the
    cause is in the trace, siblings in time order."""
    events: dict[str, TraceEvent] = {}
    for page in pages:
        for item in page["items"]:
            events[item["id"]] = TraceEvent(
                id=item["id"], type=item["type"], source=item["source"], time=_time(item["time"]),
                subject=item.get("subject") or item.get("partitionkey"), correlationid=item.get("correlationid"),
                causationid=item.get("causationid"), data=item.get("data"))
    applied: dict[str, list[Applied]] = {}
    for page in pages:
        for record in page["consumed"]:
            if record["event_id"] not in events:
                events[record["event_id"]] = TraceEvent(
                    id=record["event_id"], type=record["type"], source=record["source"],
                    time=_time(record.get("time")), subject=None, correlationid=record.get("correlationid"),
                    causationid=record.get("causationid"), published=False)
            found = Applied(record["group"], datetime.fromisoformat(record["handled_at"]), int(record["attempts"]))
            if found not in applied.setdefault(record["event_id"], []):
                applied[record["event_id"]].append(found)
    roots: list[TraceEvent] = []
    for event in events.values():
        event.applied = sorted(applied.get(event.id, []), key=lambda a: (a.handled_at, a.group))
        parent = events.get(event.causationid or "")
        (parent.children if parent is not None and parent is not event else roots).append(event)

    def order(event: TraceEvent) -> tuple[datetime, str]:
        return (event.time or (event.applied[0].handled_at if event.applied else _EARLIEST), event.id)

    for event in events.values():
        event.children.sort(key=order)
    roots.sort(key=order)
    return roots


def render_trace(trace: Trace, console: Console) -> None:
    if not trace.roots:
        console.print(f"No events found for {escape(trace.query)} (as a correlation id, event id or subject) "
                      "in this org.")
        return
    correlations = ", ".join(trace.correlation_ids) or "none"
    console.print(f"[bold]Trace of {escape(trace.query)}[/] (found by {trace.resolved_by}; "
                  f"correlation {escape(correlations)}): {len(trace.events())} events", highlight=False)
    for depth, event in trace.walk():
        when = event.time.strftime("%H:%M:%S.%f")[:-3] if event.time else "?"
        subject = f" {escape(event.subject)}" if event.subject else ""
        consumed = ", ".join(f"{a.group}" + (f" ({a.attempts} tries)" if a.attempts > 1 else "")
                             for a in event.applied) or "not applied by any StayOps service"
        origin = "" if event.published else " [dim](from its consumers' inbox)[/]"
        console.print(f"{'  ' * depth}{when} [cyan]{escape(event.service)}[/] [bold]{escape(event.type)}[/]"
                      f"{subject}{origin} -> {escape(consumed)}", highlight=False)
