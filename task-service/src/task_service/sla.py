"""SLA policies: when a task's assignee is reminded of its due time, and how an
overdue task is escalated (notify the assignee, then the role's lead, then
reassign), each stage an offset from the task's due time. Pure: the durable timer
that fires the stages is `store.task_due_timers`, the loop `timers.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import TypeAdapter

Action = Literal["notify_assignee", "notify_lead", "reassign"]
Kind = Literal["reminder", "due", "escalation"]


@dataclass(frozen=True)
class EscalationStep:
    after: timedelta  # overdue by this much
    action: Action
    user_id: str | None = None  # reassign: to this user ...
    role_id: str | None = None  # ... or to this role (its member by the assignment rule)


@dataclass(frozen=True)
class Stage:
    """One moment of a task's SLA: `offset` from its due time (negative: before)."""

    offset: timedelta
    kind: Kind
    step: EscalationStep | None = None

    def at(self, due_at: datetime) -> datetime:
        return due_at + self.offset


@dataclass(frozen=True)
class SlaPolicy:
    remind_before: tuple[timedelta, ...] = ()
    remind_at_due: bool = False
    escalation: tuple[EscalationStep, ...] = ()
    leads: dict[str, str] = field(default_factory=dict)  # role id -> its lead's user id

    def stages(self) -> list[Stage]:
        """Every stage, earliest first (the offsets are distinct: the API checks it)."""
        found = [Stage(-before, "reminder") for before in self.remind_before]
        if self.remind_at_due:
            found.append(Stage(timedelta(0), "due"))
        found.extend(Stage(step.after, "escalation", step) for step in self.escalation)
        return sorted(found, key=lambda s: s.offset)

    def next_stage(self, last_offset: timedelta | None) -> Stage | None:
        """The first stage after the one fired last (None fired: the first)."""
        return next((s for s in self.stages() if last_offset is None or s.offset > last_offset), None)

    def stage_at(self, offset: timedelta) -> Stage | None:
        return next((s for s in self.stages() if s.offset == offset), None)

    def as_json(self) -> dict[str, Any]:
        return {
            "remind_before": [iso_duration(d) for d in self.remind_before],
            "remind_at_due": self.remind_at_due,
            "escalation": [{"after": iso_duration(s.after), "action": s.action, "user_id": s.user_id,
                            "role_id": s.role_id} for s in self.escalation],
            "leads": dict(self.leads),
        }

    @classmethod
    def of_json(cls, value: dict[str, Any]) -> SlaPolicy:
        return cls(
            remind_before=tuple(_seconds(d) for d in value.get("remind_before", ())),
            remind_at_due=bool(value.get("remind_at_due", False)),
            escalation=tuple(EscalationStep(after=_seconds(s["after"]), action=s["action"],
                                            user_id=s.get("user_id"), role_id=s.get("role_id"))
                             for s in value.get("escalation", ())),
            leads=dict(value.get("leads", {})),
        )


def iso_duration(delta: timedelta) -> str:
    """A duration as ISO 8601, e.g. PT1H30M, P1DT2H, PT0.5S."""
    whole = int(delta.total_seconds())
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    seconds = f"{secs}.{delta.microseconds:06d}".rstrip("0") if delta.microseconds else str(secs)
    parts = [(hours, "H"), (minutes, "M")]
    time = "".join(f"{n}{u}" for n, u in parts if n) + (f"{seconds}S" if secs or delta.microseconds else "")
    if not days and not time:
        return "PT0S"
    return (f"P{days}D" if days else "P") + (f"T{time}" if time else "")


# Tasks due outside these years have no SLA timers: a stage's time (up to 90 days
# either side) stays within what Python's datetime holds.
HORIZON = (datetime(1000, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))


def covered(due_at: datetime | None) -> bool:
    return due_at is not None and HORIZON[0] <= due_at < HORIZON[1]


_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def _seconds(text: str) -> timedelta:
    return _DURATION.validate_python(text)


def skipped(stage: Stage, due_at: datetime, now: datetime) -> bool:
    """A reminder before the due time that fires once the task is due already (armed
    after its moment, or the service was down meanwhile) is skipped: "due in an hour"
    said after the due time would be wrong. Later stages fire, late if need be."""
    return stage.kind == "reminder" and now >= due_at
