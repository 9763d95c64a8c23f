"""Workflow definitions, runs, the run log and the saga that advances a run step by
step: each call takes a run's state and one happening (a task finished, a timer
fired, a reply arrived) and returns the next state with what to announce. Pure: no
I/O, no framework."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from stayops_kit.errors import Conflict, NotFound
from stayops_kit.expressions import ExpressionError, evaluate, render
from stayops_schemas.catalog import event_type
from stayops_schemas.claims import ResultRef, apply_price_edits, ref_of, unknown_edits
from stayops_schemas.events.org import OrgPolicyUpdated
from stayops_schemas.events.tasks import AUTOMATION_ASSIGNEE, TaskCompleted, TaskFailed
from stayops_schemas.events.workflows import RunStatus, WaitKind
from stayops_schemas.guardrails import check_prices, default_policy, needs_person
from stayops_schemas.results import summary_disagrees
from workflow_service.definitions import (
    COMPENSATION_RETRY,
    DEFAULT_MAX_CONCURRENCY,
    END,
    ON_ITEM_FAILURE_CONTINUE,
    ON_ITEM_FAILURE_FAIL_FAST,
    ON_TIMEOUT_FAIL,
    ON_TIMEOUT_GOTO,
    Definition,
    Step,
    StepKind,
    TaskSpec,
)

# Who a log entry names when the event does not say who acted.
TASK_SERVICE_ACTOR = "task-service"
# Who a log entry names when the saga itself acted.
SERVICE_ACTOR = "workflow-service"
RULE_ACTOR = "rule"
TIMER_ACTOR = "timer"
# Who a log entry names when a decision's deadline acted.
DEADLINE_ACTOR = "deadline"
# The purposes of the timers an open task or decision has besides its step's own
# (a timer's step is `<step>@<purpose>`).
TIMEOUT, DEADLINE, ESCALATION = "timeout", "deadline", "escalation"
# The `workflow_step` of the notification an escalation sends.
ESCALATION_STEP = "escalation"
# An escalation's `escalate_to.mode`: hand the decision over (the default), or add the
# escalation's target as a second person who may decide it.
ESCALATE_REASSIGN, ESCALATE_ADD_REVIEWER = "reassign", "add_reviewer"
# Steps one happening may run through before the run must wait: a `next` loop stops here.
MAX_STEPS_PER_TRANSITION = 200
# A `days` wait longer than this is a mistake (and past what a timedelta holds).
MAX_WAIT_DAYS = 3660
# TaskRequested's limit on a title.
MAX_TITLE = 300
# The `workflow_step` of the notification a run that needs attention asks for.
ATTENTION_STEP = "needs_attention"
OWNER_ROLE = "owner"
# What a run waits for (state["waiting"]["kind"]) as the run.waiting event names it.
_WAIT_KINDS = {"task": WaitKind.TASK, "compensation": WaitKind.TASK, "event": WaitKind.EVENT,
               "timer": WaitKind.TIMER, "retry": WaitKind.TIMER, "compensation_retry": WaitKind.TIMER,
               "map": WaitKind.RUNS}
# The waits a timer ends.
_TIMED_WAITS = frozenset({"timer", "event", "retry", "compensation_retry"})
FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.NEEDS_ATTENTION, RunStatus.CANCELLED})
# The `workflow_step` of the notification a failed run (compensated) asks for.
FAILED_STEP = "run_failed"
# The waits whose task a cancel withdraws in task-service.
_TASK_WAITS = frozenset({"task", "compensation"})
# A map step's bounds: items in one map, and the JSON size of a child's result kept in
# the parent's step result (a bigger one is named, not copied: read the child run).
MAX_MAP_ITEMS = 1000
MAX_CHILD_RESULT_CHARS = 1000
# A map item's status: pending (not started yet), running (its child run is open), the
# child run's end (completed, failed, needs_attention, cancelled), or not_started (the
# step ended before it started: fail_fast, or the parent was cancelled).
ITEM_PENDING, ITEM_RUNNING, ITEM_NOT_STARTED = "pending", "running", "not_started"
ITEM_SUCCEEDED = "completed"


class RunNotFound(NotFound):
    code = "run-not-found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"workflow run {run_id} does not exist in your organisation")


class WorkflowNotFound(NotFound):
    code = "workflow-not-found"

    def __init__(self, key: str) -> None:
        super().__init__(f"workflow {key!r} has no definition in your organisation and is not built in; "
                         "POST /v1/workflows to publish one")


class RunNotPausable(Conflict):
    code = "run-not-pausable"

    def __init__(self, run_id: str, status: RunStatus, wanted: str) -> None:
        super().__init__(f"workflow run {run_id} is {status.value}; only a "
                         + ("running or waiting run can be paused" if wanted == "pause" else
                            "paused run can be resumed"))


class RunAlreadyFinished(Conflict):
    code = "run-already-finished"

    def __init__(self, run_id: str, status: RunStatus) -> None:
        super().__init__(f"workflow run {run_id} is already {status.value}; only a queued, running, waiting or paused "
                         "run can be cancelled")


@dataclass(frozen=True)
class WorkflowDefinition:
    """One published version of a workflow; versions are immutable, a change is a new
    version. `document` holds the steps (its schema arrives with the saga engine)."""

    org_id: str
    key: str
    version: int
    name: str
    document: dict[str, Any]
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class WorkflowRun:
    """One run of one definition version: the saga's state."""

    id: str
    org_id: str
    workflow_key: str
    workflow_version: int
    status: RunStatus
    started_at: datetime
    updated_at: datetime
    current_step: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    started_by: str | None = None
    request_id: str | None = None
    correlation_id: str | None = None
    definition_org_id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    compensated: bool | None = None
    failure_reason: str | None = None
    # The key overlapping runs share (the definition's `concurrency`), if it has one.
    concurrency_key: str | None = None
    parent_run_id: str | None = None
    # For a parallel step's branch: `<step>/<branch>` (repeated for a branch of a
    # branch) of the workflow version it names, which is its definition.
    branch: str | None = None


@dataclass(frozen=True)
class RunLogEntry:
    """One line of a run's log: who did what, and when."""

    run_id: str
    org_id: str
    at: datetime
    actor: str
    message: str


def _task_label(task_id: str, step: str | None) -> str:
    return f"task {task_id}" + (f" (step {step})" if step else "")


def task_completed_entry(run: WorkflowRun, event: TaskCompleted, at: datetime) -> RunLogEntry:
    message = f"{_task_label(event.task_id, event.workflow_step)} completed"
    if event.outcome is not None:
        message += f": {event.outcome.value}"
    if event.comment:
        message += f" ({event.comment})"
    return RunLogEntry(run_id=run.id, org_id=run.org_id, at=at, actor=event.completed_by, message=message)


def task_failed_entry(run: WorkflowRun, event: TaskFailed, at: datetime) -> RunLogEntry:
    return RunLogEntry(
        run_id=run.id,
        org_id=run.org_id,
        at=at,
        actor=event.failed_by or TASK_SERVICE_ACTOR,
        message=f"{_task_label(event.task_id, event.workflow_step)} failed: {event.reason}",
    )


# --- the saga -------------------------------------------------------------------

_DATETIME = TypeAdapter(datetime)


@dataclass(frozen=True)
class TaskToRequest:
    """A `stayops.task.requested` the transition asks for."""

    workflow_step: str
    request_id: str
    title: str
    task_type: str
    priority: str
    description: str | None
    role_id: str | None
    assigned_to: str | None
    data: dict[str, Any]
    # Due this long after the request (a decision's deadline), if it is due at all.
    due_in: timedelta | None = None


@dataclass(frozen=True)
class TaskToReassign:
    """A `stayops.task.reassign.requested`: an escalation hands the open task to a
    user or to a role's queue."""

    request_id: str
    assigned_to: str | None
    role_id: str | None
    reason: str
    requested_by: str
    # `reassign` hands the task over; `add_reviewer` keeps the assignee and adds a decider.
    mode: str = "reassign"


@dataclass(frozen=True)
class TimerToSet:
    """A durable timer: due `delay` after the database's now, or at `at`."""

    step: str
    delay: timedelta | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class TaskToCancel:
    """A `stayops.task.cancel.requested` for the task a run no longer waits for."""

    request_id: str
    reason: str
    requested_by: str


@dataclass(frozen=True)
class ChildToStart:
    """A child run a map (or parallel) step starts: in the same transaction, the way
    a run request is handled, once per request id (`<run>:<step>:<attempt>:<index>`).
    A branch's `workflow_key` is empty: the handler gives it the parent's."""

    request_id: str
    workflow_key: str
    workflow_version: int | None
    parameters: dict[str, Any]
    # For a parallel step's branch: `<step>/<branch>` of the parent's own workflow
    # version (the child runs that version, with this as its `branch`).
    branch: str | None = None


@dataclass(frozen=True)
class ChildToControl:
    """What the parent's cancel, pause or resume (or a fail_fast map) does to an open
    child run: `cancel`, `pause` or `resume`."""

    run_id: str
    action: str
    actor: str
    reason: str | None = None
    compensate: bool = False


@dataclass(frozen=True)
class EventToEmit:
    event_type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class LogLine:
    actor: str
    message: str


@dataclass
class Transition:
    """What one happening did to a run: its new state, and what to announce."""

    status: RunStatus
    current_step: str | None
    state: dict[str, Any]
    tasks: list[TaskToRequest] = field(default_factory=list)
    timers: list[TimerToSet] = field(default_factory=list)
    emits: list[EventToEmit] = field(default_factory=list)
    cancels: list[TaskToCancel] = field(default_factory=list)
    reassigns: list[TaskToReassign] = field(default_factory=list)
    children: list[ChildToStart] = field(default_factory=list)
    child_controls: list[ChildToControl] = field(default_factory=list)
    log: list[LogLine] = field(default_factory=list)
    result: dict[str, Any] | None = None
    failure_reason: str | None = None
    compensated: bool | None = None
    applied: bool = True
    # Who cancelled the run and why, once it is cancelled.
    cancelled_by: str | None = None
    cancel_reason: str | None = None

    @property
    def waiting(self) -> dict[str, Any] | None:
        waiting: dict[str, Any] | None = self.state.get("waiting")
        return waiting

    @property
    def wait_kind(self) -> WaitKind | None:
        if self.status is not RunStatus.WAITING or not self.waiting:
            return None
        return _WAIT_KINDS[self.waiting["kind"]]


class _StepRefused(Exception):
    """A step the engine will not start (e.g. prices nobody approved): the step fails
    with this reason, and no retry could change it."""


class DetailNeeded(Exception):
    """The saga needs a stored result's detail (claim check) it was not given: the
    caller fetches it from its owner and runs the happening again with it."""

    def __init__(self, ref: ResultRef) -> None:
        self.ref = ref
        super().__init__(f"result {ref.id} of {ref.service} is needed")


# `${steps.<name>.result...}`: the steps whose results a template reads.
_RESULT_OF_STEP = re.compile(r"steps\.([A-Za-z0-9_-]+)\.result\b")


class Saga:
    """One run of one definition. Each public method applies one happening to the
    run's state and returns the `Transition`; `applied` is False for a happening the
    run is not waiting for (a stale or duplicate completion, a late completion of an
    earlier attempt), which changes nothing.

    Failures follow the step's saga kind: a step is first retried per its retry
    policy (each attempt with its own request id, after a durable timer); when its
    attempts are spent, a failure at or before the pivot compensates the completed
    compensatable steps in reverse order, one compensation at a time, each retried
    too; a failure after the pivot never compensates: the run goes on with a
    warning. `policy` is the org's price policy, which bounds every decision whose
    prices a publish step uses."""

    def __init__(self, definition: Definition, run_id: str, parameters: dict[str, Any],
                 state: dict[str, Any] | None = None, status: RunStatus = RunStatus.RUNNING,
                 current_step: str | None = None, *, org_id: str = "",
                 policy: OrgPolicyUpdated | None = None,
                 details: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.definition = definition
        # Stored results fetched for this happening, by ref id (claim check).
        self.details: Mapping[str, dict[str, Any]] = details or {}
        self.org_id = org_id
        self.run_id = run_id
        self.parameters = parameters
        self.policy = policy or default_policy(org_id or "unknown")
        self.state: dict[str, Any] = copy.deepcopy(state) if state else {}
        self.state.setdefault("steps", {})
        self.state.setdefault("attempts", {})
        self._entered = 0
        self._out = Transition(status=status, current_step=current_step, state=self.state)

    # the happenings

    def start(self) -> Transition:
        self._say(SERVICE_ACTOR, f"run started: {self.definition.name}")
        self._enter(0)
        return self._out

    def task_completed(self, workflow_step: str, *, request_id: str | None, actor: str, result: dict[str, Any],
                       outcome: str | None = None, comment: str | None = None,
                       changes: dict[str, Any] | None = None) -> Transition:
        if self._paused():
            return self._hold("task_completed", f"{workflow_step} completed by {actor}", workflow_step=workflow_step,
                              request_id=request_id, actor=actor, result=result, outcome=outcome, comment=comment,
                              changes=changes)
        waiting = self._waiting_for("task", workflow_step, request_id)
        if waiting is None:
            return self._compensation_done(workflow_step, request_id) or self._stale()
        self.state.pop("waiting", None)
        name = waiting["step"]
        step = self.definition.step(name)
        record = self._record(name)
        record.update(status="completed", result=result, by=actor)
        self._publish_report(step, result)
        if step.type == "decision":
            self._decided(step, actor, outcome, comment, changes)
            return self._out
        self._after(step)
        return self._out

    def _decided(self, step: Step, actor: str, outcome: str | None, comment: str | None,
                 changes: dict[str, Any] | None) -> None:
        """A decision taken (by a person, or by its deadline): the prices it approves,
        bounded by the org's price policy, and on to the next step."""
        name = step.name
        record = self._record(name)
        if outcome not in ("approved", "rejected"):
            self._failed(step, actor, f"step {name} failed: the decision came back without an outcome",
                         retryable=False)
            return
        if record.get("batch") is not None:
            self._batch_decided(step, actor, outcome, comment, changes or {})
            return
        approved = outcome == "approved"
        proposal_ref = record.get("proposal_ref")
        proposal = self._proposal_nights(step)[1] if proposal_ref and approved else record.get("proposal")
        prices = approved_prices(proposal, changes or {}, record.get("currency")) if approved else []
        record.update(outcome=outcome, comment=comment, changes=changes or {},
                      approved_by=actor if approved else None)
        record["result"] = self._decision_result(outcome, comment, changes or {}, prices, proposal_ref)
        unknown = unknown_edits(proposal or [], _price_edits(changes or {})) if proposal_ref and approved else []
        if unknown:
            self._failed(step, actor, f"step {name} failed: the approved edits name no night of the "
                         f"proposal: {', '.join(unknown)}; nothing was published", retryable=False)
            return
        if self._refused_by_policy(step, actor, record, prices):
            return
        self._after(step)

    def _refused_by_policy(self, step: Step, actor: str, record: dict[str, Any], prices: list[Any]) -> bool:
        """Fail the decision step when its approved prices break the org's price policy
        (for a step whose decision approves prices); True when it did."""
        refused = check_prices(self.policy, prices) if self.definition.approves_prices(step.name) else []
        if refused:
            record["refused"] = [r.as_dict() for r in refused]
            self._failed(step, actor, f"step {step.name} failed: the approved prices break the org's price "
                         "policy, nothing was published: "
                         + "; ".join(f"{r.listing_id} {r.date}: {r.reason}" for r in refused))
        return bool(refused)

    def _batch_decided(self, step: Step, actor: str, outcome: str, comment: str | None,
                       changes: dict[str, Any]) -> None:
        """A batch decision taken: all its segments approved, or those `changes.segments`
        names, with the decider's night edits (`changes.prices`); or rejected. The
        approved nights are read from their stored results and bounded by the org's
        price policy; the result names the approved results by reference."""
        name = step.name
        record = self._record(name)
        batch: list[dict[str, Any]] = record["batch"]
        edits = _price_edits(changes)
        approved = outcome == "approved"
        record.update(outcome=outcome, comment=comment, changes=changes, approved_by=actor if approved else None)
        result: dict[str, Any] = {"outcome": outcome, "comment": comment, "changes": changes, "prices": [],
                                  "segments": [], "prices_refs": [], "price_edits": [], "listing_ids": [],
                                  "nights": 0}
        record["result"] = result
        if not approved:
            self._after(step)
            return
        names = [entry["segment"] for entry in batch]
        wanted = changes.get("segments")
        if wanted is not None and (not isinstance(wanted, list) or not wanted
                                   or any(w not in names for w in wanted)):
            self._failed(step, actor, f"step {name} failed: changes.segments {wanted!r} is not a list of the "
                         f"batch's segments ({', '.join(names)}); nothing was published", retryable=False)
            return
        chosen = [entry for entry in batch if wanted is None or entry["segment"] in wanted]
        proposal = [night for entry in chosen for night in self._batch_nights(entry)]
        unknown = unknown_edits(proposal, edits)
        if unknown:
            self._failed(step, actor, f"step {name} failed: the approved edits name no night of the approved "
                         f"segments: {', '.join(unknown)}; nothing was published", retryable=False)
            return
        prices = approved_prices(proposal, changes, record.get("currency"))
        if self._refused_by_policy(step, actor, record, prices):
            return
        result.update(segments=[entry["segment"] for entry in chosen],
                      prices_refs=[entry["proposal_ref"] for entry in chosen], price_edits=edits,
                      listing_ids=sorted({lid for entry in chosen for lid in entry["listing_ids"]}),
                      nights=len(prices))
        self._say(SERVICE_ACTOR, f"step {name}: approved {len(chosen)} of {len(batch)} segment(s) "
                  f"({', '.join(result['segments'])}): {len(prices)} nights, {len(edits)} edited")
        self._after(step)

    def _batch_nights(self, entry: dict[str, Any]) -> list[Any]:
        """A batch segment's proposed nights, from its stored result (fetched by the
        caller when not given: `DetailNeeded`)."""
        ref = ResultRef.model_validate(entry["proposal_ref"])
        detail = self.details.get(ref.id)
        if detail is None:
            raise DetailNeeded(ref)
        nights = detail.get("recommendations")
        return nights if isinstance(nights, list) else []

    def _batch(self, step: Step) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """What a batch decision puts to its decider: per segment (an item of the
        `batch` template's list, e.g. a map's outcomes, whose result is `{segment,
        proposal}`) its name, listings, summary and proposal by reference, checked
        against the stored nights; and the items that proposed nothing (failed)."""
        entries = render(step.raw["batch"], self._names())
        if not isinstance(entries, list):
            raise ExpressionError(f"{step.raw['batch']!r} gives {type(entries).__name__}, not a list of segments")
        batch: list[dict[str, Any]] = []
        missing: list[dict[str, Any]] = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise ExpressionError(f"a batch entry is {type(entry).__name__}, not an object")
            if "run_id" in entry and entry.get("status") != ITEM_SUCCEEDED:
                missing.append({k: entry.get(k) for k in ("index", "run_id", "status", "error")})
                continue
            body = entry.get("result") if "run_id" in entry else entry
            if not isinstance(body, dict) or "omitted" in body:
                raise _StepRefused(f"batch item {entry.get('index')} has no readable segment result "
                                   f"({str(body)[:200]})")
            segment, proposal = body.get("segment"), body.get("proposal")
            ref = ref_of(proposal)
            # A proposal with a ref is a mapping (`ref_of`); said again for the type checker.
            if not isinstance(segment, str) or not segment or ref is None or not isinstance(proposal, Mapping):
                raise _StepRefused(f"batch item {entry.get('index')}: a segment result is {{segment, proposal}} "
                                   "with its proposal stored by reference")
            detail = self.details.get(ref.id)
            if detail is None:
                raise DetailNeeded(ref)
            disagree = summary_disagrees(proposal, detail) if ref.kind == "pricing" else []
            if disagree:
                raise _StepRefused(f"segment {segment}: its result does not agree with its stored detail: "
                                   + "; ".join(disagree))
            nights = detail.get("recommendations") or []
            batch.append({
                "segment": segment, "run_id": entry.get("run_id"), "proposal_ref": ref.model_dump(mode="json"),
                "listing_ids": sorted({str(n.get("listing_id")) for n in nights if isinstance(n, dict)}),
                "nights": len(nights), **{k: proposal.get(k) for k in (
                    "max_abs_change_pct", "min_confidence", "needs_review", "currency")},
            })
        if len({entry["segment"] for entry in batch}) != len(batch):
            raise _StepRefused("two batch entries name the same segment")
        if not batch:
            raise _StepRefused("no segment proposed prices: " + "; ".join(
                f"item {m['index']} {m['status']}: {m.get('error')}" for m in missing))
        return batch, missing

    def task_failed(self, workflow_step: str, *, request_id: str | None, actor: str, reason: str,
                    result: dict[str, Any] | None = None) -> Transition:
        if self._paused():
            return self._hold("task_failed", f"{workflow_step} failed", workflow_step=workflow_step,
                              request_id=request_id, actor=actor, reason=reason, result=result)
        waiting = self._waiting_for("task", workflow_step, request_id)
        if waiting is None:
            return self._compensation_failed(workflow_step, request_id, reason) or self._stale()
        self.state.pop("waiting", None)
        step = self.definition.step(waiting["step"])
        self._publish_report(step, result)
        self._failed(step, actor, f"step {waiting['step']} failed: {reason}")
        return self._out

    def _publish_report(self, step: Step, result: dict[str, Any] | None) -> None:
        """A publish attempt's answer, listing by listing (`applied`, `failed` as
        automation-service reports them), kept as the step's `listings`: a retry
        publishes only the listings not yet published, and the run shows each
        listing's outcome."""
        if not step.publishes_prices or not isinstance(result, dict):
            return
        applied, failed = result.get("applied"), result.get("failed")
        if not isinstance(applied, list) or not isinstance(failed, dict):
            return
        attempt = int(self.state["attempts"].get(step.name, 1))
        listings = self._record(step.name).setdefault("listings", {})
        for listing_id in applied:
            listings[str(listing_id)] = {"status": "published", "attempt": attempt}
        for listing_id, why in failed.items():
            listings[str(listing_id)] = {"status": "failed", "attempt": attempt, "reason": str(why)[:300]}
        self._say(SERVICE_ACTOR, f"step {step.name}: attempt {attempt}: {len(applied)} listing(s) published"
                  + (f", {len(failed)} failed: " + "; ".join(f"{lid}: {str(why)[:120]}" for lid, why in
                                                             sorted(failed.items())) if failed else ""))

    def timer_fired(self, step_name: str, timer_id: str | None = None) -> Transition:
        if self._paused():
            return self._hold("timer_fired", f"timer of {step_name} fired", step_name=step_name, timer_id=timer_id)
        waiting = self.state.get("waiting") or {}
        if "@" in step_name:
            return self._task_timer_fired(step_name, timer_id)
        if waiting.get("step") != step_name or waiting.get("kind") not in _TIMED_WAITS:
            return self._stale()
        if timer_id is not None and waiting.get("timer_id") not in (None, timer_id):
            return self._stale()  # a timer of an earlier wait on this step
        self.state.pop("waiting", None)
        kind = waiting["kind"]
        if kind == "compensation_retry":
            self._request_compensation()
            return self._out
        step = self.definition.step(step_name)
        if kind == "event":
            self._timed_out(step, f"step {step_name} timed out: no {waiting['reply_type']} within "
                            f"{step.raw['timeout']}")
        elif kind == "retry":
            self._say(TIMER_ACTOR, f"step {step_name}: attempt {waiting['attempt']} of {step.retry.max_attempts}")
            self._enter(self.definition.index_of(step_name), retrying=True)
        else:
            self._record(step_name).update(status="completed", by=TIMER_ACTOR)
            self._say(TIMER_ACTOR, f"step {step_name}: wait over")
            self._after(step)
        return self._out

    def _task_timer_fired(self, timer_step: str, timer_id: str | None) -> Transition:
        """A timer of the open task or decision: its timeout, its deadline or its
        escalation. A timer of an earlier attempt (or one already dealt with) is stale."""
        name, _, purpose = timer_step.partition("@")
        waiting = self.state.get("waiting") or {}
        timers = waiting.get("timers") or {}
        if waiting.get("kind") != "task" or waiting.get("step") != name or purpose not in timers:
            return self._stale()
        if timer_id is not None and timers[purpose] not in (None, timer_id):
            return self._stale()
        step = self.definition.step(name)
        if purpose == ESCALATION:
            del timers[purpose]
            self._escalate(step, waiting["request_id"])
            return self._out
        self._withdraw_task(TIMER_ACTOR if purpose == TIMEOUT else DEADLINE_ACTOR,
                            f"step {name} timed out" if purpose == TIMEOUT else f"the deadline of {name} passed")
        self._out.current_step = name
        if purpose == TIMEOUT:
            self._timed_out(step, f"step {name} timed out after {step.raw['timeout']}")
            return self._out
        action = step.default_action
        self._say(DEADLINE_ACTOR, f"step {name}: the deadline ({step.raw['deadline']}) passed undecided; "
                  f"default action: {action}")
        if action == "fail":
            self._failed(step, DEADLINE_ACTOR, f"step {name} failed: not decided by its deadline", retryable=False)
            return self._out
        record = self._record(name)
        outcome = "approved" if action == "approve" else "rejected"
        if outcome == "approved" and self.definition.approves_prices(name):
            # Nobody looked: the deadline approves no more than a rule could.
            proposal = [night for entry in record["batch"] for night in self._batch_nights(entry)] \
                if record.get("batch") is not None else record.get("proposal")
            prices = approved_prices(proposal, {}, record.get("currency"))
            why = needs_person(self.policy, prices, run_threshold_pct=self._run_threshold())
            if why is not None:
                self._failed(step, DEADLINE_ACTOR, f"step {name} failed: its deadline cannot approve what the org's "
                             f"price policy wants a person for: {why}", retryable=False)
                return self._out
        record.update(status="completed", by=DEADLINE_ACTOR)
        self._decided(step, DEADLINE_ACTOR, outcome, f"{action} by the deadline", {})
        return self._out

    def _timed_out(self, step: Step, reason: str) -> None:
        """An attempt took longer than the step's timeout: its `on_timeout` applies."""
        if step.on_timeout == ON_TIMEOUT_GOTO:
            self._record(step.name).update(status="timed_out", error=reason, by=TIMER_ACTOR)
            self._out.current_step = step.name
            self._say(TIMER_ACTOR, f"{reason}; going on at {step.timeout_goto}")
            target = step.timeout_goto or END
            self._enter(len(self.definition.steps) if target == END else self.definition.index_of(target))
            return
        self._failed(step, TIMER_ACTOR, reason, retryable=step.on_timeout != ON_TIMEOUT_FAIL)

    def _escalate(self, step: Step, request_id: str) -> None:
        """An undecided decision past `escalate_after`: the task goes to the escalation's
        user (or role), who is told."""
        try:
            target = render(step.escalate_to or {}, self._names())
        except ExpressionError as exc:
            self._say(SERVICE_ACTOR, f"step {step.name}: not escalated: {exc}")
            return
        user = target.get("user_id") if isinstance(target.get("user_id"), str) and target.get("user_id") else None
        role = None if user else target.get("role")
        if not user and not role:
            self._say(SERVICE_ACTOR, f"step {step.name}: not escalated: escalate_to names nobody for this run")
            return
        who = user or f"role {role}"
        mode = str((step.escalate_to or {}).get("mode", ESCALATE_REASSIGN))
        adds = mode == ESCALATE_ADD_REVIEWER
        reason = f"not decided within {step.raw['escalate_after']}: escalated to {who}" + (
            " as a second reviewer (the assignee keeps it)" if adds else "")
        self._out.reassigns.append(TaskToReassign(request_id, user, role, reason, SERVICE_ACTOR, mode))
        self._record(step.name)["escalated_to"] = {"user_id": user, "role": role, "mode": mode}
        self._say(TIMER_ACTOR, f"step {step.name}: {reason}")
        self._out.tasks.append(TaskToRequest(
            workflow_step=ESCALATION_STEP, request_id=f"{self.run_id}:{step.name}:{ESCALATION_STEP}:"
            f"{self.state['attempts'].get(step.name, 1)}",
            title=f"Escalated: {step.raw['title']}"[:MAX_TITLE], task_type="automated", priority="high",
            description=None, role_id=None, assigned_to=AUTOMATION_ASSIGNEE,
            data={"action": "notify", "role_id": role, "user_id": user, "run_id": self.run_id,
                  "subject": f"Escalated to you: {step.raw['title']}"[:MAX_TITLE],
                  "body": f"The decision {step.name} of run {self.run_id} ({self.definition.name}) was "
                          f"not taken within {step.raw['escalate_after']}; "
                          + ("you are added as a reviewer and may decide it beside its assignee" if adds
                             else "it is now yours to decide")
                          + (f", by its deadline ({step.raw['deadline']} after it was asked)." if step.deadline
                             else ".")},
        ))

    def reply_received(self, event_type: str, request_id: str, data: dict[str, Any], actor: str) -> Transition:
        if self._paused():
            return self._hold("reply_received", f"{event_type} received", event_type=event_type,
                              request_id=request_id, data=data, actor=actor)
        waiting = self.state.get("waiting") or {}
        if waiting.get("kind") != "event" or waiting.get("request_id") != request_id:
            return self._stale()
        name = waiting["step"]
        if event_type == waiting.get("failure_type"):
            self.state.pop("waiting", None)
            self._failed(self.definition.step(name), actor, f"step {name} failed: {event_type}")
            return self._out
        if event_type != waiting.get("reply_type"):
            return self._stale()
        self.state.pop("waiting", None)
        self._record(name).update(status="completed", result=data, by=actor)
        self._say(actor, f"step {name}: {event_type} received")
        self._after(self.definition.step(name))
        return self._out

    def children_started(self, started: dict[str, str],
                         finished: list[dict[str, Any]] | None = None) -> Transition:
        """The child runs a map step asked for exist: `started` maps each request id to
        its run id; `finished` holds the children that ended as they started (each as
        `child_finished` takes it), applied here since they could not report yet."""
        waiting = self.state.get("waiting") or {}
        record = self._record(waiting["step"]) if waiting.get("kind") == "map" else {}
        for item in record.get("items") or []:
            if item["request_id"] in started and item.get("run_id") is None:
                item["run_id"] = started[item["request_id"]]
                self._say(SERVICE_ACTOR, f"step {waiting['step']}: {_label(item)} runs as {item['run_id']}")
        for child in finished or []:
            self._child_done(**child)
        return self._out

    def child_finished(self, request_id: str, run_id: str, status: str, result: dict[str, Any] | None = None,
                       reason: str | None = None) -> Transition:
        """A child run a map step started has ended (its terminal transition reports
        here by the child's request id). An item the step no longer waits for (the
        parent was cancelled, the map failed fast, an earlier attempt) is stale."""
        if self._paused():
            return self._hold("child_finished", f"child run {run_id} {status}", request_id=request_id,
                              run_id=run_id, status=status, result=result, reason=reason)
        if not self._child_done(request_id, run_id, status, result, reason):
            return self._stale()
        return self._out

    def cancel(self, actor: str, reason: str | None, *, compensate: bool = False) -> Transition:
        """End the run: the task it waits for is withdrawn (task-service cancels it,
        naming who and why); with `compensate`, the completed compensatable steps
        are undone first, in reverse order, as a failure would undo them (never
        past a completed pivot), and the run is cancelled when they are done."""
        why = reason or "the run was cancelled"
        if compensate and "compensating" in self.state:
            # The failure's compensation goes on (its task stays); the run ends cancelled.
            self.state["compensating"]["cancel"] = {"by": actor, "reason": reason}
            self.state.pop("paused", None)
            if self._out.status is RunStatus.PAUSED:
                self._out.status = RunStatus.WAITING
            self._say(actor, "run cancelled" + (f": {reason}" if reason else "")
                      + "; already compensating, it ends when that is done")
            return self._out
        self._stop_children(actor, why, compensate=compensate)
        self._withdraw_task(actor, why)
        self.state.pop("held", None)
        self.state.pop("paused", None)
        self._out.cancelled_by, self._out.cancel_reason = actor, reason
        self._say(actor, "run cancelled" + (f": {reason}" if reason else "")
                  + (", compensating what it did" if compensate else ""))
        if compensate:
            queue = self._compensations_of_completed()
            if queue:
                self.state["failure"] = {"step": self._out.current_step, "reason": f"cancelled: {why}", "by": actor}
                self.state["compensating"] = {"reason": f"cancelled: {why}", "queue": queue, "attempt": 0,
                                              "cancel": {"by": actor, "reason": reason}}
                self._say(SERVICE_ACTOR, f"compensating, one at a time: {', '.join(queue)}")
                self._request_compensation()
                return self._out
        self._finish_cancelled(compensated=True if compensate else None)
        return self._out

    def pause(self, actor: str, reason: str | None = None) -> Transition:
        """Hold the run: it takes no new step; task outcomes, replies and timers that
        arrive are recorded and applied, in order, on resume."""
        self.state["paused"] = {"status": self._out.status.value, "by": actor, "reason": reason}
        self.state.setdefault("held", [])
        self._out.status = RunStatus.PAUSED
        self._say(actor, "run paused" + (f": {reason}" if reason else ""))
        self._control_children("pause", actor, reason)
        return self._out

    def resume(self, actor: str) -> Transition:
        """Go on where the run was paused, first applying what arrived meanwhile."""
        paused = self.state.pop("paused", None) or {}
        held = self.state.pop("held", None) or []
        self._out.status = RunStatus(paused.get("status", RunStatus.WAITING.value))
        self._say(actor, "run resumed" + (f"; applying {len(held)} happening(s) recorded while paused"
                                          if held else ""))
        self._control_children("resume", actor, None)
        for happening in held:
            if self._out.status in FINISHED:
                self._say(SERVICE_ACTOR, f"recorded while paused, not applied (run is {self._out.status.value}): "
                          f"{happening['what']}")
                continue
            getattr(self, happening["kind"])(**happening["args"])
            if not self._out.applied:  # stale: nothing changed; the resume itself still applies
                self._out.applied = True
                self._say(SERVICE_ACTOR, f"recorded while paused, ignored on resume: {happening['what']}")
        return self._out

    # moving through the steps

    def _enter(self, index: int, *, retrying: bool = False) -> None:
        """Run steps from `index` until one has to wait or the run ends; `retrying`
        starts the first one again without asking its `when` a second time."""
        while index < len(self.definition.steps):
            step = self.definition.steps[index]
            self._entered += 1
            if self._entered > MAX_STEPS_PER_TRANSITION:
                self._loop_stopped(step)
                return
            self._out.current_step = step.name
            try:
                if not retrying and step.when is not None and not evaluate(step.when, self._names()):
                    self._record(step.name)["status"] = "skipped"
                    self._say(RULE_ACTOR, f"step {step.name} skipped: {step.when} is false")
                    index += 1
                    continue
                retrying = False
                if self._start_step(step):
                    return
                index = self._next_index(step)
            except (ExpressionError, _StepRefused) as exc:
                # The same data gives the same error: trying again cannot help.
                went_on = self._fail_step(step, SERVICE_ACTOR, f"step {step.name} failed: {exc}", retryable=False)
                if went_on is None:
                    return
                index = went_on
        self._complete()

    def _after(self, step: Step) -> None:
        try:
            index = self._next_index(step)
        except ExpressionError as exc:
            self._failed(step, SERVICE_ACTOR, f"step {step.name} failed: {exc}", retryable=False)
            return
        self._enter(index)

    def _next_index(self, step: Step) -> int:
        for rule in step.next:
            if rule.when is None or evaluate(rule.when, self._names()):
                if rule.when is not None:
                    self._say(RULE_ACTOR, f"after {step.name}: {rule.when} -> {rule.goto}")
                return len(self.definition.steps) if rule.goto == END else self.definition.index_of(rule.goto)
        return self.definition.index_of(step.name) + 1

    def _start_step(self, step: Step) -> bool:
        """Begin a step's next attempt; True when the run now waits for it."""
        attempt = self.state["attempts"][step.name] = self.state["attempts"].get(step.name, 0) + 1
        request_id = f"{self.run_id}:{step.name}:{attempt}"
        record = self._record(step.name)
        record.update(status="waiting", attempt=attempt)
        if step.type == "task":
            self._request(step.name, request_id, step.task,
                          engine_data=self._approval_of(step) if step.publishes_prices else None)
            self._set_task_timers(step)
            return True
        if step.type == "decision":
            waits = self._decide(step, request_id)
            if waits:
                self._set_task_timers(step)
            return waits
        if step.type == "wait":
            self._wait(step)
            return True
        if step.type == "map":
            return self._map(step, attempt)
        if step.type == "parallel":
            return self._parallel(step, attempt)
        self._emit_and_await(step, request_id)
        return True

    def _set_task_timers(self, step: Step) -> None:
        """The durable timers of the task just requested: its timeout, a decision's
        deadline and escalation; each named `<step>@<purpose>`."""
        wanted = {TIMEOUT: step.timeout, DEADLINE: step.deadline,
                  ESCALATION: step.escalate_after if step.escalate_to else None}
        timers = {purpose: delay for purpose, delay in wanted.items() if delay is not None}
        if not timers:
            return
        self.state["waiting"]["timers"] = {purpose: None for purpose in timers}
        for purpose, delay in timers.items():
            self._out.timers.append(TimerToSet(f"{step.name}@{purpose}", delay=delay))
        fields = {TIMEOUT: "timeout", DEADLINE: "deadline", ESCALATION: "escalate_after"}
        self._say(SERVICE_ACTOR, f"step {step.name}: " + ", ".join(
            f"{purpose} after {step.raw[fields[purpose]]}" for purpose in timers))

    def _approval_of(self, step: Step) -> dict[str, Any]:
        """What the engine, and only the engine, writes into a publish step: the prices
        its decision approved and who approved them (a person, or the rule)."""
        decision = self.state["steps"].get(step.approval or "") or {}
        if decision.get("status") != "completed" or decision.get("outcome") != "approved":
            raise _StepRefused(f"decision {step.approval} did not approve any price "
                               f"(it is {decision.get('outcome') or decision.get('status') or 'not taken'})")
        result = decision.get("result") or {}
        if result.get("prices_refs"):
            # A batch: the approved segments' stored results, the decider's edits, and
            # the listings not yet published (a retry publishes only those).
            return {"prices_refs": result["prices_refs"], "price_edits": result.get("price_edits") or [],
                    "currency": decision.get("currency"), "approved_by": decision["approved_by"],
                    "approval_step": step.approval,
                    "listing_ids": self._still_to_publish(step, result.get("listing_ids") or [])}
        if result.get("prices_ref"):
            # Too many nights to travel: the publisher fetches them and applies the edits.
            # After a partly failed attempt, only the listings it did not publish.
            listings = sorted(self._record(step.name).get("listings") or {})
            return {"prices_ref": result["prices_ref"], "price_edits": result.get("price_edits") or [],
                    "currency": decision.get("currency"), "approved_by": decision["approved_by"],
                    "approval_step": step.approval,
                    **({"listing_ids": self._still_to_publish(step, listings)} if listings else {})}
        prices = result.get("prices") or []
        if not prices:
            raise _StepRefused(f"decision {step.approval} approved no price to publish")
        remaining = set(self._still_to_publish(step, sorted({str(p.get("listing_id")) for p in prices})))
        return {"prices": [p for p in prices if str(p.get("listing_id")) in remaining],
                "approved_by": decision["approved_by"], "approval_step": step.approval}

    def _still_to_publish(self, step: Step, listing_ids: list[str]) -> list[str]:
        """The approved listings an earlier attempt of the publish step did not publish."""
        done = {lid for lid, outcome in (self._record(step.name).get("listings") or {}).items()
                if outcome.get("status") == "published"}
        remaining = [lid for lid in listing_ids if lid not in done]
        if done:
            self._say(SERVICE_ACTOR, f"step {step.name}: {len(done)} listing(s) already published; "
                      f"publishing the other {len(remaining)}")
        return remaining

    def _proposal_nights(self, step: Step) -> tuple[ResultRef | None, Any]:
        """The nights a decision step proposes, and the stored result they come from
        when its result travelled by reference (its detail is fetched, checked
        against the summary the rule read, and never kept in the run)."""
        names = self._names()
        for source in _RESULT_OF_STEP.findall(str(step.raw["proposal"])):
            record = self.state["steps"].get(source) or {}
            ref = ref_of(record.get("result"))
            if ref is None:
                continue
            detail = self.details.get(ref.id)
            if detail is None:
                raise DetailNeeded(ref)
            disagree = summary_disagrees(record["result"], detail) if ref.kind == "pricing" else []
            if disagree:
                raise _StepRefused(f"the result of step {source} does not agree with its stored detail: "
                                   + "; ".join(disagree))
            resolved = {**names, "steps": {**names["steps"], source: {**record, "result": detail}}}
            return ref, render(step.raw["proposal"], resolved)
        return None, render(step.raw["proposal"], names)

    @staticmethod
    def _decision_result(outcome: str, comment: str | None, changes: dict[str, Any], prices: list[dict[str, Any]],
                         proposal_ref: dict[str, Any] | None) -> dict[str, Any]:
        """What a decision step's result says: the approved prices, or, for a proposal
        by reference, its ref, the decider's edits and how many nights there are."""
        if proposal_ref is None:
            return {"outcome": outcome, "comment": comment, "changes": changes, "prices": prices}
        return {"outcome": outcome, "comment": comment, "changes": changes, "prices": [],
                "prices_ref": proposal_ref if prices else None, "price_edits": _price_edits(changes),
                "nights": len(prices)}

    def _decide(self, step: Step, request_id: str) -> bool:
        names = self._names()
        record = self._record(step.name)
        if "batch" in step.raw:
            return self._ask_batch(step, request_id)
        proposal_ref, proposal = self._proposal_nights(step)
        record["proposal"] = proposal if proposal_ref is None else None
        record["proposal_ref"] = proposal_ref.model_dump(mode="json") if proposal_ref else None
        record["currency"] = render(step.raw.get("currency"), names)
        rule = step.raw.get("rule")
        if rule is not None and evaluate(rule, names):
            prices = approved_prices(proposal, {}, record["currency"])
            why_a_person = needs_person(self.policy, prices, run_threshold_pct=self._run_threshold()) \
                if self.definition.approves_prices(step.name) else None
            if why_a_person is None:
                record.update(status="completed", outcome="approved", by=RULE_ACTOR, approved_by=f"rule:{rule}",
                              changes={})
                record["result"] = self._decision_result("approved", None, {}, prices, record["proposal_ref"])
                self._say(RULE_ACTOR, f"step {step.name}: approved by rule: {rule}")
                return False
            self._say(RULE_ACTOR, f"step {step.name}: the rule holds ({rule}) but the org's price policy wants a "
                      f"person: {why_a_person}; decision asked of role {step.raw['role_id']}")
        else:
            why = f"rule not met ({rule})" if rule is not None else "no rule"
            self._say(RULE_ACTOR if rule else SERVICE_ACTOR,
                      f"step {step.name}: {why}; decision asked of role {step.raw['role_id']}")
        spec = TaskSpec(title=step.raw["title"], task_type="decision", role_id=step.raw["role_id"],
                        priority=step.raw.get("priority", "medium"), description=step.raw.get("description"),
                        data={**(step.raw.get("data") or {}), **(
                            {"proposal_ref": "${steps." + step.name + ".proposal_ref}"} if proposal_ref else
                            {"proposal": "${steps." + step.name + ".proposal}"})})
        self._request(step.name, request_id, spec, due_in=step.deadline)
        return True

    def _ask_batch(self, step: Step, request_id: str) -> bool:
        """A batch decision: one task for every segment's proposal (by reference); a
        batch is always put to a person."""
        record = self._record(step.name)
        batch, missing = self._batch(step)
        currencies = {entry.get("currency") for entry in batch}
        record.update(batch=batch, not_proposed=missing, proposal=None, proposal_ref=None,
                      currency=render(step.raw.get("currency"), self._names())
                      or (currencies.pop() if len(currencies) == 1 else None))
        self._say(SERVICE_ACTOR, f"step {step.name}: {len(batch)} segment(s) to review ("
                  + ", ".join(f"{e['segment']}: {e['nights']} nights" for e in batch) + ")"
                  + (f"; {len(missing)} proposed nothing" if missing else "")
                  + f"; decision asked of role {step.raw['role_id']}")
        spec = TaskSpec(title=step.raw["title"], task_type="decision", role_id=step.raw["role_id"],
                        priority=step.raw.get("priority", "medium"), description=step.raw.get("description"),
                        data={**(step.raw.get("data") or {}), "batch": "${steps." + step.name + ".batch}",
                              "not_proposed": "${steps." + step.name + ".not_proposed}",
                              "currency": "${steps." + step.name + ".currency}"})
        self._request(step.name, request_id, spec, due_in=step.deadline)
        return True

    def _run_threshold(self) -> float | None:
        """The run's own approval threshold, if it has one: it can only lower the org's."""
        threshold = self.parameters.get("threshold_pct")
        return float(threshold) if isinstance(threshold, int | float) and not isinstance(threshold, bool) else None

    def _wait(self, step: Step) -> None:
        names = self._names()
        if "duration" in step.raw:
            timer = TimerToSet(step.name, delay=step.timedelta_of("duration"))
        elif "days" in step.raw:
            days = evaluate(step.raw["days"], names)
            if not isinstance(days, int | float) or isinstance(days, bool) or not 0 <= days <= MAX_WAIT_DAYS:
                raise ExpressionError(f"{step.raw['days']!r} gives {days!r}, not a number of days "
                                      f"from 0 to {MAX_WAIT_DAYS}")
            timer = TimerToSet(step.name, delay=timedelta(days=days))
        else:
            try:
                timer = TimerToSet(step.name, at=_DATETIME.validate_python(evaluate(step.raw["until"], names)))
            except ValidationError as exc:
                raise ExpressionError(f"{step.raw['until']!r} does not give a date-time") from exc
        self._out.timers.append(timer)
        self.state["waiting"] = {"kind": "timer", "step": step.name}
        self._out.status = RunStatus.WAITING
        self._say(SERVICE_ACTOR, f"step {step.name}: waiting "
                  + (f"{timer.delay}" if timer.delay is not None else f"until {timer.at}"))

    # map: child runs, at most max_concurrency at a time

    def _map(self, step: Step, attempt: int) -> bool:
        """Start a map step: one child run per item, at most `max_concurrency` open at
        once; True when the run now waits for them (False for an empty list)."""
        names = self._names()
        items = evaluate(step.raw["items"], names)
        if not isinstance(items, list):
            raise ExpressionError(f"{step.raw['items']!r} gives {type(items).__name__}, not a list of items")
        if len(items) > MAX_MAP_ITEMS:
            raise ExpressionError(f"{step.raw['items']!r} gives {len(items)} items; a map takes at most "
                                  f"{MAX_MAP_ITEMS}")
        template = step.raw.get("parameters") or {}
        queue = [[i, render(template, {**names, "item": item, "index": i})] for i, item in enumerate(items)]
        prefix = f"{self.run_id}:{step.name}:{attempt}"
        record = self._record(step.name)
        record["items"] = [{"index": i, "status": ITEM_PENDING, "run_id": None, "request_id": f"{prefix}:{i}"}
                           for i in range(len(items))]
        record.pop("result", None)
        if not items:
            record.update(status="completed", result=[], by=SERVICE_ACTOR)
            self._say(SERVICE_ACTOR, f"step {step.name}: no items to map")
            return False
        self.state.setdefault("maps", {})[step.name] = queue
        self.state["waiting"] = {"kind": "map", "step": step.name, "attempt": attempt}
        self._out.status = RunStatus.WAITING
        self._say(SERVICE_ACTOR, f"step {step.name}: {len(items)} item(s) over {step.raw['workflow']}, at most "
                  f"{self._max_concurrency(step)} at a time ({self._on_item_failure(step)})")
        self._start_items(step)
        return True

    def _parallel(self, step: Step, attempt: int) -> bool:
        """Start a parallel step: each named branch a child run of its own (its
        definition the branch, in this run's definition version), all at once unless
        `max_concurrency` says fewer; the run waits for them as for a map's items."""
        names = self._names()
        parameters = {**self.parameters, **render(step.raw.get("parameters") or {}, names)}
        branches = list(step.raw["branches"])
        prefix = f"{self.run_id}:{step.name}:{attempt}"
        record = self._record(step.name)
        record["items"] = [{"index": i, "branch": branch, "status": ITEM_PENDING, "run_id": None,
                            "request_id": f"{prefix}:{i}"} for i, branch in enumerate(branches)]
        record.pop("result", None)
        self.state.setdefault("maps", {})[step.name] = [[i, parameters] for i in range(len(branches))]
        self.state["waiting"] = {"kind": "map", "step": step.name, "attempt": attempt}
        self._out.status = RunStatus.WAITING
        self._say(SERVICE_ACTOR, f"step {step.name}: {len(branches)} branch(es) ({', '.join(branches)}), at most "
                  f"{self._max_concurrency(step)} at a time ({self._on_item_failure(step)})")
        self._start_items(step)
        return True

    @staticmethod
    def _max_concurrency(step: Step) -> int:
        default = len(step.raw["branches"]) if step.type == "parallel" else DEFAULT_MAX_CONCURRENCY
        return int(step.raw.get("max_concurrency", default))

    @staticmethod
    def _on_item_failure(step: Step) -> str:
        policy = "on_branch_failure" if step.type == "parallel" else "on_item_failure"
        return str(step.raw.get(policy, ON_ITEM_FAILURE_CONTINUE))

    def _start_items(self, step: Step) -> None:
        """Start pending items while fewer than `max_concurrency` children are open."""
        record = self._record(step.name)
        queue = self.state["maps"][step.name]
        running = sum(1 for item in record["items"] if item["status"] == ITEM_RUNNING)
        started = []
        while queue and running < self._max_concurrency(step):
            index, parameters = queue.pop(0)
            item = record["items"][index]
            item["status"] = ITEM_RUNNING
            running += 1
            started.append(index)
            if step.type == "parallel":
                self._out.children.append(ChildToStart(item["request_id"], "", None, parameters,
                                                       branch=f"{step.name}/{item['branch']}"))
            else:
                self._out.children.append(ChildToStart(item["request_id"], step.raw["workflow"],
                                                       step.raw.get("version"), parameters))
        if started:
            if step.type == "parallel":
                self._say(SERVICE_ACTOR, f"step {step.name}: starting branch(es) "
                          + ", ".join(record["items"][i]["branch"] for i in started))
            else:
                self._say(SERVICE_ACTOR, f"step {step.name}: starting item(s) {', '.join(map(str, started))}")

    def _child_done(self, request_id: str, run_id: str, status: str, result: dict[str, Any] | None = None,
                    reason: str | None = None) -> bool:
        waiting = self.state.get("waiting") or {}
        if waiting.get("kind") != "map":
            return False
        step = self.definition.step(waiting["step"])
        record = self._record(step.name)
        item = next((i for i in record.get("items") or [] if i["request_id"] == request_id), None)
        if item is None or item["status"] != ITEM_RUNNING:
            return False
        item.update(status=status, run_id=run_id)
        label = _label(item)
        if status == ITEM_SUCCEEDED:
            item["result"] = _small(result or {}, run_id)
            self._say(SERVICE_ACTOR, f"step {step.name}: {label} ({run_id}) completed")
        else:
            item["error"] = (reason or status)[:500]
            self._say(SERVICE_ACTOR, f"step {step.name}: {label} ({run_id}) {status}: {item['error']}")
            if self._on_item_failure(step) == ON_ITEM_FAILURE_FAIL_FAST:
                self._stop_children(SERVICE_ACTOR, f"{label} of step {step.name} failed "
                                    f"(fail_fast)", compensate=False)
                self.state.pop("waiting", None)
                record["result"] = _outcomes(record["items"])
                self._failed(step, SERVICE_ACTOR, f"step {step.name} failed: {label} ({run_id}) "
                             f"{status}: {item['error']}", retryable=False)
                return True
        self._start_items(step)
        if any(i["status"] in (ITEM_PENDING, ITEM_RUNNING) for i in record["items"]):
            return True
        self.state.pop("waiting", None)
        self.state.get("maps", {}).pop(step.name, None)
        failed = [i for i in record["items"] if i["status"] != ITEM_SUCCEEDED]
        record.update(status="completed", result=_outcomes(record["items"]), by=SERVICE_ACTOR)
        what = "branch(es)" if step.type == "parallel" else "item(s)"
        self._say(SERVICE_ACTOR, f"step {step.name}: all {len(record['items'])} {what} done"
                  + (f"; {len(failed)} failed: " + "; ".join(f"{_label(i)} ({i['run_id']}) {i['status']}: "
                                                             f"{i.get('error')}" for i in failed) if failed else ""))
        self._after(step)
        return True

    def _open_children(self) -> list[dict[str, Any]]:
        waiting = self.state.get("waiting") or {}
        if waiting.get("kind") != "map":
            return []
        return [i for i in self._record(waiting["step"]).get("items") or []
                if i["status"] == ITEM_RUNNING and i.get("run_id")]

    def _stop_children(self, actor: str, reason: str, *, compensate: bool) -> None:
        """The map step the run waits at ends early: its open children are cancelled
        and its pending items are never started."""
        waiting = self.state.get("waiting") or {}
        if waiting.get("kind") != "map":
            return
        for item in self._open_children():
            self._out.child_controls.append(ChildToControl(item["run_id"], "cancel", actor, reason, compensate))
            item["status"] = RunStatus.CANCELLED.value
            item["error"] = reason[:500]
        for item in self._record(waiting["step"])["items"]:
            if item["status"] == ITEM_PENDING:
                item["status"] = ITEM_NOT_STARTED
        self.state.get("maps", {}).pop(waiting["step"], None)
        if self._out.child_controls:
            self._say(SERVICE_ACTOR, f"step {waiting['step']}: cancelling child run(s) "
                      + ", ".join(c.run_id for c in self._out.child_controls if c.action == "cancel"))

    def _control_children(self, action: str, actor: str, reason: str | None) -> None:
        """Pause (or resume) the open children of the map step the run waits at."""
        for item in self._open_children():
            self._out.child_controls.append(ChildToControl(item["run_id"], action, actor, reason))
        if self._out.child_controls:
            self._say(SERVICE_ACTOR, f"{action} asked of child run(s) "
                      + ", ".join(c.run_id for c in self._out.child_controls))

    def _emit_and_await(self, step: Step, request_id: str) -> None:
        # The run's own tenant and request id, whatever the definition's data says.
        data = {**render(step.raw.get("data") or {}, self._names()), "request_id": request_id,
                "org_id": self.org_id}
        try:
            event_type(step.raw["event_type"]).model.model_validate(data)
        except ValidationError as exc:
            raise ExpressionError(f"the {step.raw['event_type']} it emits is not valid: {exc}") from exc
        self._out.emits.append(EventToEmit(step.raw["event_type"], data))
        self._out.timers.append(TimerToSet(step.name, delay=step.timedelta_of("timeout")))
        self.state["waiting"] = {"kind": "event", "step": step.name, "request_id": request_id,
                                 "reply_type": step.raw["reply_type"], "failure_type": step.raw.get("failure_type")}
        self._out.status = RunStatus.WAITING
        self._say(SERVICE_ACTOR, f"step {step.name}: {step.raw['event_type']} sent, "
                  f"awaiting {step.raw['reply_type']}")

    def _request(self, workflow_step: str, request_id: str, spec: TaskSpec, *,
                 engine_data: dict[str, Any] | None = None, kind: str = "task",
                 due_in: timedelta | None = None) -> None:
        """Ask for a task and wait for it. `engine_data` is written in after the
        definition's templates are filled, so no template can reach it."""
        names = self._names()
        title = render(spec.title, names)
        if not isinstance(title, str) or not 1 <= len(title) <= MAX_TITLE:
            raise ExpressionError(f"the task's title {str(title)[:40]!r}... is not a text of 1 to {MAX_TITLE} "
                                  "characters")
        self._out.tasks.append(TaskToRequest(
            workflow_step=workflow_step, request_id=request_id, title=title,
            task_type=spec.task_type, priority=spec.priority, description=spec.description,
            role_id=spec.role_id, assigned_to=spec.assigned_to,
            data={**render(spec.data, names), **(engine_data or {})}, due_in=due_in,
        ))
        self.state["waiting"] = {"kind": kind, "step": workflow_step, "request_id": request_id}
        self._out.status = RunStatus.WAITING
        who = spec.assigned_to or (f"role {spec.role_id}" if spec.role_id else "anyone")
        self._say(SERVICE_ACTOR, f"task requested for {workflow_step}: {spec.task_type} to {who} ({request_id})")

    def _complete(self) -> None:
        self._out.current_step = None
        self._out.status = RunStatus.COMPLETED
        try:
            self._out.result = render(self.definition.result, self._names())
        except ExpressionError as exc:
            self._out.result = {"error": str(exc)}
        warnings = self.state.get("warnings") or []
        self._say(SERVICE_ACTOR, "run completed" + (f" with {len(warnings)} warning(s): " + "; ".join(warnings)
                                                    if warnings else ""))

    # failure, retries and compensation

    def _failed(self, step: Step, actor: str, reason: str, *, retryable: bool = True) -> None:
        """A step failed outside `_enter`: fail it, and go on if its kind says so."""
        went_on = self._fail_step(step, actor, reason, retryable=retryable)
        if went_on is not None:
            self._enter(went_on)

    def _fail_step(self, step: Step, actor: str, reason: str, *, retryable: bool) -> int | None:
        """Retry the step, or compensate, or (after the pivot) go on with a warning.
        Returns the index to go on at, or None when the run now waits or has ended."""
        attempt = int(self.state["attempts"].get(step.name, 1))
        self._record(step.name).update(status="failed", error=reason, by=actor)
        self._out.current_step = step.name
        self._say(actor, reason)
        if retryable and step.retry.retries(attempt, reason):
            delay = step.retry.delay_after(attempt)
            self._out.timers.append(TimerToSet(step.name, delay=delay))
            self.state["waiting"] = {"kind": "retry", "step": step.name, "attempt": attempt + 1}
            self._out.status = RunStatus.WAITING
            self._say(SERVICE_ACTOR, f"step {step.name}: attempt {attempt} of {step.retry.max_attempts} failed; "
                      f"trying again in {delay}")
            return None
        if step.kind is StepKind.RETRIABLE:
            warning = f"step {step.name} failed after {attempt} attempt(s) and was left behind: {reason}"
            self.state.setdefault("warnings", []).append(warning)
            self._say(SERVICE_ACTOR, f"warning: {warning}; the run goes on (a step after the pivot is never "
                      "compensated)")
            try:
                return self._next_index(step)
            except ExpressionError as exc:
                self._say(SERVICE_ACTOR, f"after {step.name}: {exc}; going on with the next step")
                return self.definition.index_of(step.name) + 1
        self._compensate(step, actor, reason)
        return None

    def _loop_stopped(self, step: Step) -> None:
        reason = (f"step {step.name} failed: {MAX_STEPS_PER_TRANSITION} steps ran without waiting; "
                  "the definition's `next` rules loop")
        self._record(step.name).update(status="failed", error=reason, by=SERVICE_ACTOR)
        self._out.current_step = step.name
        self._say(SERVICE_ACTOR, reason)
        if step.kind is StepKind.RETRIABLE:  # past the pivot: nothing may be undone
            self.state["failure"] = {"step": step.name, "reason": reason, "by": SERVICE_ACTOR}
            self._give_up(reason, "the run cannot go on past its pivot")
        else:
            self._compensate(step, SERVICE_ACTOR, reason)

    def _compensate(self, failed: Step, actor: str, reason: str) -> None:
        """Undo, in reverse order and one at a time, what the failed step and the
        completed compensatable steps before it did."""
        self.state["failure"] = {"step": failed.name, "reason": reason, "by": actor}
        earlier = self.definition.steps[: self.definition.index_of(failed.name)]
        to_undo = [failed] + [
            s for s in reversed(earlier)
            if s.kind is StepKind.COMPENSATABLE and self.state["steps"].get(s.name, {}).get("status") == "completed"
        ]
        queue = [f"{s.name}.compensation.{i}" for s in to_undo for i in range(1, len(s.compensation) + 1)]
        if not queue:
            self._finish_failed(reason, compensated=True)
            return
        self.state["compensating"] = {"reason": reason, "queue": queue, "attempt": 0}
        self._say(SERVICE_ACTOR, f"compensating, one at a time: {', '.join(queue)}")
        self._request_compensation()

    def _compensations_of_completed(self) -> list[str]:
        """The compensations a cancel runs: of the completed compensatable steps, last
        first; none once a pivot has completed (what is past it is never undone)."""
        steps = self.state["steps"]
        done = [s for s in self.definition.steps if steps.get(s.name, {}).get("status") == "completed"]
        if any(s.kind is StepKind.PIVOT for s in done):
            self._say(SERVICE_ACTOR, "nothing is compensated: the run is past its pivot")
            return []
        return [f"{s.name}.compensation.{i}" for s in reversed(done) if s.kind is StepKind.COMPENSATABLE
                for i in range(1, len(s.compensation) + 1)]

    def _withdraw_task(self, actor: str, reason: str) -> None:
        waiting = self.state.pop("waiting", None) or {}
        if waiting.get("kind") in _TASK_WAITS and waiting.get("request_id"):
            self._out.cancels.append(TaskToCancel(waiting["request_id"], reason, actor))
            self._say(SERVICE_ACTOR, f"task {waiting['request_id']} of step {waiting['step']} withdrawn")

    def _finish_cancelled(self, *, compensated: bool | None) -> None:
        self.state.pop("waiting", None)
        self.state.pop("compensating", None)
        self._out.status = RunStatus.CANCELLED
        self._out.compensated = compensated
        cancel = self.state.get("cancelled") or {}
        self._out.cancelled_by = self._out.cancelled_by or cancel.get("by")
        self._out.cancel_reason = self._out.cancel_reason or cancel.get("reason")

    def _request_compensation(self) -> None:
        """Ask for the next compensation in the queue (or the same one again)."""
        compensating = self.state["compensating"]
        if not compensating["queue"]:
            cancel = compensating.get("cancel")
            if cancel is not None:
                self.state["cancelled"] = cancel
                self._say(SERVICE_ACTOR, "compensation done; run cancelled")
                self._finish_cancelled(compensated=True)
                return
            self._finish_failed(compensating["reason"], compensated=True)
            return
        workflow_step = compensating["queue"][0]
        name, _, number = workflow_step.rpartition(".compensation.")
        compensating["attempt"] += 1
        request_id = f"{self.run_id}:{workflow_step}:{compensating['attempt']}"
        self._out.current_step = name
        try:
            self._request(workflow_step, request_id, self.definition.step(name).compensation[int(number) - 1],
                          kind="compensation")
        except ExpressionError as exc:
            self._give_up(compensating["reason"], f"compensation {workflow_step} could not be requested: {exc}")

    def _compensation_done(self, workflow_step: str, request_id: str | None) -> Transition | None:
        if self._waiting_for("compensation", workflow_step, request_id) is None:
            return None
        self.state.pop("waiting", None)
        compensating = self.state["compensating"]
        compensating["queue"].pop(0)
        compensating["attempt"] = 0
        self._say(SERVICE_ACTOR, f"compensation {workflow_step} done")
        self._request_compensation()
        return self._out

    def _compensation_failed(self, workflow_step: str, request_id: str | None, reason: str) -> Transition | None:
        if self._waiting_for("compensation", workflow_step, request_id) is None:
            return None
        self.state.pop("waiting", None)
        compensating = self.state["compensating"]
        attempt = compensating["attempt"]
        if COMPENSATION_RETRY.retries(attempt, reason):
            delay = COMPENSATION_RETRY.delay_after(attempt)
            self._out.timers.append(TimerToSet(workflow_step, delay=delay))
            self.state["waiting"] = {"kind": "compensation_retry", "step": workflow_step}
            self._out.status = RunStatus.WAITING
            self._say(SERVICE_ACTOR, f"compensation {workflow_step}: attempt {attempt} of "
                      f"{COMPENSATION_RETRY.max_attempts} failed ({reason}); trying again in {delay}")
            return self._out
        left = compensating["queue"][1:]
        self._give_up(compensating["reason"], f"compensation {workflow_step} failed {attempt} times: {reason}"
                      + (f"; not compensated: {', '.join(left)}" if left else ""))
        return self._out

    def _give_up(self, reason: str, why: str) -> None:
        """The run cannot be put right by itself: it ends needing attention, and the
        org's owners are told."""
        self._finish_failed(reason, compensated=False, why=why)
        self._out.status = RunStatus.NEEDS_ATTENTION
        self._out.tasks.append(TaskToRequest(
            workflow_step=ATTENTION_STEP, request_id=f"{self.run_id}:{ATTENTION_STEP}:1",
            title=f"{self.definition.name}: a run needs attention"[:MAX_TITLE], task_type="automated",
            priority="high", description=None, role_id=None, assigned_to=AUTOMATION_ASSIGNEE,
            data={"action": "notify", "role_id": OWNER_ROLE, "user_id": None, "run_id": self.run_id,
                  "subject": f"A run of {self.definition.name} needs attention",
                  "body": f"Run {self.run_id} failed and could not be put right by itself: {reason}; {why}."},
        ))
        self._say(SERVICE_ACTOR, f"the org's owners are asked to look at run {self.run_id}")

    def _finish_failed(self, reason: str, *, compensated: bool, why: str | None = None) -> None:
        self.state.pop("waiting", None)
        self.state.pop("compensating", None)
        self._out.status = RunStatus.FAILED
        self._out.compensated = compensated
        self._out.failure_reason = reason if compensated else f"{reason}; {why} - needs attention"
        self._say(SERVICE_ACTOR, "run failed" + ("" if compensated else " and needs attention: " + (why or "")))
        if compensated:
            self._notify_owners(FAILED_STEP, f"A run of {self.definition.name} failed",
                                f"Run {self.run_id} failed: {reason}. What it had done was compensated.")

    def _notify_owners(self, workflow_step: str, subject: str, body: str) -> None:
        """An automated `notify` task to the org's owner role about this run."""
        self._out.tasks.append(TaskToRequest(
            workflow_step=workflow_step, request_id=f"{self.run_id}:{workflow_step}:1",
            title=subject[:MAX_TITLE], task_type="automated", priority="high", description=None, role_id=None,
            assigned_to=AUTOMATION_ASSIGNEE,
            data={"action": "notify", "role_id": OWNER_ROLE, "user_id": None, "run_id": self.run_id,
                  "subject": subject, "body": body},
        ))
        self._say(SERVICE_ACTOR, f"the org's owners are told about run {self.run_id}")

    # helpers

    def _paused(self) -> bool:
        return self._out.status is RunStatus.PAUSED

    def _hold(self, kind: str, what: str, **args: Any) -> Transition:
        """Record a happening of a paused run, to apply on resume."""
        self.state.setdefault("held", []).append({"kind": kind, "what": what, "args": args})
        self._say(SERVICE_ACTOR, f"recorded while paused: {what}")
        return self._out

    def _waiting_for(self, kind: str, step: str, request_id: str | None) -> dict[str, Any] | None:
        """What the run waits for, if this happening answers it: the same step, and the
        request of the current attempt (a late answer to an earlier one is stale)."""
        waiting: dict[str, Any] | None = self.state.get("waiting")
        if waiting and waiting.get("kind") == kind and waiting.get("step") == step \
                and waiting.get("request_id") == request_id:
            return waiting
        return None

    def _stale(self) -> Transition:
        self._out.applied = False
        return self._out

    def _record(self, name: str) -> dict[str, Any]:
        record: dict[str, Any] = self.state["steps"].setdefault(name, {})
        return record

    def _names(self) -> dict[str, Any]:
        return {"params": self.parameters, "steps": self.state["steps"], "failure": self.state.get("failure")}

    def _say(self, actor: str, message: str) -> None:
        self._out.log.append(LogLine(actor, message))


def _small(result: dict[str, Any], run_id: str) -> dict[str, Any]:
    """A child's result as the parent keeps it: itself when small, else a pointer."""
    size = len(json.dumps(result, default=str))
    if size <= MAX_CHILD_RESULT_CHARS:
        return result
    return {"omitted": f"{size} characters; GET /v1/runs/{run_id}"}


def _outcomes(items: list[dict[str, Any]]) -> list[dict[str, Any]] | dict[str, Any]:
    """A map step's result: each item's status, child run and result or error; a
    parallel step's: the same of each branch, by the branch's name."""
    if items and "branch" in items[0]:
        return {item["branch"]: {k: v for k, v in item.items() if k not in ("request_id", "branch", "index")}
                for item in items}
    return [{k: v for k, v in item.items() if k != "request_id"} for item in items]


def _label(item: dict[str, Any]) -> str:
    """A map item or a parallel branch as the log names it."""
    return f"branch {item['branch']}" if "branch" in item else f"item {item['index']}"


def _price_edits(changes: dict[str, Any]) -> list[Any]:
    edits = changes.get("prices") or changes.get("changes") or []
    return edits if isinstance(edits, list) else []


def approved_prices(proposal: Any, changes: dict[str, Any], currency: Any) -> list[dict[str, Any]]:
    """The prices to publish: each recommendation at its recommended price, unless the
    decider changed it. task-service hands the decider's list of `{listing_id, date,
    price}` over as `changes: {"prices": [...]}`."""
    return apply_price_edits(proposal if isinstance(proposal, list) else [], _price_edits(changes), currency)
