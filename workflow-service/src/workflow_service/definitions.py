"""Workflow definition documents: the published JSON Schema, validation, templates
and the built-in definitions every org can run. Pure: no I/O beyond reading the
package's own files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter, ValidationError

from stayops_kit import expressions
from stayops_kit.errors import InvalidRequest
from stayops_kit.expressions import ExpressionError, templates_in
from stayops_schemas import subscriptions
from stayops_schemas.catalog import CATALOG
from stayops_schemas.ownership import WORKFLOW_COMMANDS

END = "end"  # a `goto` target that ends the run
# The action whose prices the engine itself fills from the approving decision.
PUBLISH_PRICES = "publish_prices"
# Task data of a publish_prices step that only the engine writes.
ENGINE_APPROVAL_FIELDS = ("prices", "prices_ref", "price_edits", "approved_by", "approval_step")
# Fields of an emitted command that only the engine writes: the run's tenant and request.
ENGINE_EMIT_FIELDS = ("request_id", "org_id", "workflow_run_id")
# Request-shaped events that are not replies an `emit_and_await` step could wait for.
class StepKind(StrEnum):
    """The classic saga taxonomy: compensatable steps can be undone, the pivot is the
    point of no return, retriable steps after it are only ever retried."""

    COMPENSATABLE = "compensatable"
    PIVOT = "pivot"
    RETRIABLE = "retriable"
_DURATION = TypeAdapter(timedelta)


class DefinitionInvalid(InvalidRequest):
    """A definition document that does not follow the workflow schema; `errors`
    lists each problem with the path where it is."""
    code = "definition-invalid"

    title = "Invalid workflow definition"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("the workflow definition is not valid: " + "; ".join(
            f"{e['path']}: {e['message']}" for e in errors[:5]))


class ParametersInvalid(InvalidRequest):
    code = "parameters-invalid"
    title = "Invalid run parameters"


@cache
def schema() -> dict[str, Any]:
    """The published JSON Schema of definition documents."""
    text = resources.files("workflow_service").joinpath("workflow.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _builtin_documents() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for entry in resources.files("workflow_service").joinpath("builtin").iterdir():
        if entry.name.endswith((".yaml", ".yml")):
            document = yaml.safe_load(entry.read_text())
            found[document["key"]] = document
    return found


def builtin_documents() -> dict[str, dict[str, Any]]:
    """The built-in definitions by key, each with its own `version`."""
    return {key: dict(document) for key, document in _builtin_documents().items()}


def load_document(body: bytes, content_type: str | None) -> dict[str, Any]:
    """A definition document sent as JSON or YAML."""
    try:
        is_yaml = bool(content_type) and "yaml" in (content_type or "")
        document = yaml.safe_load(body) if is_yaml else json.loads(body)
    except (ValueError, yaml.YAMLError) as exc:
        raise DefinitionInvalid([{"path": "$", "message": f"not valid JSON or YAML: {exc}"}]) from exc
    if not isinstance(document, dict):
        raise DefinitionInvalid([{"path": "$", "message": "a definition is an object"}])
    return document


@dataclass(frozen=True)
class TaskSpec:
    """A task a step requests; `data` may hold templates."""

    title: str
    task_type: str
    priority: str = "medium"
    description: str | None = None
    role_id: str | None = None
    assigned_to: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: dict[str, Any]) -> TaskSpec:
        return cls(title=raw["title"], task_type=raw["task_type"], priority=raw.get("priority", "medium"),
                   description=raw.get("description"), role_id=raw.get("role_id"),
                   assigned_to=raw.get("assigned_to"), data=dict(raw.get("data") or {}))


def reply_types() -> list[str]:
    """Catalog events that answer a request by its `request_id`: what an
    `emit_and_await` step may wait for (declared in `stayops_schemas.subscriptions`)."""
    return list(subscriptions.reply_types())


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed step (or compensation) is tried again; the defaults are Temporal's:
    1 s, doubling, capped at 100 times the first interval."""

    max_attempts: int = 1
    initial_interval: timedelta = timedelta(seconds=1)
    backoff: float = 2.0
    max_interval: timedelta | None = None
    non_retryable: tuple[str, ...] = ()

    @classmethod
    def of(cls, raw: dict[str, Any] | None, *, default_attempts: int) -> RetryPolicy:
        raw = raw or {}
        initial = _DURATION.validate_python(raw.get("initial_interval", "PT1S"))
        return cls(max_attempts=int(raw.get("max_attempts", default_attempts)), initial_interval=initial,
                   backoff=float(raw.get("backoff", 2.0)),
                   max_interval=_DURATION.validate_python(raw["max_interval"]) if "max_interval" in raw else None,
                   non_retryable=tuple(raw.get("non_retryable", ())))

    def delay_after(self, attempt: int) -> timedelta:
        """How long to wait after attempt `attempt` (1-based) failed."""
        cap = self.max_interval if self.max_interval is not None else self.initial_interval * 100
        seconds = self.initial_interval.total_seconds() * self.backoff ** min(attempt - 1, 64)
        return min(timedelta(seconds=min(seconds, cap.total_seconds())), cap)

    def retries(self, attempt: int, reason: str) -> bool:
        """Whether a failure of attempt `attempt` with this reason is tried again."""
        return attempt < self.max_attempts and not any(text in reason for text in self.non_retryable)


# Compensations are retried whatever the step says: an undo that fails once may well
# succeed a moment later, and one that keeps failing needs a person.
COMPENSATION_RETRY = RetryPolicy(max_attempts=3)
# Steps after the pivot cannot be undone, so they are tried this often by default.
RETRIABLE_ATTEMPTS = 3


# What a step's `on_timeout` may say (besides `{goto: <step>}`). `retry`, the default,
# treats the timeout as a failed attempt: tried again while the retry policy allows.
ON_TIMEOUT_FAIL = "fail"
ON_TIMEOUT_RETRY = "retry"
ON_TIMEOUT_GOTO = "goto"
# A decision's `default_action` when its deadline passes undecided.
DEFAULT_ACTION_FAIL = "fail"
DEFAULT_ACTIONS = ("approve", "reject", DEFAULT_ACTION_FAIL)
# The step types a `timeout` applies to.
TIMED_STEP_TYPES = ("task", "decision", "emit_and_await")
# A map step: how many child runs it keeps open at once by default, and what a failed
# item does: `continue` (the step completes, the failures listed) or `fail_fast` (the
# open children are cancelled and the step fails).
DEFAULT_MAX_CONCURRENCY = 10
ON_ITEM_FAILURE_CONTINUE = "continue"
ON_ITEM_FAILURE_FAIL_FAST = "fail_fast"
# A parallel step: its named branches each run as a child run of the parent's own
# workflow version whose definition is the branch, named by the run's `branch`:
# `<step>/<branch>` (nested: `<step>/<branch>/<step>/<branch>`).
BRANCH_SEPARATOR = "/"
# How deep parallel steps may nest (a parallel step in a branch is one level deeper).
MAX_PARALLEL_DEPTH = 3


@dataclass(frozen=True)
class NextRule:
    goto: str
    when: str | None = None


@dataclass(frozen=True)
class Step:
    name: str
    type: str
    raw: dict[str, Any]
    when: str | None = None
    next: tuple[NextRule, ...] = ()
    compensation: tuple[TaskSpec, ...] = ()
    kind: StepKind = StepKind.COMPENSATABLE
    retry: RetryPolicy = RetryPolicy()
    approval: str | None = None
    # How long one attempt may take (task, decision and emit_and_await steps), and what
    # then: `fail`, `retry` (a new attempt, as its retry policy allows) or `goto` a step.
    timeout: timedelta | None = None
    on_timeout: str = ON_TIMEOUT_RETRY
    timeout_goto: str | None = None
    # A decision's deadline, escalation and the action the deadline takes.
    deadline: timedelta | None = None
    escalate_after: timedelta | None = None
    escalate_to: dict[str, str] | None = None
    default_action: str = DEFAULT_ACTION_FAIL

    @property
    def task(self) -> TaskSpec:
        return TaskSpec.of(self.raw)

    @property
    def publishes_prices(self) -> bool:
        return self.type == "task" and (self.raw.get("data") or {}).get("action") == PUBLISH_PRICES

    def timedelta_of(self, field_name: str) -> timedelta:
        return _DURATION.validate_python(self.raw[field_name])


@dataclass(frozen=True)
class Definition:
    key: str
    name: str
    parameters: dict[str, Any]
    result: dict[str, Any]
    steps: tuple[Step, ...]
    # Overlapping runs: {key: <template over params>, policy: skip | queue | cancel_previous}.
    concurrency: dict[str, str] | None = None
    # Each parallel step's branches, parsed as definitions of their own: step -> branch -> it.
    branches: dict[str, dict[str, Definition]] = field(default_factory=dict)

    def index_of(self, name: str) -> int:
        for i, step in enumerate(self.steps):
            if step.name == name:
                return i
        raise KeyError(name)

    def step(self, name: str) -> Step:
        return self.steps[self.index_of(name)]

    def branch(self, path: str) -> Definition:
        """The definition of a parallel step's branch: `path` is `<step>/<branch>`,
        repeated for a branch of a branch. KeyError for a path it does not have."""
        parts = path.split(BRANCH_SEPARATOR)
        if len(parts) % 2 or not parts:
            raise KeyError(path)
        found = self.branches[parts[0]][parts[1]]
        return found.branch(BRANCH_SEPARATOR.join(parts[2:])) if len(parts) > 2 else found

    def approves_prices(self, decision: str) -> bool:
        """Whether a publish_prices step names this decision as its approval: its
        prices are then bounded by the org's price policy."""
        return any(step.approval == decision for step in self.steps if step.publishes_prices)


def parse(document: dict[str, Any], *, depth: int = 0) -> Definition:
    """A valid definition, or `DefinitionInvalid` naming every problem found. `depth`
    is how many parallel steps this document is a branch of."""
    errors = [
        {"path": error.json_path, "message": error.message}
        for error in sorted(Draft202012Validator(schema()).iter_errors(document), key=lambda e: e.json_path)
    ]
    if errors:
        raise DefinitionInvalid(errors)
    errors = list(_kind_and_retry_errors(document["steps"]))
    if errors:
        raise DefinitionInvalid(errors)
    steps = tuple(_step_of(raw, kind) for raw, kind in zip(document["steps"], _kinds(document["steps"]), strict=True))
    definition = Definition(key=document["key"], name=document["name"],
                            parameters=document.get("parameters") or {"type": "object"},
                            result=document.get("result") or {}, steps=steps,
                            concurrency=document.get("concurrency"))
    errors = list(_semantic_errors(definition))
    branches: dict[str, dict[str, Definition]] = {}
    for i, step in enumerate(definition.steps):
        if step.type == "parallel":
            parsed, branch_errors = _branches_of(f"$.steps[{i}]", step, document, depth)
            branches[step.name] = parsed
            errors.extend(branch_errors)
    if errors:
        raise DefinitionInvalid(errors)
    return replace(definition, branches=branches)


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def branch_document(document: dict[str, Any], step: dict[str, Any], branch: str) -> dict[str, Any]:
    """A parallel step's branch as a workflow document of its own: its steps, the
    parent's key (so the branch's checks are the parent's: no map over it), and as
    its result each of its steps' result by name."""
    steps = step["branches"][branch]
    names = [s["name"] for s in steps if isinstance(s, dict) and isinstance(s.get("name"), str)
             and _NAME.match(s["name"])]
    return {"key": document["key"], "name": f"{document['name']}: {step['name']}.{branch}"[:200],
            "result": {name: "${steps." + name + ".result}" for name in dict.fromkeys(names)}, "steps": steps}


def _branches_of(at: str, step: Step, document: dict[str, Any],
                 depth: int) -> tuple[dict[str, Definition], list[dict[str, str]]]:
    """A parallel step's branches parsed, each as a workflow of its own (its errors
    at their place in the parent document), and what is wrong with the step."""
    errors: list[dict[str, str]] = []
    for name in ("items", "workflow", "version", "on_item_failure"):
        if name in step.raw:
            errors.append({"path": f"{at}.{name}", "message": f"{name} belongs to a map step; a parallel step "
                           "runs its branches"})
    if "retry" in step.raw:
        errors.append({"path": f"{at}.retry", "message": "a parallel step is not retried as a whole; each "
                       "branch's steps have their own retries"})
    branches = step.raw.get("branches")
    if not isinstance(branches, dict) or not branches:
        errors.append({"path": f"{at}.branches", "message": "a parallel step needs at least one branch: "
                       "branches: {<name>: [steps...]}"})
        return {}, errors
    if depth + 1 > MAX_PARALLEL_DEPTH:
        errors.append({"path": f"{at}.branches", "message": f"parallel steps nest at most {MAX_PARALLEL_DEPTH} "
                       "deep; this one is in a branch of a branch of a branch"})
        return {}, errors
    parsed: dict[str, Definition] = {}
    for branch, steps in branches.items():
        where = f"{at}.branches.{branch}"
        if not isinstance(steps, list) or not steps:
            errors.append({"path": where, "message": f"branch {branch!r} has no steps"})
            continue
        try:
            parsed[branch] = parse(branch_document(document, step.raw, branch), depth=depth + 1)
        except DefinitionInvalid as exc:
            errors.extend({**e, "path": _in_branch(e["path"], where)} for e in exc.errors)
    return parsed, errors


def _in_branch(path: str, where: str) -> str:
    """A path in a branch's own document, as a path in the parent's."""
    if path.startswith("$.steps"):
        return where + path.removeprefix("$.steps")
    return where + path.removeprefix("$")


def _kinds(raws: list[dict[str, Any]]) -> list[StepKind]:
    """Each step's kind: as declared, else compensatable before the pivot and
    retriable after it."""
    kinds, after_pivot = [], False
    for raw in raws:
        declared = raw.get("kind")
        kind = StepKind(declared) if declared else StepKind.RETRIABLE if after_pivot else StepKind.COMPENSATABLE
        after_pivot = after_pivot or kind is StepKind.PIVOT
        kinds.append(kind)
    return kinds


def _duration_of(raw: dict[str, Any], name: str) -> timedelta | None:
    return _DURATION.validate_python(raw[name]) if name in raw else None


def _step_of(raw: dict[str, Any], kind: StepKind) -> Step:
    on_timeout = raw.get("on_timeout", ON_TIMEOUT_RETRY)
    goto = on_timeout.get("goto") if isinstance(on_timeout, dict) else None
    return Step(name=raw["name"], type=raw["type"], raw=raw, when=raw.get("when"),
                timeout=_duration_of(raw, "timeout"),
                on_timeout=ON_TIMEOUT_GOTO if goto is not None else str(on_timeout), timeout_goto=goto,
                deadline=_duration_of(raw, "deadline"), escalate_after=_duration_of(raw, "escalate_after"),
                escalate_to=raw.get("escalate_to"), default_action=raw.get("default_action", DEFAULT_ACTION_FAIL),
                next=tuple(NextRule(goto=r["goto"], when=r.get("when")) for r in raw.get("next", ())),
                compensation=tuple(TaskSpec.of(c) for c in raw.get("compensation", ())), kind=kind,
                retry=RetryPolicy.of(raw.get("retry"), default_attempts=RETRIABLE_ATTEMPTS
                                     if kind is StepKind.RETRIABLE else 1),
                approval=raw.get("approval"))


def _kind_and_retry_errors(raws: list[dict[str, Any]]) -> Any:
    pivots = [i for i, raw in enumerate(raws) if raw.get("kind") == StepKind.PIVOT]
    for i in pivots[1:]:
        yield {"path": f"$.steps[{i}].kind", "message": "a workflow has one pivot, its point of no return; "
               f"step {raws[pivots[0]]['name']!r} is already the pivot"}
    for i, raw in enumerate(raws):
        at = f"$.steps[{i}]"
        after_pivot = bool(pivots) and i > pivots[0]
        if after_pivot and raw.get("kind") == StepKind.COMPENSATABLE:
            yield {"path": f"{at}.kind", "message": "a step after the pivot cannot be undone; it is retriable"}
        if not after_pivot and raw.get("kind") == StepKind.RETRIABLE:
            yield {"path": f"{at}.kind", "message": "retriable steps come after the pivot; declare the pivot "
                   "(kind: pivot) first, or give this step a retry policy"}
        if after_pivot and raw.get("compensation"):
            yield {"path": f"{at}.compensation", "message": "a step after the pivot is never compensated; "
                   "it is retried instead"}
        retry = raw.get("retry") or {}
        durations = {}
        for where in ("initial_interval", "max_interval"):
            if where in retry:
                try:
                    durations[where] = _DURATION.validate_python(retry[where])
                except ValidationError:
                    yield {"path": f"{at}.retry.{where}", "message": f"{retry[where]!r} is not an ISO 8601 duration"}
        for where, value in durations.items():
            if value <= timedelta(0):
                yield {"path": f"{at}.retry.{where}", "message": f"{retry[where]!r} is not longer than zero"}
        if len(durations) == 2 and durations["max_interval"] < durations["initial_interval"]:
            yield {"path": f"{at}.retry.max_interval", "message": "max_interval is shorter than initial_interval"}
        yield from _timing_errors(at, raw)


def _timing_errors(at: str, raw: dict[str, Any]) -> Any:
    """A step's timeout, and a decision's deadline and escalation: durations longer
    than zero, on the step types they apply to, in an order that can happen."""
    durations: dict[str, timedelta] = {}
    for where in ("timeout", "deadline", "escalate_after"):
        if where not in raw:
            continue
        try:
            durations[where] = _DURATION.validate_python(raw[where])
        except ValidationError:
            yield {"path": f"{at}.{where}", "message": f"{raw[where]!r} is not an ISO 8601 duration"}
            continue
        if durations[where] <= timedelta(0):
            yield {"path": f"{at}.{where}", "message": f"{raw[where]!r} is not longer than zero"}
    if "timeout" in raw and raw["type"] not in TIMED_STEP_TYPES:
        yield {"path": f"{at}.timeout", "message": f"a timeout applies to {', '.join(TIMED_STEP_TYPES)} steps; "
               "a wait step waits as long as it says"}
    if "on_timeout" in raw and "timeout" not in raw:
        yield {"path": f"{at}.on_timeout", "message": "on_timeout needs a timeout"}
    for where in ("deadline", "escalate_after", "escalate_to", "default_action"):
        if where in raw and raw["type"] != "decision":
            yield {"path": f"{at}.{where}", "message": f"{where} belongs to a decision step"}
    if raw["type"] == "decision" and "timeout" in raw and "deadline" in raw:
        yield {"path": f"{at}.timeout", "message": "a decision has a deadline (with its default_action) or a "
               "timeout, not both"}
    if "default_action" in raw and "deadline" not in raw:
        yield {"path": f"{at}.default_action", "message": "default_action is what the deadline does: it needs a "
               "deadline"}
    if ("escalate_after" in raw) != ("escalate_to" in raw):
        yield {"path": f"{at}.escalate_to" if "escalate_after" in raw else f"{at}.escalate_after",
               "message": "escalate_after and escalate_to go together: when, and to whom"}
    if "escalate_after" in durations and "deadline" in durations \
            and durations["escalate_after"] >= durations["deadline"]:
        yield {"path": f"{at}.escalate_after", "message": "escalate_after is not before the deadline"}


def _semantic_errors(definition: Definition) -> Any:
    names = [s.name for s in definition.steps]
    for i, step in enumerate(definition.steps):
        at = f"$.steps[{i}]"
        if names.count(step.name) > 1:
            yield {"path": f"{at}.name", "message": f"step name {step.name!r} is used twice"}
        if step.name == END:
            yield {"path": f"{at}.name", "message": f"{END!r} is reserved for ending the run"}
        for j, rule in enumerate(step.next):
            if rule.goto != END and rule.goto not in names:
                yield {"path": f"{at}.next[{j}].goto", "message": f"no step named {rule.goto!r}"}
        if step.timeout_goto is not None and step.timeout_goto != END and step.timeout_goto not in names:
            yield {"path": f"{at}.on_timeout.goto", "message": f"no step named {step.timeout_goto!r}"}
        expressions_of = [("when", step.when), *[(f"next[{j}].when", r.when) for j, r in enumerate(step.next)],
                          ("rule", step.raw.get("rule")), ("days", step.raw.get("days")),
                          ("until", step.raw.get("until")), ("items", step.raw.get("items"))]
        for where, text in expressions_of:
            if text is not None:
                yield from _expression_errors(f"{at}.{where}", text)
        for where in ("duration",):
            if where in step.raw:
                try:
                    step.timedelta_of(where)
                except ValidationError:
                    yield {"path": f"{at}.{where}", "message": f"{step.raw[where]!r} is not an ISO 8601 duration"}
        for where in ("event_type", "reply_type", "failure_type"):
            if where in step.raw and not (isinstance(step.raw[where], str) and step.raw[where] in CATALOG):
                yield {"path": f"{at}.{where}", "message": f"{step.raw[where]!r} is not in the event catalog"}
        if "batch" in step.raw and step.type != "decision":
            yield {"path": f"{at}.batch", "message": "batch belongs to a decision step"}
        if step.type == "decision" and "batch" in step.raw and "rule" in step.raw:
            yield {"path": f"{at}.rule", "message": "a batch decision is always put to a person: no rule"}
        if step.type == "emit_and_await":
            yield from _emit_errors(at, step)
        if step.type == "map":
            yield from _map_errors(at, step, definition.key)
        for name in ("branches", "on_branch_failure"):
            if name in step.raw and step.type != "parallel":
                yield {"path": f"{at}.{name}", "message": f"{name} belongs to a parallel step"}
        yield from _approval_errors(at, step, definition.steps[:i])
        for j, spec in enumerate(step.compensation):
            if spec.data.get("action") == PUBLISH_PRICES:
                yield {"path": f"{at}.compensation[{j}].data.action",
                       "message": "a compensation cannot publish prices: only an approved publish step can"}
        # A parallel step's branches are checked as workflows of their own.
        for text in templates_in({k: v for k, v in step.raw.items() if k != "branches"}):
            yield from _expression_errors(at, text)
    for text in templates_in(definition.result):
        yield from _expression_errors("$.result", text)
    for text in templates_in((definition.concurrency or {}).get("key")):
        yield from _expression_errors("$.concurrency.key", text)
    try:
        Draft202012Validator.check_schema(definition.parameters)
    except Exception as exc:
        yield {"path": "$.parameters", "message": f"not a valid JSON Schema: {exc}"}


def _emit_errors(at: str, step: Step) -> Any:
    """A workflow may send only the commands the catalog allows it, never another
    service's fact (a forged `airbnb.price.updated`, a `stayops.pricing.approved`)."""
    emitted = step.raw["event_type"]
    if emitted in CATALOG and emitted not in WORKFLOW_COMMANDS:
        yield {"path": f"{at}.event_type", "message": f"step {step.name!r} may not emit {emitted!r}: a workflow "
               f"emits only the commands {sorted(WORKFLOW_COMMANDS)}; other events are facts their owner announces"}
    replies = reply_types()
    for where in ("reply_type", "failure_type"):
        awaited = step.raw.get(where)
        if awaited in CATALOG and awaited not in replies:
            yield {"path": f"{at}.{where}", "message": f"{awaited!r} does not answer a request by its request_id; "
                   f"a step can await one of {replies}"}
    for name in ENGINE_EMIT_FIELDS:
        if name in (step.raw.get("data") or {}):
            yield {"path": f"{at}.data.{name}", "message": f"{name} is set by the engine (the run's own), "
                   "not by the definition"}


def _map_errors(at: str, step: Step, own_key: str) -> Any:
    """What the schema cannot say of a map step (whether its workflow exists is
    checked at publish, where the org's definitions are known). Its required fields
    are checked here, not by an if/then in the JSON Schema, which fuzzers cannot
    generate data for."""
    missing = [name for name in ("items", "workflow") if name not in step.raw]
    for name in missing:
        yield {"path": f"{at}.{name}", "message": f"a map step needs {name}"}
    if missing:
        return
    if step.raw["workflow"] == own_key:
        yield {"path": f"{at}.workflow", "message": f"a map step cannot start runs of its own workflow "
               f"{own_key!r}: each child would map again"}
    if "retry" in step.raw:
        yield {"path": f"{at}.retry", "message": "a map step is not retried as a whole; each child run has its "
               "own steps' retries"}


def map_targets(definition: Definition, at: str = "$.steps") -> list[tuple[str, str, int | None]]:
    """Each map step's workflow (in the branches of parallel steps too): (path, key,
    version or None), for the publish check."""
    found = [(f"{at}[{i}].workflow", step.raw["workflow"], step.raw.get("version"))
             for i, step in enumerate(definition.steps) if step.type == "map" and "workflow" in step.raw]
    for i, step in enumerate(definition.steps):
        for branch, parsed in definition.branches.get(step.name, {}).items():
            found.extend(map_targets(parsed, f"{at}[{i}].branches.{branch}"))
    return found


def _approval_errors(at: str, step: Step, earlier: tuple[Step, ...]) -> Any:
    """Prices are published only as a decision approved them: the step names that
    decision, and the engine, never the definition, writes the prices and approver."""
    if not step.publishes_prices:
        if step.approval is not None:
            yield {"path": f"{at}.approval", "message": f"only a task whose data.action is {PUBLISH_PRICES!r} "
                   "names an approval"}
        return
    for name in ENGINE_APPROVAL_FIELDS:
        if name in (step.raw.get("data") or {}):
            yield {"path": f"{at}.data.{name}", "message": f"{name} of step {step.name!r} is filled by the engine "
                   "from the approving decision; a definition may not set it"}
    decisions = [s.name for s in earlier if s.type == "decision"]
    if step.approval is None:
        yield {"path": f"{at}.approval", "message": f"step {step.name!r} publishes prices: name the earlier "
               f"decision step that approves them (approval: <step>; decisions before it: {decisions})"}
    elif step.approval not in decisions:
        yield {"path": f"{at}.approval", "message": f"{step.approval!r} is not a decision step before "
               f"{step.name!r} (decisions before it: {decisions})"}


def _expression_errors(path: str, text: object) -> Any:
    if not isinstance(text, str):  # the schema leaves fields of other step types free
        yield {"path": path, "message": f"an expression is text, not {type(text).__name__}"}
        return
    try:
        expressions.check(text)
    except ExpressionError as exc:
        yield {"path": path, "message": str(exc)}


def concurrency_key(definition: Definition, parameters: dict[str, Any]) -> str | None:
    """The key overlapping runs share (None without a `concurrency`): the template
    filled from the parameters; a list is sorted and joined with commas, so the same
    listings in another order are the same key."""
    if not definition.concurrency:
        return None
    value = expressions.render(definition.concurrency["key"], {"params": parameters, "parameters": parameters})
    if isinstance(value, list):
        value = ",".join(sorted(str(v) for v in value))
    elif isinstance(value, dict):
        value = json.dumps(value, sort_keys=True)
    return str(value)[:1000]


# A parameter schema's `x-default: caller` defaults it to the person who starts the run.
CALLER_DEFAULT = "caller"


def resolve_parameters(definition: Definition, given: dict[str, Any], *,
                       caller: str | None = None) -> dict[str, Any]:
    """The run's parameters: the given ones plus the defaults, checked against the
    definition's parameter schema. `caller` is the person starting the run, if a
    person is (not an automation, not an AI agent)."""
    resolved = dict(given)
    for name, spec in (definition.parameters.get("properties") or {}).items():
        if name in resolved or not isinstance(spec, dict):
            continue
        if spec.get("x-default") == CALLER_DEFAULT and caller is not None:
            resolved[name] = caller
        elif "default" in spec:
            resolved[name] = spec["default"]
    validator = Draft202012Validator(definition.parameters)
    problems = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(resolved)]
    if problems:
        raise ParametersInvalid(f"the parameters of {definition.key} are not valid: " + "; ".join(problems))
    return resolved
