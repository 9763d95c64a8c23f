"""Workflow definitions, runs, the run log and the saga that advances a run step by
step: each call takes a run's state and one happening (a task finished, a timer
fired, a reply arrived) and returns the next state with what to announce. Pure: no
I/O, no framework."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from stayops_kit.errors import Conflict, NotFound
from stayops_schemas.catalog import event_type
from stayops_schemas.events.tasks import TaskCompleted, TaskFailed
from stayops_schemas.events.workflows import RunStatus, WaitKind
from workflow_service.definitions import END, Definition, Step, TaskSpec, render
from workflow_service.expressions import ExpressionError, evaluate

# Who a log entry names when the event does not say who acted.
TASK_SERVICE_ACTOR = "task-service"
# Who a log entry names when the saga itself acted.
SERVICE_ACTOR = "workflow-service"
RULE_ACTOR = "rule"
TIMER_ACTOR = "timer"
# Steps one happening may run through before the run must wait: a `next` loop stops here.
MAX_STEPS_PER_TRANSITION = 200
FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class RunNotFound(NotFound):
    code = "run-not-found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"workflow run {run_id} does not exist in your organisation")


class WorkflowNotFound(NotFound):
    code = "workflow-not-found"

    def __init__(self, key: str) -> None:
        super().__init__(f"workflow {key!r} has no definition in your organisation and is not built in; "
                         "POST /v1/workflows to publish one")


class RunAlreadyFinished(Conflict):
    code = "run-already-finished"

    def __init__(self, run_id: str, status: RunStatus) -> None:
        super().__init__(f"workflow run {run_id} is already {status.value}; only a running or waiting "
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


@dataclass(frozen=True)
class TimerToSet:
    """A durable timer: due `delay` after the database's now, or at `at`."""

    step: str
    delay: timedelta | None = None
    at: datetime | None = None


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
    log: list[LogLine] = field(default_factory=list)
    result: dict[str, Any] | None = None
    failure_reason: str | None = None
    compensated: bool | None = None
    applied: bool = True

    @property
    def waiting(self) -> dict[str, Any] | None:
        waiting: dict[str, Any] | None = self.state.get("waiting")
        return waiting

    @property
    def wait_kind(self) -> WaitKind | None:
        if self.status is not RunStatus.WAITING or not self.waiting:
            return None
        kind = self.waiting["kind"]
        return WaitKind.TASK if kind == "compensation" else WaitKind(kind)


class Saga:
    """One run of one definition. Each public method applies one happening to the
    run's state and returns the `Transition`; `applied` is False for a happening the
    run is not waiting for (a stale or duplicate completion), which changes nothing."""

    def __init__(self, definition: Definition, run_id: str, parameters: dict[str, Any],
                 state: dict[str, Any] | None = None, status: RunStatus = RunStatus.RUNNING,
                 current_step: str | None = None, *, org_id: str = "") -> None:
        self.definition = definition
        self.org_id = org_id
        self.run_id = run_id
        self.parameters = parameters
        self.state: dict[str, Any] = copy.deepcopy(state) if state else {}
        self.state.setdefault("steps", {})
        self.state.setdefault("attempts", {})
        self._out = Transition(status=status, current_step=current_step, state=self.state)

    # the happenings

    def start(self) -> Transition:
        self._say(SERVICE_ACTOR, f"run started: {self.definition.name}")
        self._enter(0)
        return self._out

    def task_completed(self, workflow_step: str, *, actor: str, result: dict[str, Any],
                       outcome: str | None = None, comment: str | None = None,
                       changes: dict[str, Any] | None = None) -> Transition:
        waiting = self._waiting_for("task", workflow_step)
        if waiting is None:
            return self._compensation_done(workflow_step, actor) or self._stale()
        name = waiting["step"]
        step = self.definition.step(name)
        record = self._record(name)
        record.update(status="completed", result=result, by=actor)
        if step.type == "decision":
            if outcome not in ("approved", "rejected"):
                self.state.pop("waiting", None)
                self._fail(name, actor, f"step {name} failed: the decision came back without an outcome")
                return self._out
            approved = outcome == "approved"
            record.update(outcome=outcome, comment=comment, changes=changes or {})
            record["result"] = {"outcome": outcome, "comment": comment, "changes": changes or {},
                                "prices": approved_prices(record.get("proposal"), changes or {},
                                                          record.get("currency")) if approved else []}
        self.state.pop("waiting", None)
        self._after(step)
        return self._out

    def task_failed(self, workflow_step: str, *, actor: str, reason: str) -> Transition:
        waiting = self._waiting_for("task", workflow_step)
        if waiting is None:
            return self._compensation_failed(workflow_step, actor, reason) or self._stale()
        self.state.pop("waiting", None)
        self._fail(waiting["step"], actor, f"step {waiting['step']} failed: {reason}")
        return self._out

    def timer_fired(self, step_name: str, timer_id: str | None = None) -> Transition:
        waiting = self.state.get("waiting") or {}
        if waiting.get("step") != step_name or waiting.get("kind") not in ("timer", "event"):
            return self._stale()
        if timer_id is not None and waiting.get("timer_id") not in (None, timer_id):
            return self._stale()  # a timer of an earlier wait on this step
        self.state.pop("waiting", None)
        if waiting["kind"] == "event":
            timeout = self.definition.step(step_name).raw["timeout"]
            self._fail(step_name, TIMER_ACTOR, f"step {step_name}: no {waiting['reply_type']} within {timeout}")
            return self._out
        self._record(step_name).update(status="completed", by=TIMER_ACTOR)
        self._say(TIMER_ACTOR, f"step {step_name}: wait over")
        self._after(self.definition.step(step_name))
        return self._out

    def reply_received(self, event_type: str, request_id: str, data: dict[str, Any], actor: str) -> Transition:
        waiting = self.state.get("waiting") or {}
        if waiting.get("kind") != "event" or waiting.get("request_id") != request_id:
            return self._stale()
        name = waiting["step"]
        if event_type == waiting.get("failure_type"):
            self.state.pop("waiting", None)
            self._fail(name, actor, f"step {name} failed: {event_type}")
            return self._out
        if event_type != waiting.get("reply_type"):
            return self._stale()
        self.state.pop("waiting", None)
        self._record(name).update(status="completed", result=data, by=actor)
        self._say(actor, f"step {name}: {event_type} received")
        self._after(self.definition.step(name))
        return self._out

    def cancel(self, actor: str, reason: str | None) -> Transition:
        self.state.pop("waiting", None)
        self._out.status = RunStatus.CANCELLED
        self._say(actor, "run cancelled" + (f": {reason}" if reason else ""))
        return self._out

    # moving through the steps

    def _enter(self, index: int) -> None:
        """Run steps from `index` until one has to wait or the run ends."""
        entered = 0
        while index < len(self.definition.steps):
            step = self.definition.steps[index]
            entered += 1
            if entered > MAX_STEPS_PER_TRANSITION:
                self._fail(step.name, SERVICE_ACTOR, f"step {step.name} failed: {MAX_STEPS_PER_TRANSITION} "
                           "steps ran without waiting; the definition's `next` rules loop")
                return
            self._out.current_step = step.name
            try:
                if step.when is not None and not evaluate(step.when, self._names()):
                    self._record(step.name)["status"] = "skipped"
                    self._say(RULE_ACTOR, f"step {step.name} skipped: {step.when} is false")
                    index += 1
                    continue
                if self._start_step(step):
                    return
                index = self._next_index(step)
            except ExpressionError as exc:
                self._fail(step.name, SERVICE_ACTOR, f"step {step.name} failed: {exc}")
                return
        self._complete()

    def _after(self, step: Step) -> None:
        try:
            index = self._next_index(step)
        except ExpressionError as exc:
            self._fail(step.name, SERVICE_ACTOR, f"step {step.name} failed: {exc}")
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
        """Begin a step; True when the run now waits for it."""
        attempt = self.state["attempts"][step.name] = self.state["attempts"].get(step.name, 0) + 1
        request_id = f"{self.run_id}:{step.name}:{attempt}"
        record = self._record(step.name)
        record["status"] = "waiting"
        if step.type == "task":
            self._request(step.name, request_id, step.task)
            return True
        if step.type == "decision":
            return self._decide(step, request_id)
        if step.type == "wait":
            self._wait(step)
            return True
        self._emit_and_await(step, request_id)
        return True

    def _decide(self, step: Step, request_id: str) -> bool:
        names = self._names()
        record = self._record(step.name)
        record["proposal"] = render(step.raw["proposal"], names)
        record["currency"] = render(step.raw.get("currency"), names)
        rule = step.raw.get("rule")
        if rule is not None and evaluate(rule, names):
            record.update(status="completed", outcome="approved", by=RULE_ACTOR, changes={})
            record["result"] = {"outcome": "approved", "comment": None, "changes": {},
                                "prices": approved_prices(record["proposal"], {}, record["currency"])}
            self._say(RULE_ACTOR, f"step {step.name}: approved by rule: {rule}")
            return False
        why = f"rule not met ({rule})" if rule is not None else "no rule"
        self._say(RULE_ACTOR if rule else SERVICE_ACTOR,
                  f"step {step.name}: {why}; decision asked of role {step.raw['role_id']}")
        spec = TaskSpec(title=step.raw["title"], task_type="decision", role_id=step.raw["role_id"],
                        priority=step.raw.get("priority", "medium"), description=step.raw.get("description"),
                        data={**(step.raw.get("data") or {}), "proposal": "${steps." + step.name + ".proposal}"})
        self._request(step.name, request_id, spec)
        return True

    def _wait(self, step: Step) -> None:
        names = self._names()
        if "duration" in step.raw:
            timer = TimerToSet(step.name, delay=step.timedelta_of("duration"))
        elif "days" in step.raw:
            days = evaluate(step.raw["days"], names)
            if not isinstance(days, int | float) or isinstance(days, bool) or days < 0:
                raise ExpressionError(f"{step.raw['days']!r} gives {days!r}, not a number of days >= 0")
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

    def _emit_and_await(self, step: Step, request_id: str) -> None:
        data = {"request_id": request_id, "org_id": self.org_id, **render(step.raw.get("data") or {}, self._names())}
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

    def _request(self, workflow_step: str, request_id: str, spec: TaskSpec) -> None:
        names = self._names()
        self._out.tasks.append(TaskToRequest(
            workflow_step=workflow_step, request_id=request_id, title=render(spec.title, names),
            task_type=spec.task_type, priority=spec.priority, description=spec.description,
            role_id=spec.role_id, assigned_to=spec.assigned_to, data=render(spec.data, names),
        ))
        if "." not in workflow_step:
            self.state["waiting"] = {"kind": "task", "step": workflow_step, "request_id": request_id}
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
        self._say(SERVICE_ACTOR, "run completed")

    # failure and compensation

    def _fail(self, name: str, actor: str, reason: str) -> None:
        self._record(name).update(status="failed", error=reason, by=actor)
        self.state["failure"] = {"step": name, "reason": reason, "by": actor}
        self._out.current_step = name
        self._say(actor, reason)
        to_compensate = [self.definition.step(name)] + [
            s for s in reversed(self.definition.steps[: self.definition.index_of(name)])
            if self.state["steps"].get(s.name, {}).get("status") == "completed"
        ]
        pending: list[str] = []
        try:
            for step in to_compensate:
                for i, spec in enumerate(step.compensation, start=1):
                    workflow_step = f"{step.name}.compensation.{i}"
                    self._request(workflow_step, f"{self.run_id}:{workflow_step}:1", spec)
                    pending.append(workflow_step)
        except ExpressionError as exc:
            self._finish_failed(reason, compensated=False, why=f"compensation could not be requested: {exc}")
            return
        if not pending:
            self._finish_failed(reason, compensated=True)
            return
        self.state["waiting"] = {"kind": "compensation", "step": name}
        self.state["compensating"] = {"reason": reason, "pending": pending}
        self._say(SERVICE_ACTOR, f"compensating: {', '.join(pending)}")

    def _compensation_done(self, workflow_step: str, actor: str) -> Transition | None:
        compensating = self.state.get("compensating")
        if not compensating or workflow_step not in compensating["pending"]:
            return None
        compensating["pending"].remove(workflow_step)
        if not compensating["pending"]:
            self._finish_failed(compensating["reason"], compensated=True)
        return self._out

    def _compensation_failed(self, workflow_step: str, actor: str, reason: str) -> Transition | None:
        compensating = self.state.get("compensating")
        if not compensating or workflow_step not in compensating["pending"]:
            return None
        compensating["pending"].remove(workflow_step)
        self._finish_failed(compensating["reason"], compensated=False,
                            why=f"compensation {workflow_step} failed: {reason}")
        return self._out

    def _finish_failed(self, reason: str, *, compensated: bool, why: str | None = None) -> None:
        self.state.pop("waiting", None)
        self.state.pop("compensating", None)
        self._out.status = RunStatus.FAILED
        self._out.compensated = compensated
        self._out.failure_reason = reason if compensated else f"{reason}; {why} - needs attention"
        self._say(SERVICE_ACTOR, "run failed" + ("" if compensated else " and needs attention: " + (why or "")))

    # helpers

    def _waiting_for(self, kind: str, step: str) -> dict[str, Any] | None:
        waiting: dict[str, Any] | None = self.state.get("waiting")
        if waiting and waiting.get("kind") == kind and waiting.get("step") == step:
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


def approved_prices(proposal: Any, changes: dict[str, Any], currency: Any) -> list[dict[str, Any]]:
    """The prices to publish: each recommendation at its recommended price, unless the
    decider changed it. task-service hands the decider's list of `{listing_id, date,
    price}` over as `changes: {"prices": [...]}`."""
    edits = changes.get("prices") or changes.get("changes") or []
    overrides = {(c.get("listing_id"), c.get("date")): c.get("price")
                 for c in (edits if isinstance(edits, list) else []) if isinstance(c, dict)}
    prices = []
    for item in proposal if isinstance(proposal, list) else []:
        if not isinstance(item, dict):
            continue
        key = (item.get("listing_id"), item.get("date"))
        prices.append({
            "listing_id": item.get("listing_id"), "date": item.get("date"),
            "price": overrides.get(key, item.get("recommended_price")),
            "currency": item.get("currency") or currency,
            "previous_price": item.get("current_price"),
        })
    return prices
