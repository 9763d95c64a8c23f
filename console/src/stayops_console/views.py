"""What the pages show, shaped from the services' answers (no HTTP here)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

TERMINAL_TASK = frozenset({"completed", "cancelled", "failed"})
TERMINAL_RUN = frozenset({"completed", "failed", "cancelled"})
TASK_STATUSES = ("pending", "in_progress", "blocked", "completed", "failed", "cancelled")
SERVICE_ACTORS = frozenset({"workflow-service", "task-service", "automation-service", "agent-service", "rule"})
_UUIDISH = re.compile(r"^[0-9a-fA-F-]{32,36}$")


def due_first(tasks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks with a due date first, soonest first; then the others, oldest first."""
    return sorted(tasks, key=lambda t: (t.get("due_at") is None, t.get("due_at") or "", t.get("created_at") or ""))


@dataclass(frozen=True)
class Night:
    listing_id: str
    date: str
    current: Decimal | None
    proposed: Decimal | None
    currency: str
    change_pct: float | None
    confidence: float | None
    factors: list[dict[str, Any]]

    @property
    def key(self) -> str:
        return f"{self.listing_id}|{self.date}"

    @property
    def moving_factors(self) -> list[dict[str, Any]]:
        return [f for f in self.factors if _number(f.get("effect_pct")) not in (None, 0.0)]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _money(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def proposal_nights(task: Mapping[str, Any]) -> list[Night]:
    """A decision task's proposal as nights: `data.proposal` is the list of
    recommended nights (or an object holding them under `recommendations`)."""
    proposal = (task.get("data") or {}).get("proposal")
    if isinstance(proposal, dict):
        proposal = proposal.get("recommendations") or proposal.get("nights")
    nights = []
    for item in proposal if isinstance(proposal, list) else []:
        if not isinstance(item, dict) or not item.get("listing_id") or not item.get("date"):
            continue
        current, proposed = _money(item.get("current_price")), _money(item.get("recommended_price"))
        change = _number(item.get("change_pct"))
        if change is None and current and proposed is not None:
            change = float((proposed - current) / current * 100)
        nights.append(Night(str(item["listing_id"]), str(item["date"]), current, proposed,
                            str(item.get("currency") or ""), change, _number(item.get("confidence")),
                            [f for f in item.get("factors") or [] if isinstance(f, dict)]))
    return sorted(nights, key=lambda n: (n.listing_id, n.date))


def price_changes(nights: list[Night], submitted: Mapping[str, str]) -> list[dict[str, Any]]:
    """The decider's edits: each night whose submitted price differs from the proposal,
    as `{listing_id, date, price}` (what POST /v1/tasks/{id}/decision takes)."""
    changes = []
    for night in nights:
        raw = (submitted.get(f"price:{night.key}") or "").strip()
        if not raw:
            continue
        try:
            price = Decimal(raw)
        except InvalidOperation as exc:
            raise ValueError(f"{raw!r} is not a price ({night.listing_id} {night.date})") from exc
        if price != night.proposed:
            changes.append({"listing_id": night.listing_id, "date": night.date, "price": str(price)})
    return changes


@dataclass(frozen=True)
class Column:
    title: str
    tasks: list[dict[str, Any]]


def board_columns(board: Any) -> list[Column] | None:
    """task-service's GET /v1/board, if its shape is one we know: columns, each a title
    (or status) and its tasks; None if not."""
    columns = board.get("columns") if isinstance(board, dict) else board
    if not isinstance(columns, list):
        return None
    found = []
    for column in columns:
        if not isinstance(column, dict):
            return None
        title = next((column[k] for k in ("title", "label", "name", "value", "status", "key", "group")
                      if column.get(k) not in (None, "")), None)
        tasks = column.get("tasks") if isinstance(column.get("tasks"), list) else column.get("items")
        if not isinstance(tasks, list):
            return None
        found.append(Column("(none)" if title is None else str(title), [t for t in tasks if isinstance(t, dict)]))
    return found


def by_status(tasks: list[dict[str, Any]]) -> list[Column]:
    return [Column(status, due_first(t for t in tasks if t.get("status") == status)) for status in TASK_STATUSES]


def by_day(tasks: Iterable[dict[str, Any]]) -> list[Column]:
    """Tasks with a due date, by the day they are due."""
    days: dict[str, list[dict[str, Any]]] = {}
    for task in due_first(tasks):
        if task.get("due_at"):
            days.setdefault(str(task["due_at"])[:10], []).append(task)
    return [Column(day, items) for day, items in sorted(days.items())]


def calendar_days(calendar: Any) -> list[Column] | None:
    """task-service's GET /v1/calendar, if its shape is one we know: days with their
    tasks, or a list of tasks with due dates; None if not."""
    days = calendar.get("days") if isinstance(calendar, dict) else None
    if isinstance(days, list) and all(isinstance(d, dict) for d in days):
        found = []
        for day in days:
            tasks = day.get("tasks") if isinstance(day.get("tasks"), list) else day.get("items")
            date = day.get("date") or day.get("day")
            if not date or not isinstance(tasks, list):
                return None
            found.append(Column(str(date), tasks))
        return found
    items = calendar.get("items") if isinstance(calendar, dict) else None
    if isinstance(items, list) and all(isinstance(t, dict) for t in items):
        return by_day(items)
    return None


@dataclass
class TimelineEntry:
    at: str
    actor: str
    actor_name: str
    actor_kind: str  # person, AI agent, automation, timer
    kind: str  # step, wait, retry, compensation, failure
    message: str


@dataclass
class Timeline:
    run: dict[str, Any]
    steps: list[dict[str, Any]]
    entries: list[TimelineEntry] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.run.get("status") not in TERMINAL_RUN


def actor_kind(actor: str, agents: set[str]) -> str:
    if actor == "timer":
        return "timer"
    if actor in agents:
        return "AI agent"
    if actor in SERVICE_ACTORS or actor.startswith(("rule", "automation")) or not _UUIDISH.match(actor):
        return "automation"
    return "person"


def entry_kind(message: str) -> str:
    text = message.lower()
    if "compensat" in text:
        return "compensation"
    if "attempt" in text or "retry" in text or "retries" in text:
        return "retry"
    if "fail" in text:
        return "failure"
    if "wait" in text or "decision asked" in text or "paused" in text:
        return "wait"
    return "step"


def _first_mention(log: list[dict[str, Any]], step: str) -> int:
    """Where the log first speaks of a step: the steps in the order the run reached them."""
    marks = (f"step {step}:", f"step {step} ", f"(step {step})", f"for {step}:")
    for position, entry in enumerate(log):
        message = str(entry.get("message", ""))
        if any(mark in message for mark in marks):
            return position
    return len(log)


def timeline(run: dict[str, Any], agents: set[str], names: Mapping[str, str]) -> Timeline:
    """A run's steps, in the order it reached them, and its log, each line saying who
    acted and what kind of thing it was."""
    steps = []
    for name, record in (run.get("steps") or {}).items():
        if not isinstance(record, dict):
            continue
        by = str(record.get("by") or record.get("approved_by") or "")
        steps.append({"name": name, "status": record.get("status", ""), "by": by,
                      "by_name": names.get(by, by), "by_kind": actor_kind(by, agents) if by else "",
                      "attempt": record.get("attempt"), "outcome": record.get("outcome"),
                      "error": record.get("error")})
    log = [e for e in run.get("log") or [] if isinstance(e, dict)]
    steps.sort(key=lambda step: _first_mention(log, step["name"]))
    entries = [TimelineEntry(at=str(e.get("at", "")), actor=str(e.get("actor", "")),
                             actor_name=names.get(str(e.get("actor", "")), str(e.get("actor", ""))),
                             actor_kind=actor_kind(str(e.get("actor", "")), agents),
                             kind=entry_kind(str(e.get("message", ""))), message=str(e.get("message", "")))
               for e in run.get("log") or []]
    return Timeline(run, steps, entries)


def short_time(value: Any, millis: bool = False) -> str:
    """An ISO timestamp as `YYYY-MM-DD HH:MM:SS` (`.mmm` with `millis`), UTC as the
    services give it."""
    if not value:
        return ""
    text = str(value)
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    shown = moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return shown[:-3] if millis else shown[:-7]


def alike_runs(events: list[Any]) -> list[list[Any]]:
    """Siblings of a trace in runs of alike leaves (same type and service, no effects
    of their own): a sync's dozens of reservations read as one line and a count."""
    runs: list[list[Any]] = []
    for event in events:
        last = runs[-1][-1] if runs else None
        if (last is not None and not event.children and not last.children and last.type == event.type
                and last.service == event.service):
            runs[-1].append(event)
        else:
            runs.append([event])
    return runs
