"""Workflow definition documents: the published JSON Schema, validation, templates
and the built-in definitions every org can run. Pure: no I/O beyond reading the
package's own files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter, ValidationError

from stayops_kit.errors import InvalidRequest
from stayops_schemas.catalog import CATALOG
from workflow_service import expressions
from workflow_service.expressions import ExpressionError

END = "end"  # a `goto` target that ends the run
_TEMPLATE = re.compile(r"\$\{([^}]+)\}")
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

    @property
    def task(self) -> TaskSpec:
        return TaskSpec.of(self.raw)

    def timedelta_of(self, field_name: str) -> timedelta:
        return _DURATION.validate_python(self.raw[field_name])


@dataclass(frozen=True)
class Definition:
    key: str
    name: str
    parameters: dict[str, Any]
    result: dict[str, Any]
    steps: tuple[Step, ...]

    def index_of(self, name: str) -> int:
        for i, step in enumerate(self.steps):
            if step.name == name:
                return i
        raise KeyError(name)

    def step(self, name: str) -> Step:
        return self.steps[self.index_of(name)]


def parse(document: dict[str, Any]) -> Definition:
    """A valid definition, or `DefinitionInvalid` naming every problem found."""
    errors = [
        {"path": error.json_path, "message": error.message}
        for error in sorted(Draft202012Validator(schema()).iter_errors(document), key=lambda e: e.json_path)
    ]
    if errors:
        raise DefinitionInvalid(errors)
    steps = tuple(
        Step(name=raw["name"], type=raw["type"], raw=raw, when=raw.get("when"),
             next=tuple(NextRule(goto=r["goto"], when=r.get("when")) for r in raw.get("next", ())),
             compensation=tuple(TaskSpec.of(c) for c in raw.get("compensation", ())))
        for raw in document["steps"]
    )
    definition = Definition(key=document["key"], name=document["name"],
                            parameters=document.get("parameters") or {"type": "object"},
                            result=document.get("result") or {}, steps=steps)
    errors = list(_semantic_errors(definition))
    if errors:
        raise DefinitionInvalid(errors)
    return definition


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
        expressions_of = [("when", step.when), *[(f"next[{j}].when", r.when) for j, r in enumerate(step.next)],
                          ("rule", step.raw.get("rule")), ("days", step.raw.get("days")),
                          ("until", step.raw.get("until"))]
        for where, text in expressions_of:
            if text is not None:
                yield from _expression_errors(f"{at}.{where}", text)
        for where in ("duration", "timeout"):
            if where in step.raw:
                try:
                    step.timedelta_of(where)
                except ValidationError:
                    yield {"path": f"{at}.{where}", "message": f"{step.raw[where]!r} is not an ISO 8601 duration"}
        for where in ("event_type", "reply_type", "failure_type"):
            if where in step.raw and not (isinstance(step.raw[where], str) and step.raw[where] in CATALOG):
                yield {"path": f"{at}.{where}", "message": f"{step.raw[where]!r} is not in the event catalog"}
        for text in _templates_in(step.raw):
            yield from _expression_errors(at, text)
    for text in _templates_in(definition.result):
        yield from _expression_errors("$.result", text)
    try:
        Draft202012Validator.check_schema(definition.parameters)
    except Exception as exc:
        yield {"path": "$.parameters", "message": f"not a valid JSON Schema: {exc}"}


def _expression_errors(path: str, text: object) -> Any:
    if not isinstance(text, str):  # the schema leaves fields of other step types free
        yield {"path": path, "message": f"an expression is text, not {type(text).__name__}"}
        return
    try:
        expressions.check(text)
    except ExpressionError as exc:
        yield {"path": path, "message": str(exc)}


def _templates_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return _TEMPLATE.findall(value)
    if isinstance(value, dict):
        return [t for v in value.values() for t in _templates_in(v)]
    if isinstance(value, list):
        return [t for v in value for t in _templates_in(v)]
    return []


def render(template: Any, names: dict[str, Any]) -> Any:
    """Fill a template: a string that is exactly `${expr}` becomes the expression's
    value (a list stays a list); `${expr}` inside a longer string is written in."""
    if isinstance(template, str):
        whole = _TEMPLATE.fullmatch(template)
        if whole:
            return expressions.evaluate(whole.group(1), names)
        return _TEMPLATE.sub(lambda m: _as_text(expressions.evaluate(m.group(1), names)), template)
    if isinstance(template, dict):
        return {key: render(value, names) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, names) for value in template]
    return template


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def resolve_parameters(definition: Definition, given: dict[str, Any]) -> dict[str, Any]:
    """The run's parameters: the given ones plus the defaults, checked against the
    definition's parameter schema."""
    resolved = dict(given)
    for name, spec in (definition.parameters.get("properties") or {}).items():
        if name not in resolved and isinstance(spec, dict) and "default" in spec:
            resolved[name] = spec["default"]
    validator = Draft202012Validator(definition.parameters)
    problems = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(resolved)]
    if problems:
        raise ParametersInvalid(f"the parameters of {definition.key} are not valid: " + "; ".join(problems))
    return resolved
