"""Definition documents: the schema, the checks beyond it, templates, parameters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from workflow_service.definitions import (
    DefinitionInvalid,
    ParametersInvalid,
    builtin_documents,
    load_document,
    parse,
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


def test_parameters_get_their_defaults_and_are_checked() -> None:
    definition = parse(builtin_documents()["dynamic-pricing"])
    assert resolve_parameters(definition, {"listing_ids": ["l-1"]})["threshold_pct"] == 10
    with pytest.raises(ParametersInvalid):
        resolve_parameters(definition, {"threshold_pct": 5})
    with pytest.raises(ParametersInvalid):
        resolve_parameters(definition, {"listing_ids": ["l-1"], "monitor_days": "soon"})


def paths_of(doc: dict[str, Any]) -> dict[str, str]:
    return {e["path"]: e["message"] for e in errors_of(doc)}


def emitting(event_type: str, **data: Any) -> dict[str, Any]:
    return {"name": "ask", "type": "emit_and_await", "event_type": event_type,
            "reply_type": "airbnb.sync.completed", "timeout": "PT1M", "data": data}


@pytest.mark.parametrize("event_type", [
    "stayops.pricing.approved", "airbnb.price.updated", "stayops.task.completed", "stayops.task.requested",
    "org.policy.updated",
])
def test_a_step_may_emit_only_the_commands_workflows_are_allowed(event_type: str) -> None:
    errors = paths_of(document(TASK, emitting(event_type)))

    assert "may not emit" in errors["$.steps[1].event_type"]
    assert "'ask'" in errors["$.steps[1].event_type"]


def test_the_emitted_command_cannot_name_another_tenant_or_request() -> None:
    errors = paths_of(document(emitting("stayops.sync.requested", platform="airbnb", org_id="org-other",
                                        request_id="run-x:sync:1")))

    assert set(errors) == {"$.steps[0].data.org_id", "$.steps[0].data.request_id"}


def test_a_step_awaits_only_replies() -> None:
    errors = paths_of(document({**emitting("stayops.sync.requested", platform="airbnb"),
                                "reply_type": "stayops.task.completed"}))

    assert "does not answer a request" in errors["$.steps[0].reply_type"]


DECIDE = {"name": "decision", "type": "decision", "role_id": "owner", "title": "Approve",
          "proposal": "${params.p}"}
PUBLISH = {"name": "publish", "type": "task", "task_type": "automated", "assigned_to": "automation",
           "title": "Publish", "approval": "decision", "data": {"action": "publish_prices", "platform": "airbnb"}}


def test_a_publish_step_names_its_decision_and_the_engine_writes_prices_and_approver() -> None:
    definition = parse(document(DECIDE, PUBLISH))
    assert definition.approves_prices("decision")

    forged = paths_of(document(DECIDE, {**PUBLISH, "data": {**PUBLISH["data"], "prices": "${params.p}",
                                                             "approved_by": "u-owner"}}))
    assert set(forged) == {"$.steps[1].data.prices", "$.steps[1].data.approved_by"}
    assert "filled by the engine" in forged["$.steps[1].data.approved_by"]


@pytest.mark.parametrize(("steps", "path"), [
    ([DECIDE, {k: v for k, v in PUBLISH.items() if k != "approval"}], "$.steps[1].approval"),
    ([PUBLISH, DECIDE], "$.steps[0].approval"),
    ([TASK, {**PUBLISH, "approval": "clean"}], "$.steps[1].approval"),
    ([DECIDE, {**TASK, "approval": "decision"}], "$.steps[1].approval"),
    ([{**TASK, "compensation": [{"task_type": "automated", "title": "Undo", "data": {"action": "publish_prices"}}]}],
     "$.steps[0].compensation[0].data.action"),
])
def test_prices_can_be_published_only_as_an_earlier_decision_approved_them(
    steps: list[dict[str, Any]], path: str,
) -> None:
    assert path in paths_of(document(*steps))


def test_expression_bombs_are_refused_when_the_definition_is_published() -> None:
    errors = paths_of(document({**TASK, "when": "'%2147483648d' % 1"},
                               {**TASK, "name": "b", "title": "${'x' + 'y' * 100000000}"}))

    assert "numbers only" in errors["$.steps[0].when"]
    assert "numbers only" in errors["$.steps[1]"]


def test_step_kinds_default_around_the_pivot_and_are_checked() -> None:
    definition = parse(builtin_documents()["dynamic-pricing"])
    kinds = {s.name: (s.kind.value, s.retry.max_attempts) for s in definition.steps}
    assert kinds == {"sync": ("compensatable", 4), "analysis": ("compensatable", 3),
                     "decision": ("compensatable", 1), "publish": ("pivot", 1), "monitor": ("retriable", 3),
                     "review": ("retriable", 3), "summary": ("retriable", 3)}

    errors = paths_of(document(
        {**TASK, "name": "a", "kind": "retriable"}, {**TASK, "name": "b", "kind": "pivot"},
        {**TASK, "name": "c", "kind": "compensatable"}, {**TASK, "name": "d", "kind": "pivot"},
        {**TASK, "name": "e", "compensation": [{"task_type": "manual", "title": "Undo"}],
         "retry": {"initial_interval": "PT10S", "max_interval": "PT1S"}}))
    assert set(errors) == {"$.steps[0].kind", "$.steps[2].kind", "$.steps[3].kind", "$.steps[4].compensation",
                           "$.steps[4].retry.max_interval"}


def test_retry_delays_back_off_up_to_their_cap() -> None:
    [step] = parse(document({**TASK, "retry": {"max_attempts": 10, "initial_interval": "PT2S"}})).steps
    assert [step.retry.delay_after(n).total_seconds() for n in (1, 2, 3, 8, 9)] == [2, 4, 8, 200, 200]


def test_a_parameter_may_default_to_the_person_who_starts_the_run() -> None:
    definition = parse(builtin_documents()["dynamic-pricing"])

    assert resolve_parameters(definition, {"listing_ids": ["l-1"]}, caller="u-7")["owner_user_id"] == "u-7"
    assert "owner_user_id" not in resolve_parameters(definition, {"listing_ids": ["l-1"]})
    assert resolve_parameters(definition, {"listing_ids": ["l-1"], "owner_user_id": "u-1"},
                              caller="u-7")["owner_user_id"] == "u-1"


DECISION = {"name": "approve", "type": "decision", "title": "Approve", "role_id": "owner", "proposal": "${params.p}"}


@pytest.mark.parametrize(("step", "path", "says"), [
    ({**TASK, "retry": {"initial_interval": "-PT1S"}}, "$.steps[0].retry.initial_interval", "does not match"),
    ({**TASK, "retry": {"initial_interval": "PT0S"}}, "$.steps[0].retry.initial_interval", "not longer than zero"),
    ({**TASK, "timeout": "PT0S"}, "$.steps[0].timeout", "not longer than zero"),
    ({**TASK, "timeout": "two hours"}, "$.steps[0].timeout", "does not match"),
    ({**TASK, "timeout": "PT1H", "on_timeout": {"goto": "nowhere"}}, "$.steps[0].on_timeout.goto", "no step named"),
    ({**TASK, "timeout": "PT1H", "on_timeout": "later"}, "$.steps[0].on_timeout", "is not valid"),
    ({**TASK, "on_timeout": "fail"}, "$.steps[0].on_timeout", "needs a timeout"),
    ({"name": "w", "type": "wait", "duration": "PT1H", "timeout": "PT2H"}, "$.steps[0].timeout", "a wait step"),
    ({**TASK, "deadline": "PT1H"}, "$.steps[0].deadline", "belongs to a decision"),
    ({**DECISION, "default_action": "approve"}, "$.steps[0].default_action", "needs a deadline"),
    ({**DECISION, "deadline": "PT1H", "default_action": "maybe"}, "$.steps[0].default_action", "is not one of"),
    ({**DECISION, "deadline": "PT1H", "escalate_after": "PT2H", "escalate_to": {"role": "owner"}},
     "$.steps[0].escalate_after", "not before the deadline"),
    ({**DECISION, "escalate_after": "PT2H"}, "$.steps[0].escalate_to", "go together"),
    ({**DECISION, "escalate_after": "PT2H", "escalate_to": {}}, "$.steps[0].escalate_to", "should be non-empty"),
    ({**DECISION, "deadline": "PT1H", "timeout": "PT1H"}, "$.steps[0].timeout", "not both"),
])
def test_step_timing_that_cannot_work_is_refused_where_it_is(step: dict[str, Any], path: str, says: str) -> None:
    errors = errors_of(document(step))
    assert any(e["path"] == path and says in e["message"] for e in errors), errors


def test_timeouts_deadlines_and_escalation_are_read_from_the_definition() -> None:
    definition = parse(document(
        {**TASK, "timeout": "PT2H", "on_timeout": {"goto": "approve"}},
        {**DECISION, "deadline": "P2D", "escalate_after": "P1D", "escalate_to": {"role": "owner"},
         "default_action": "reject"}))
    clean, approve = definition.steps
    assert (clean.timeout, clean.on_timeout, clean.timeout_goto) == (timedelta(hours=2), "goto", "approve")
    assert (approve.deadline, approve.escalate_after, approve.default_action) == (
        timedelta(days=2), timedelta(days=1), "reject")
    assert parse(document(TASK)).steps[0].on_timeout == "retry"
