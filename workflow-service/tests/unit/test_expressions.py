"""The expression language: what it computes, and everything it refuses."""

from __future__ import annotations

import pytest

from workflow_service.expressions import ExpressionError, check, evaluate

NAMES = {"params": {"threshold_pct": 10, "ids": ["a", "b"]},
         "steps": {"analysis": {"result": {"max_abs_change_pct": 4.5, "needs_review": False}}}}


@pytest.mark.parametrize(("text", "expected"), [
    ("steps.analysis.result.max_abs_change_pct < params.threshold_pct "
     "and not steps.analysis.result.needs_review", True),
    ("params.threshold_pct * 2 + 1 - 3 / 3", 20.0),
    ("params.threshold_pct % 3 == 1 or false_name", True),
    ("'a' in params.ids", True),
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
