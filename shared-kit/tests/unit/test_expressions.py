"""The expression language: what it computes, what its templates write, and
everything it refuses."""

from __future__ import annotations

import tracemalloc

import pytest

from stayops_kit.expressions import (
    MAX_ITEMS,
    MAX_TEXT,
    ExpressionError,
    check,
    check_template,
    evaluate,
    render,
    templates_in,
)

NAMES = {"params": {"threshold_pct": 10, "ids": ["a", "b"]},
         "steps": {"analysis": {"result": {"max_abs_change_pct": 4.5, "needs_review": False}}}}


@pytest.mark.parametrize(("text", "expected"), [
    ("steps.analysis.result.max_abs_change_pct < params.threshold_pct "
     "and not steps.analysis.result.needs_review", True),
    ("params.threshold_pct * 2 + 1 - 3 / 3", 20.0),
    ("params.threshold_pct % 3 == 1 or false_name", True),
    ("'a' in params.ids", True),
    ("'a' in params.missing", False),
    ("'a' not in params.missing", True),
    ("params['threshold_pct'] >= 10", True),
    ("params.ids[1]", "b"),
    ("steps.missing.result.x", None),
    ("1 if params.threshold_pct > 5 else 2", 1),
    ("steps.analysis.result.needs_review == false and params.none == null", True),
])
def test_comparisons_boolean_logic_arithmetic_and_fields(text: str, expected: object) -> None:
    assert evaluate(text, {**NAMES, "false_name": False}) == expected


@pytest.mark.parametrize("text", [
    "params.__class__",
    "().__class__.__bases__",
    "params._private",
    "len(params.ids)",
    "params.ids.count('a')",
    "__import__('os')",
    "lambda: 1",
    "[x for x in params.ids]",
    "2 ** 1000",
    "params.ids[0:1]",
    "x := 1",
    "f'{params}'",
])
def test_dunders_calls_and_anything_else_are_refused_before_evaluation(text: str) -> None:
    with pytest.raises(ExpressionError):
        check(text)


@pytest.mark.parametrize("text", ["'a' * 100000000000", "unknown_name", "1 / 0", "params < 1", "1 +"])
def test_evaluation_errors_are_expression_errors(text: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate(text, NAMES)


def test_attributes_of_non_objects_are_not_python_attributes() -> None:
    with pytest.raises(ExpressionError):
        evaluate("params.threshold_pct.real", NAMES)


@pytest.mark.parametrize("text", [
    "'%2147483648d' % 1",  # formats a string of 2 GB
    "'%s' % params.x",
    "'a' - params.x",
    "9999999 * 9999999 * 9999999",
    "1 / 0",
    "-" * 60 + "1",  # deeper than the interpreter's stack allows
    " + ".join(["params.s"] * 120),  # more steps than one evaluation may take
])
def test_what_would_exceed_the_limits_or_fail_on_every_run_is_refused_before_evaluation(text: str) -> None:
    with pytest.raises(ExpressionError):
        check(text)


@pytest.mark.parametrize(("text", "params"), [
    ("params.fmt % 1", {"fmt": "%20000000d"}),
    ("params.s + params.s + params.s", {"s": "x" * (MAX_TEXT // 2)}),
    ("params.ids + params.ids", {"ids": list(range(MAX_ITEMS))}),
    ("params.n * params.n", {"n": 10**10}),
    ("params.n * 10.0", {"n": 1e308}),
    ("-params.s", {"s": "x"}),
])
def test_data_that_would_exceed_the_limits_fails_the_evaluation_without_allocating(
    text: str, params: dict[str, object],
) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ExpressionError, match=r"numbers only|exceeds the expression limits"):
            evaluate(text, {"params": params})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"evaluating {text!r} allocated {peak} bytes"


def test_values_within_the_limits_are_computed() -> None:
    names = {"params": {"s": "x" * 10, "ids": ["a"], "n": 10**6}}
    assert evaluate("params.s + params.s", names) == "x" * 20
    assert evaluate("params.ids + params.ids", names) == ["a", "a"]
    assert evaluate("params.n * params.n", names) == 10**12
    assert evaluate("params.n % 7", names) == 10**6 % 7


def test_templates_keep_a_whole_value_typed_and_write_values_into_text() -> None:
    names = {"params": {"ids": ["a", "b"], "n": 3, "ok": True}, "steps": {}}
    assert render({"ids": "${params.ids}", "text": "n=${params.n}, x=${steps.x.result}", "k": 1}, names) == {
        "ids": ["a", "b"], "text": "n=3, x=", "k": 1}
    assert render("${params.n}", names) == 3
    assert render(["ids ${params.ids}, ok ${params.ok}"], names) == ['ids ["a", "b"], ok true']


def test_a_template_finds_and_checks_every_expression_it_holds() -> None:
    template = {"title": "Clean ${data.title}", "data": {"guests": ["${data.guests}"]}, "n": 1}
    assert templates_in(template) == ["data.title", "data.guests"]
    check_template(template)
    with pytest.raises(ExpressionError, match="Call"):
        check_template({"title": "Clean ${data.title.upper()}"})


def test_a_template_cannot_write_more_text_than_an_operator_could() -> None:
    names = {"data": {"s": "x" * (MAX_TEXT // 2 + 1)}}
    assert render("${data.s}", names) == names["data"]["s"]
    with pytest.raises(ExpressionError, match="characters"):
        render("${data.s} and ${data.s}", names)
