"""Tasks: what they are, who gets them and how their status may change. Pure: no
I/O, no framework."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from stayops_kit.errors import Conflict, InvalidRequest, NotFound, PermissionDenied, PreconditionFailed
from stayops_schemas.events.agents import Autonomy
from stayops_schemas.events.org import OrgPolicyUpdated, UserType
from stayops_schemas.events.tasks import (
    AUTOMATION_ASSIGNEE,
    SIDE_EFFECTING_ACTIONS,
    DecisionOutcome,
    Priority,
    TaskStatus,
    TaskType,
)
from stayops_schemas.guardrails import PriceRefusal, check_prices
from stayops_schemas.results import ResultDoesNotFit, check_result

# The system user that executes `automated` tasks (automation-service).
AUTOMATION = AUTOMATION_ASSIGNEE

OPEN_STATUSES: frozenset[TaskStatus] = frozenset(
    {TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.BLOCKED}
)


class TaskNotFound(NotFound):
    code = "task-not-found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} does not exist in your organisation")


class TransitionNotAllowed(Conflict):
    code = "transition-not-allowed"
    title = "Transition not allowed"

    def __init__(self, task_id: str, current: TaskStatus, wanted: TaskStatus) -> None:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_TRANSITIONS[current])) or "none"
        super().__init__(
            f"task {task_id} is {current.value}; it cannot become {wanted.value} "
            f"(allowed from {current.value}: {allowed})"
        )


class NotYourTask(PermissionDenied):
    code = "not-your-task"

    def __init__(self, task_id: str, detail: str | None = None) -> None:
        super().__init__(
            detail or f"task {task_id} is assigned to someone else: only its assignee may act on it"
        )


class ClaimFirst(NotYourTask):
    code = "claim-first"

    def __init__(self, task: Task) -> None:
        super().__init__(
            task.id,
            f"task {task.id} waits in the queue of {task.queue}: a member of it claims it with "
            f"POST /v1/tasks/{task.id}/start before completing, deciding, failing or blocking it",
        )


class NotInQueue(NotYourTask):
    code = "not-in-queue"

    def __init__(self, task: Task) -> None:
        super().__init__(
            task.id, f"task {task.id} waits in the queue of {task.queue}; only its members may claim it"
        )


class SideEffectNeedsWorkflow(PermissionDenied):
    """An automated task that would change the outside world, asked for by a member."""

    title = "Side effect needs a workflow"
    code = "side-effect-needs-workflow"

    def __init__(self, action: str) -> None:
        super().__init__(
            f"an automated task with action {action!r} changes the outside world and is started "
            "only by a workflow run (after its decision step), never by a request: start the "
            "workflow instead (POST /v1/workflows/{key}/runs); 'notify' tasks may be created directly"
        )


class ResultInvalid(InvalidRequest):
    title = "Result does not fit the skill"
    code = "result-does-not-fit"


class BatchDecisionInvalid(InvalidRequest):
    """A batch decision's body that does not fit its batch: unknown segments, edits
    outside the approved segments, malformed nights."""

    title = "Batch decision invalid"
    code = "batch-decision-invalid"

    def __init__(self, task_id: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"the decision on batch task {task_id} is refused, nothing was changed: "
                         + "; ".join(problems))


class PriceEditsRefused(InvalidRequest):
    """Edited prices that name no night of the proposal, or break the guardrails."""

    title = "Price edits refused"
    code = "price-edits-refused"

    def __init__(self, task_id: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            f"the edited prices of decision task {task_id} are refused, nothing was changed: "
            + "; ".join(problems)
        )


class DecisionRequired(Conflict):
    code = "decision-required"
    title = "Decision required"

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"task {task_id} is a decision: answer it with POST /v1/tasks/{task_id}/decision"
        )


class NotADecision(Conflict):
    code = "not-a-decision"
    title = "Not a decision"

    def __init__(self, task_id: str, task_type: TaskType) -> None:
        super().__init__(
            f"task {task_id} is a {task_type.value} task; only decision tasks take a decision "
            "(complete it with /complete instead)"
        )


class ParentTaskInvalid(InvalidRequest):
    code = "parent-task-invalid"


class OnlyAutomatedForAutomation(InvalidRequest):
    title = "Not an automated task"
    code = "only-automated-for-automation"

    def __init__(self, task_type: TaskType) -> None:
        super().__init__(
            f"only automated tasks can be assigned to {AUTOMATION!r}, not a {task_type.value} task: "
            "assign it to a person, an AI agent or a role"
        )


def check_side_effects(task_type: TaskType, data: Mapping[str, Any]) -> None:
    """Refuse a member's automated task whose action has side effects (see
    SIDE_EFFECTING_ACTIONS); such tasks come only from a workflow run's requests."""
    action = data.get("action")
    if task_type is TaskType.AUTOMATED and isinstance(action, str) and action in SIDE_EFFECTING_ACTIONS:
        raise SideEffectNeedsWorkflow(action)


# The task state machine. Completed and failed are final; a blocked task can be
# resumed; a pending task can be completed directly (e.g. an approval by rule).
ALLOWED_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset(
        {TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.BLOCKED}
    ),
    TaskStatus.IN_PROGRESS: frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.BLOCKED}),
    TaskStatus.BLOCKED: frozenset({TaskStatus.IN_PROGRESS, TaskStatus.PENDING, TaskStatus.FAILED}),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}
# Whoever asked for a task may withdraw it while it is open; cancelled is final.
ALLOWED_TRANSITIONS.update({status: ALLOWED_TRANSITIONS[status] | {TaskStatus.CANCELLED}
                            for status in OPEN_STATUSES})


@dataclass(frozen=True)
class Decision:
    """A decider's answer to a decision task. `changes` are the decider's edits to
    the proposal (a list of price overrides travels as `{"prices": [...]}`)."""

    outcome: DecisionOutcome
    comment: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, outcome: DecisionOutcome, comment: str | None, changes: list[Any] | dict[str, Any] | None
    ) -> Decision:
        if changes is None:
            return cls(outcome, comment)
        if isinstance(changes, list):
            return cls(outcome, comment, {"prices": changes})
        return cls(outcome, comment, dict(changes))

    def as_result(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "comment": self.comment, "changes": self.changes}

    @property
    def price_edits(self) -> Any:
        """The decider's price overrides, under either key the workflow engine reads."""
        return self.changes.get("prices") or self.changes.get("changes") or []


@dataclass(frozen=True)
class Task:
    id: str
    org_id: str
    title: str
    task_type: TaskType
    status: TaskStatus
    priority: Priority
    created_by: str
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    department_id: str | None = None
    role_id: str | None = None
    assigned_to: str | None = None
    assignee_type: UserType | None = None
    assignment_rule: str | None = None
    due_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    status_reason: str | None = None
    parent_task_id: str | None = None
    workflow_run_id: str | None = None
    workflow_step: str | None = None
    request_id: str | None = None
    completed_by: str | None = None
    labels: tuple[str, ...] = ()
    # A subtask that must be done (completed or cancelled) before its parent completes.
    required: bool = True
    # Bumped by every change: the ETag a client sends back in If-Match.
    version: int = 1
    project_id: str | None = None
    milestone_id: str | None = None
    # The listing the task is about (given, or its data's `listing_id`).
    listing_id: str | None = None
    # People who may decide it besides its assignee: an escalation that added a reviewer.
    reviewers: tuple[str, ...] = ()

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def queue(self) -> str:
        """The queue an unassigned task waits in, as people read it."""
        if self.role_id is not None:
            return f"role {self.role_id}"
        if self.department_id is not None:
            return f"department {self.department_id}"
        return "nobody"

    @property
    def skill(self) -> str | None:
        skill = self.data.get("skill")
        return skill if isinstance(skill, str) else None

    @property
    def proposal(self) -> list[dict[str, Any]]:
        """The nights a decision task proposes to price (empty: it proposes no price)."""
        proposal = self.data.get("proposal")
        if not isinstance(proposal, list):
            return []
        return [night for night in proposal if isinstance(night, dict)]

    @property
    def batch(self) -> list[dict[str, Any]] | None:
        """The segments a batch decision task proposes (each `{segment, listing_ids,
        proposal_ref, ...}`), or None for any other task."""
        batch = self.data.get("batch")
        if not isinstance(batch, list):
            return None
        return [entry for entry in batch if isinstance(entry, dict)]

    @property
    def proposal_ref(self) -> dict[str, Any] | None:
        """The stored result whose nights a decision task proposes, when they were too
        many to travel in the task (claim check): its ref, with a summary."""
        ref = self.data.get("proposal_ref")
        return ref if isinstance(ref, dict) else None

    def can_become(self, wanted: TaskStatus) -> bool:
        return wanted in ALLOWED_TRANSITIONS[self.status]

    def transition(self, wanted: TaskStatus, now: datetime) -> Task:
        if not self.can_become(wanted):
            raise TransitionNotAllowed(self.id, self.status, wanted)
        return replace(self, status=wanted, updated_at=now)

    def check_actor(self, user_id: str, *, deciding: bool = False) -> None:
        """Only the assignee may complete, decide, fail or block a task; a queued
        task is claimed first (`claim`). A reviewer (added by an escalation) may decide."""
        if user_id == self.assigned_to or (deciding and user_id in self.reviewers):
            return
        if self.assigned_to is None and self.queue != "nobody":
            raise ClaimFirst(self)
        raise NotYourTask(self.id)

    def claim(
        self, user_id: str, user_type: UserType, role_id: str | None, department_id: str | None
    ) -> Assignment | None:
        """Who starts the task: its assignee (None: nothing to assign), or a member of
        the role (or, for a department's task, the department) it waits for, who takes it."""
        if self.assigned_to is not None or self.queue == "nobody":
            self.check_actor(user_id)
            return None
        member = (role_id == self.role_id) if self.role_id is not None else (department_id == self.department_id)
        if not member:
            raise NotInQueue(self)
        return Assignment(user_id, user_type, f"claimed by {user_id} from the queue of {self.queue}")

    def assign(self, assignment: Assignment) -> Task:
        return replace(
            self,
            assigned_to=assignment.assigned_to,
            assignee_type=assignment.assignee_type,
            assignment_rule=assignment.rule,
        )

    def start(self, now: datetime) -> Task:
        return replace(self.transition(TaskStatus.IN_PROGRESS, now), status_reason=None)

    def complete(self, result: dict[str, Any], by: str, now: datetime) -> Task:
        """Done by `by` with `result`, which must fit the task's skill (if it has one)."""
        if self.task_type is TaskType.DECISION:
            raise DecisionRequired(self.id)
        done = self.transition(TaskStatus.COMPLETED, now)
        try:
            check_result(self.skill, result)
        except ResultDoesNotFit as exc:
            raise ResultInvalid(f"task {self.id}: {exc}") from exc
        return replace(done, result=result, status_reason=None, completed_by=by)

    def decide(self, decision: Decision, by: str, now: datetime, policy: OrgPolicyUpdated) -> Task:
        """Answered by `by`. Approved price edits must name nights of the proposal and
        pass the org's price guardrails, else nothing changes."""
        if self.task_type is not TaskType.DECISION:
            raise NotADecision(self.id, self.task_type)
        done = self.transition(TaskStatus.COMPLETED, now)
        if self.batch is not None:
            check_batch_decision(self, decision, policy)
        elif decision.outcome is DecisionOutcome.APPROVED:
            check_price_edits(self, decision.price_edits, policy)
        return replace(done, result=decision.as_result(), status_reason=None, completed_by=by)

    def fail(self, reason: str, by: str, now: datetime, result: dict[str, Any] | None = None) -> Task:
        """Failed, with what it did get done (`result`, e.g. a publish's listings that
        were applied) when its doer says so."""
        failed = replace(self.transition(TaskStatus.FAILED, now), status_reason=reason, completed_by=by)
        return replace(failed, result=result) if result else failed

    def block(self, reason: str, now: datetime) -> Task:
        # Blocking ends nothing: who blocked it is in `stayops.task.blocked`, and
        # `completed_by` stays for whoever finally completes or fails the task.
        return replace(self.transition(TaskStatus.BLOCKED, now), status_reason=reason)

    def cancel(self, reason: str, now: datetime) -> Task:
        return replace(self.transition(TaskStatus.CANCELLED, now), status_reason=reason)

    def with_reviewer(self, user_id: str, now: datetime) -> Task:
        """Another person who may decide it, the assignee staying as they are."""
        return replace(self, reviewers=(*self.reviewers, user_id), updated_at=now)

    def rescheduled(self, due_at: datetime, now: datetime) -> Task:
        return replace(self, due_at=due_at, updated_at=now)

    def check_version(self, if_match: str | None) -> None:
        """An If-Match naming another version than the task's: 412. Absent: no check."""
        if if_match is None:
            return
        wanted = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
        if "*" not in wanted and self.etag not in wanted:
            raise StaleVersion(self)

    def edited(self, changes: Mapping[str, Any], now: datetime) -> Task:
        """The task with the edited fields (of EDITABLE_FIELDS); only an open task is edited."""
        if not self.is_open:
            raise NotOpen(self.id, self.status, "edited")
        unknown = set(changes) - EDITABLE_FIELDS
        if unknown:
            raise InvalidRequest(f"fields {sorted(unknown)} cannot be edited")
        values = dict(changes)
        if "labels" in values:
            values["labels"] = tuple(dict.fromkeys(values["labels"] or ()))
        return replace(self, **values, updated_at=now)

    def claimed(self, user_id: str, user_type: UserType, role_id: str | None,
                department_id: str | None, now: datetime) -> tuple[Task, Assignment]:
        """A queued open task becomes the caller's: a member of its role (or, for a
        department's task, the department), or anyone for a task with no queue."""
        if not self.is_open:
            raise NotOpen(self.id, self.status, "claimed")
        if self.assigned_to is not None:
            raise AlreadyAssigned(self)
        if self.role_id is not None and role_id != self.role_id:
            raise NotInQueue(self)
        if self.role_id is None and self.department_id is not None and department_id != self.department_id:
            raise NotInQueue(self)
        assignment = Assignment(user_id, user_type, f"claimed by {user_id} from the queue of {self.queue}")
        return replace(self.assign(assignment), updated_at=now), assignment

    def released(self, user_id: str, now: datetime) -> tuple[Task, Assignment]:
        """Its assignee gives it back to its queue; a started task waits again."""
        if not self.is_open:
            raise NotOpen(self.id, self.status, "released")
        if self.assigned_to != user_id:
            raise NotYourTask(self.id)
        assignment = Assignment(None, None, f"released by {user_id} to the queue of {self.queue}")
        status = TaskStatus.PENDING if self.status is TaskStatus.IN_PROGRESS else self.status
        return replace(self.assign(assignment), status=status, updated_at=now), assignment

    def reopened(self, now: datetime) -> Task:
        """A finished task (completed, failed or cancelled) waits again, result kept in history."""
        if self.is_open:
            raise NotOpen(self.id, self.status, "reopened", finished=True)
        return replace(self, status=TaskStatus.PENDING, status_reason=None, result=None, completed_by=None,
                       updated_at=now)

    def check_subtasks_done(self, subtasks: Sequence[Task]) -> None:
        """A parent completes only once each required subtask is completed or cancelled."""
        open_ones = [t for t in subtasks if t.required and t.status not in DONE_STATUSES]
        if open_ones:
            raise SubtasksOpen(self.id, open_ones)


# What PATCH /v1/tasks/{id} may change.
EDITABLE_FIELDS: frozenset[str] = frozenset(
    {"title", "description", "priority", "due_at", "labels", "assigned_to", "role_id", "department_id",
     "project_id", "milestone_id"})
# The fields a history entry compares, before and after a change.
TRACKED_FIELDS: tuple[str, ...] = (
    "title", "description", "priority", "due_at", "labels", "assigned_to", "role_id", "department_id",
    "status", "status_reason", "result", "completed_by", "project_id", "milestone_id", "reviewers")
# A subtask in one of these no longer holds its parent back.
DONE_STATUSES: frozenset[TaskStatus] = frozenset({TaskStatus.COMPLETED, TaskStatus.CANCELLED})


def changed_fields(before: Task | None, after: Task) -> dict[str, dict[str, Any]]:
    """Each tracked field that differs, as `{field: {"from": old, "to": new}}` in JSON terms."""
    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, tuple):
            return list(value)
        return getattr(value, "value", value)

    return {
        name: {"from": plain(getattr(before, name)) if before else None, "to": plain(getattr(after, name))}
        for name in TRACKED_FIELDS
        if before is None or getattr(before, name) != getattr(after, name)
    }


@dataclass(frozen=True)
class Actor:
    """Who made a change, for the task's history: a person, an AI agent, the
    automation user, a workflow, or task-service's own rules (`system`)."""

    id: str
    type: str
    action: str


def actor_of(user_id: str, user_type: UserType | None, action: str) -> Actor:
    if user_id == AUTOMATION:
        return Actor(user_id, "automation", action)
    return Actor(user_id, "ai_agent" if user_type is UserType.AI_AGENT else "person", action)


class StaleVersion(PreconditionFailed):
    code = "stale-version"
    title = "Stale version"

    def __init__(self, task: Task) -> None:
        super().__init__(f"task {task.id} is now at version {task.etag}: read it again (GET its ETag) "
                         "and send that in If-Match")


class NotOpen(Conflict):
    code = "transition-not-allowed"
    title = "Transition not allowed"

    def __init__(self, task_id: str, status: TaskStatus, what: str, *, finished: bool = False) -> None:
        needed = "finished (completed, failed or cancelled)" if finished else "open"
        super().__init__(f"task {task_id} is {status.value}; only a {needed} task can be {what}")


class AlreadyAssigned(Conflict):
    code = "already-assigned"
    title = "Already assigned"

    def __init__(self, task: Task) -> None:
        super().__init__(f"task {task.id} is assigned to {task.assigned_to}; only a queued task is claimed")


class SubtasksOpen(Conflict):
    code = "subtasks-open"
    title = "Subtasks open"

    def __init__(self, task_id: str, open_ones: Sequence[Task]) -> None:
        self.open_subtasks = [t.id for t in open_ones]
        names = ", ".join(f"{t.id} ({t.title!r}, {t.status.value})" for t in open_ones)
        super().__init__(f"task {task_id} cannot complete while its required subtasks are open: {names}")


def check_price_edits(task: Task, edits: Any, policy: OrgPolicyUpdated) -> None:
    """Each edit `{listing_id, date, price}` names a night of the task's proposal,
    and the night at its new price passes the guardrails (with the proposal's
    current price, currency and bounds). Refused: every problem, per night."""
    if not isinstance(edits, list):
        raise PriceEditsRefused(task.id, ["changes must be a list of {listing_id, date, price}"])
    if not edits:
        return
    nights = {(str(n.get("listing_id")), str(n.get("date"))): n for n in task.proposal}
    # A proposal by reference is not here: each edit is checked on its own here, and
    # against its night by workflow-service, which fetches the nights to apply it.
    by_reference = (task.proposal_ref is not None or task.batch is not None) and not nights
    problems: list[str] = []
    edited: list[dict[str, Any]] = []
    for index, edit in enumerate(edits):
        if not isinstance(edit, dict) or not {"listing_id", "date", "price"} <= edit.keys():
            problems.append(f"changes[{index}] is not a {{listing_id, date, price}} edit")
            continue
        night = nights.get((str(edit["listing_id"]), str(edit["date"])))
        if night is None and by_reference:
            night = {"listing_id": edit["listing_id"], "date": edit["date"]}
        if night is None:
            problems.append(f"{edit['listing_id']} {edit['date']}: no such night in the proposal")
            continue
        edited.append({
            "listing_id": night.get("listing_id"), "date": night.get("date"), "price": edit["price"],
            "currency": night.get("currency") or task.data.get("currency"),
            "current_price": night.get("current_price"),
            "min_price": night.get("min_price"), "max_price": night.get("max_price"),
        })
    problems.extend(_refusal(r) for r in check_prices(policy, edited))
    if problems:
        raise PriceEditsRefused(task.id, problems)


BATCH_CHANGES = frozenset({"segments", "prices"})


def check_batch_decision(task: Task, decision: Decision, policy: OrgPolicyUpdated) -> None:
    """A batch decision's body: `changes.segments` (optional; all when absent) names
    distinct segments of the batch, and each edit of `changes.prices` is a
    `{listing_id, date, price}` of a listing in an approved segment, a night at most
    once, at a price the guardrails accept. A rejection takes neither. 422 naming
    every problem."""
    batch = task.batch or []
    changes = decision.changes
    problems = [f"changes.{key} is not a batch decision's field (segments, prices)"
                for key in sorted(set(changes) - BATCH_CHANGES)]
    segments = changes.get("segments")
    edits = changes.get("prices")
    if decision.outcome is DecisionOutcome.REJECTED:
        if segments is not None or edits:
            problems.append("a rejection rejects the whole batch: it takes no segments or price edits")
        if problems:
            raise BatchDecisionInvalid(task.id, problems)
        return
    names = [str(entry.get("segment")) for entry in batch]
    chosen = names
    if segments is not None:
        if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
            problems.append("changes.segments must be a list of segment names")
        elif not segments:
            problems.append("changes.segments is empty: approve at least one segment, or reject")
        else:
            unknown = [s for s in segments if s not in names]
            if unknown:
                problems.append(f"changes.segments names {', '.join(map(repr, unknown))}, not in the batch "
                                f"({', '.join(names)})")
            if len(set(segments)) != len(segments):
                problems.append("changes.segments names a segment twice")
            chosen = [s for s in segments if s in names]
    listings = {str(lid): str(entry.get("segment")) for entry in batch if str(entry.get("segment")) in chosen
                for lid in entry.get("listing_ids") or []}
    elsewhere = {str(lid): str(entry.get("segment")) for entry in batch for lid in entry.get("listing_ids") or []}
    if edits is not None and not isinstance(edits, list):
        problems.append("changes.prices must be a list of {listing_id, date, price}")
        edits = []
    seen: set[tuple[str, str]] = set()
    for index, edit in enumerate(edits or []):
        at = f"changes.prices[{index}]"
        if not isinstance(edit, dict) or not {"listing_id", "date", "price"} <= edit.keys():
            problems.append(f"{at} is not a {{listing_id, date, price}} edit")
            continue
        if set(edit) - {"listing_id", "date", "price"}:
            problems.append(f"{at} has fields besides listing_id, date and price: "
                            f"{', '.join(sorted(set(edit) - {'listing_id', 'date', 'price'}))}")
        listing, night = str(edit["listing_id"]), str(edit["date"])
        try:
            date.fromisoformat(night)
        except ValueError:
            problems.append(f"{at}.date {night!r} is not a date (YYYY-MM-DD)")
        try:
            price = Decimal(str(edit["price"]))
            if not price.is_finite() or price <= 0:
                raise InvalidOperation
        except InvalidOperation:
            problems.append(f"{at}.price {edit['price']!r} is not a positive amount")
        if listing not in listings:
            problems.append(f"{at}: listing {listing} is in segment {elsewhere[listing]!r}, which this decision "
                            "does not approve" if listing in elsewhere else f"{at}: listing {listing} is in no "
                            "segment of the batch")
        if (listing, night) in seen:
            problems.append(f"{at}: {listing} {night} is edited twice")
        seen.add((listing, night))
    if problems:
        raise BatchDecisionInvalid(task.id, problems)
    if edits:
        # The nights themselves are stored by reference: each edit is checked against
        # the guardrails here, and against its night by workflow-service.
        check_price_edits(task, edits, policy)


def _refusal(refusal: PriceRefusal) -> str:
    return f"{refusal.listing_id} {refusal.date} at {refusal.price}: {refusal.reason}"


@dataclass(frozen=True)
class Assignment:
    """Who a new task goes to and why. `assigned_to` None: it waits in a queue."""

    assigned_to: str | None
    assignee_type: UserType | None
    rule: str


@dataclass(frozen=True)
class AgentStanding:
    """An AI agent's governance as agent-service last announced it."""

    skills: frozenset[str]
    autonomy: Autonomy
    paused: bool
    org_paused: bool

    def refuses(self, task_type: TaskType, skill: str | None) -> str | None:
        """Why the agent may not hold a task of this type and skill now; None: it may."""
        if self.paused:
            return "paused"
        if self.org_paused:
            return "its org's agents are paused"
        if self.autonomy is Autonomy.OFF:
            return "autonomy off"
        if task_type is TaskType.ANALYSIS and (skill is None or skill not in self.skills):
            return f"lacks the skill {skill!r}" if skill else "the task names no skill"
        return None


@dataclass(frozen=True)
class Candidate:
    """An active member of a role, as the assignment rule sees them. `standing`: an
    AI agent's governance, None for a person or an agent not yet announced."""

    user_id: str
    user_type: UserType
    joined_at: datetime
    open_tasks: int
    standing: AgentStanding | None = None

    def refuses(self, task_type: TaskType, skill: str | None) -> str | None:
        """Why the role's rule passes this member over for the task; None: it may have it.
        People take any task. An AI agent takes only analysis tasks (agent-service does
        nothing else), and only while it takes work and has the task's skill."""
        if self.user_type is not UserType.AI_AGENT:
            return None
        if task_type is not TaskType.ANALYSIS:
            return f"an AI agent takes no {task_type.value} task"
        return self.standing.refuses(task_type, skill) if self.standing is not None else None


def assign_by_role(role_id: str, candidates: Sequence[Candidate], *, task_type: TaskType,
                   skill: str | None = None) -> Assignment:
    """Among the members who may have the task (`Candidate.refuses`): the one with the
    fewest open tasks, then the oldest membership, then the smallest user id; people
    and AI agents alike. Nobody: the role's queue. The rule names who was passed over."""
    if not candidates:
        return Assignment(None, None, f"role:{role_id} -> role queue (no active member)")
    refusals = {c.user_id: why for c in candidates if (why := c.refuses(task_type, skill)) is not None}
    passed = "; passed over: " + ", ".join(f"{user} ({why})" for user, why in sorted(refusals.items()))
    eligible = [c for c in candidates if c.user_id not in refusals]
    if not eligible:
        return Assignment(None, None, f"role:{role_id} -> role queue (no active member may take it{passed})")
    passed = passed if refusals else ""
    # A skill is what an AI agent is for: an agent that may do it takes the analysis
    # before a person of the role does (who is the fallback while no agent may).
    agents = [c for c in eligible if c.user_type is UserType.AI_AGENT] if skill is not None else []
    if agents and len(agents) < len(eligible):
        chosen = min(agents, key=lambda c: (c.open_tasks, c.joined_at, c.user_id))
        return Assignment(chosen.user_id, chosen.user_type,
                          f"role:{role_id} -> the AI agent with skill {skill}, before the role's people{passed}")
    chosen = min(eligible, key=lambda c: (c.open_tasks, c.joined_at, c.user_id))
    if len(eligible) == 1:
        only = "only member who may take it" if refusals else "only active member"
        return Assignment(chosen.user_id, chosen.user_type, f"role:{role_id} -> {only}{passed}")
    return Assignment(
        chosen.user_id,
        chosen.user_type,
        f"role:{role_id} -> fewest open tasks ({chosen.open_tasks}) among {len(eligible)} "
        f"active members, then oldest membership, then user id{passed}",
    )


def choose_assignment(
    *,
    task_type: TaskType,
    assigned_to: str | None,
    role_id: str | None,
    department_id: str | None,
    requested_by: str,
    explicit_assignee_type: UserType | None,
    candidates: Sequence[Candidate],
    skill: str | None = None,
) -> Assignment | None:
    """An explicit assignee wins; else the role's rule; else the department's queue.
    None: the task has nobody and no queue, so nothing is announced."""
    if assigned_to == AUTOMATION:
        if task_type is not TaskType.AUTOMATED:
            raise OnlyAutomatedForAutomation(task_type)
        return Assignment(AUTOMATION, None, f"automated task -> automation (requested by {requested_by})")
    if assigned_to is not None:
        return Assignment(
            assigned_to, explicit_assignee_type or UserType.HUMAN, f"assigned by user {requested_by}"
        )
    if role_id is not None:
        return assign_by_role(role_id, candidates, task_type=task_type, skill=skill)
    if department_id is not None:
        return Assignment(None, None, f"department:{department_id} -> department queue (no role given)")
    return None


def reassign_open_work(
    holder: str, open_tasks: Sequence[Task], candidates_by_role: Mapping[str, Sequence[Candidate]],
    *, why: Callable[[Task], str] | None = None,
) -> list[tuple[Task, Assignment]]:
    """The holder's open tasks go each to its role by the same rule (counting what
    this reassignment already handed out, never back to the holder), else to its
    department's queue, else to nobody. `why`: why a task leaves the holder (by
    default, they left the organisation)."""
    reason = why or (lambda _: f"{holder} left the organisation")
    handed_out: dict[str, int] = {}
    plan: list[tuple[Task, Assignment]] = []
    for task in open_tasks:
        if task.role_id is not None:
            candidates = [
                replace(c, open_tasks=c.open_tasks + handed_out.get(c.user_id, 0))
                for c in candidates_by_role.get(task.role_id, ())
                if c.user_id != holder
            ]
            chosen = assign_by_role(task.role_id, candidates, task_type=task.task_type, skill=task.skill)
        elif task.department_id is not None:
            chosen = Assignment(None, None, f"department:{task.department_id} -> department queue")
        else:
            chosen = Assignment(None, None, "unassigned: no role or department to hand it to")
        if chosen.assigned_to is not None:
            handed_out[chosen.assigned_to] = handed_out.get(chosen.assigned_to, 0) + 1
        plan.append((task, replace(chosen, rule=f"{reason(task)}; {chosen.rule}")))
    return plan


def work_to_hand_back(standing: AgentStanding, open_tasks: Sequence[Task]) -> list[Task]:
    """The agent's open tasks it may no longer hold: all of them when it is paused or
    off; an analysis task whose skill it lost."""
    return [task for task in open_tasks if standing.refuses(task.task_type, task.skill) is not None]


class DependencyCycle(InvalidRequest):
    code = "dependency-cycle"
    title = "Dependency cycle"

    def __init__(self, cycle: Sequence[str]) -> None:
        self.problem_members = {"cycle": list(cycle)}
        super().__init__("this dependency would close a cycle: " + " is blocked by ".join(cycle)
                         + "; remove one of its dependencies first")


class Blocked(Conflict):
    code = "blocked"
    title = "Blocked"

    def __init__(self, task: Task, blockers: Sequence[Task], what: str) -> None:
        self.problem_members = {"blockers": [t.id for t in blockers]}
        names = ", ".join(f"{t.id} ({t.title!r}, {t.status.value})" for t in blockers)
        super().__init__(f"task {task.id} cannot be {what} while it is blocked by: {names}")


class DependencyNotFound(NotFound):
    code = "dependency-not-found"

    def __init__(self, task_id: str, blocker_id: str) -> None:
        super().__init__(f"task {task_id} is not blocked by task {blocker_id}")


class ProjectNotFound(NotFound):
    code = "project-not-found"

    def __init__(self, project_id: str) -> None:
        super().__init__(f"project {project_id} does not exist in your organisation")


class MilestoneNotFound(NotFound):
    code = "milestone-not-found"

    def __init__(self, milestone_id: str, project_id: str | None = None) -> None:
        where = f"project {project_id}" if project_id else "your organisation"
        super().__init__(f"milestone {milestone_id} does not exist in {where}")


def open_blockers(blockers: Sequence[Task]) -> list[Task]:
    """The blockers that still hold a task back: those not done (completed or cancelled)."""
    return [t for t in blockers if t.status not in DONE_STATUSES]
