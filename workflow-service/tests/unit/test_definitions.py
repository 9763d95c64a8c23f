"""Definition documents: the schema, the checks beyond it, templates, parameters."""

from __future__ import annotations

from typing import Any

import pytest

from workflow_service.definitions import (
    DefinitionInvalid,
    ParametersInvalid,
    builtin_documents,
    load_document,
    parse,
    render,
    resolve_parameters,
)


def document(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"key": "turnover", "name": "Turnover", "steps": list(steps), **extra}


TASK = {"name": "clean", "type": "task", "task_type": "manual", "title": "Clean", "role_id": "cleaner"}


def errors_of(doc: dict[str, Any]) -> list[dict[str, str]]:
    with pytest.raises(DefinitionInvalid) as caught:
        parse(doc)
    return caught.value.errors


def test_the_builtin_dynamic_pricing_definition_is_valid() -> None:
    definition = parse(builtin_documents()["dynamic-pricing"])
    assert [s.name for s in definition.steps] == [
        "sync", "analysis", "decision", "publish", "monitor", "review", "summary"]


def test_yaml_and_json_documents_read_the_same() -> None:
    yaml_text = b"key: turnover\nname: Turnover\nsteps:\n  - {name: clean, type: task, task_type: manual, title: C}\n"
    json_text = b'{"key": "turnover", "name": "Turnover", "steps": [{"name": "clean", "type": "task",' \
                b' "task_type": "manual", "title": "C"}]}'
    assert load_document(yaml_text, "application/yaml") == load_document(json_text, "application/json")


@pytest.mark.parametrize(("doc", "path"), [
    (document(), "$.steps"),
    (document({**TASK, "task_type": "cooking"}), "$.steps[0].task_type"),
    (document({"name": "w", "type": "wait"}), "$.steps[0]"),
    (document({"name": "d", "type": "decision", "title": "D"}), "$.steps[0]"),
    ({"name": "no key", "steps": [TASK]}, "$"),
])
def test_schema_errors_name_where_they_are(doc: dict[str, Any], path: str) -> None:
    assert any(e["path"].startswith(path) for e in errors_of(doc))


def test_unknown_targets_duplicate_names_bad_expressions_and_events_are_refused() -> None:
    errors = errors_of(document(
        {**TASK, "next": [{"goto": "nowhere"}], "when": "open('x')"},
        {**TASK, "data": {"n": "${params.__class__}"}},
        {"name": "ask", "type": "emit_and_await", "event_type": "no.such.event",
         "reply_type": "stayops.task.completed", "timeout": "PT1H"},
        {"name": "w", "type": "wait", "duration": "P7X"},
    ))
    messages = " | ".join(e["message"] for e in errors)
    for expected in ("no step named 'nowhere'", "used twice", "Call", "'_' are not fields",
                     "not in the event catalog", "not an ISO 8601 duration"):
        assert expected in messages


def test_templates_keep_lists_whole_and_write_values_into_text() -> None:
    names = {"params": {"ids": ["a", "b"], "n": 3}, "steps": {}}
    assert render({"ids": "${params.ids}", "text": "n=${params.n}, x=${steps.x.result}", "k": 1}, names) == {
        "ids": ["a", "b"], "text": "n=3, x=", "k": 1}


def test_parameters_get_their_defaults_and_are_checked() -> None:
    definition = parse(builtin_documents()["dynamic-pricing"])
    assert resolve_parameters(definition, {"listing_ids": ["l-1"]})["threshold_pct"] == 10
    with pytest.raises(ParametersInvalid):
        resolve_parameters(definition, {"threshold_pct": 5})
    with pytest.raises(ParametersInvalid):
        resolve_parameters(definition, {"listing_ids": ["l-1"], "monitor_days": "soon"})
