"""The one safe expression language of StayOps — workflow definitions (`when`,
`${...}` templates over `params` and `steps`) and automations (filters, templates,
dedupe keys and checks over an event or metrics): comparisons, boolean logic,
arithmetic and field access over plain JSON data, nothing else — no calls, no
dunders — and bounded: every value an operator makes, a template's text and the
work of one evaluation have a cap, so no expression can make a consumer allocate
more than that for any tenant."""

from __future__ import annotations

import ast
import json
import math
import operator as op
import re
from collections.abc import Callable, Mapping
from typing import Any

from simpleeval import FeatureNotAvailable, InvalidExpression, SimpleEval

from stayops_kit.errors import InvalidRequest

MAX_LENGTH = 1000
"""Characters of one expression."""
MAX_TEXT = 10_000
"""Characters of a string an operator (or a template) makes."""
MAX_ITEMS = 10_000
"""Items of a list an operator makes."""
MAX_NUMBER = 1e15
"""Magnitude of a number arithmetic makes: far above any price or count, far below
where integers grow without bound."""
MAX_NODES = 500
"""Nodes one evaluation may visit (its step budget)."""
MAX_DEPTH = 50
"""Nesting of one expression: deeper trees would exhaust the interpreter's stack."""

# JSON's spelling of the constants, for definitions written in JSON or YAML.
_JSON_NAMES = {"true": True, "false": False, "null": None}
# `${expr}`; an expression holds no braces (no dict or set literals), so the first
# `}` ends it.
_TEMPLATE = re.compile(r"\$\{([^{}]+)\}")


class ExpressionError(InvalidRequest):
    """An expression that is not in the language, exceeds its limits, or cannot be
    evaluated on its data."""

    code = "expression-invalid"
    title = "Invalid expression"


class _LimitReached(Exception):
    """Raised inside an operator; `evaluate` turns it into an `ExpressionError`."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


def _bounded(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise _LimitReached(f"the result {value} is not a finite number")
    if _is_number(value) and abs(value) > MAX_NUMBER:
        raise _LimitReached(f"a number beyond ±{MAX_NUMBER:g}")
    return value


def _arithmetic(name: str, function: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """An arithmetic operator on numbers only: `'%2147483648d' % 1` formats a string
    of gigabytes, `'a' * 10**10` repeats one; neither is arithmetic."""

    def apply(x: Any, y: Any) -> Any:
        if not (_is_number(x) and _is_number(y)):
            raise TypeError(f"{name!r} works on numbers only, not {type(x).__name__} and {type(y).__name__}")
        return _bounded(function(x, y))

    return apply


def _add(x: Any, y: Any) -> Any:
    """Numbers add, strings and lists concatenate — checked before the new value is
    made, so `params.s + params.s + ...` stops at the cap instead of allocating."""
    if _is_number(x) and _is_number(y):
        return _bounded(x + y)
    if isinstance(x, str) and isinstance(y, str):
        if len(x) + len(y) > MAX_TEXT:
            raise _LimitReached(f"a string longer than {MAX_TEXT} characters")
        return x + y
    if isinstance(x, list | tuple) and isinstance(y, list | tuple):
        if len(x) + len(y) > MAX_ITEMS:
            raise _LimitReached(f"a list longer than {MAX_ITEMS} items")
        return [*x, *y]
    raise TypeError(f"'+' cannot add {type(x).__name__} and {type(y).__name__}")


def _unary(name: str, function: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(x: Any) -> Any:
        if not _is_number(x):
            raise TypeError(f"unary {name!r} works on numbers only, not {type(x).__name__}")
        return _bounded(function(x))

    return apply


def _contains(container: Any, item: Any) -> bool:
    """`x in field` over a missing field (null) is false, as reading it is null."""
    return container is not None and item in container


_OPERATORS: dict[type, Any] = {
    ast.Add: _add, ast.Sub: _arithmetic("-", op.sub), ast.Mult: _arithmetic("*", op.mul),
    ast.Div: _arithmetic("/", op.truediv), ast.FloorDiv: _arithmetic("//", op.floordiv),
    ast.Mod: _arithmetic("%", op.mod),
    ast.Eq: op.eq, ast.NotEq: op.ne, ast.Lt: op.lt, ast.LtE: op.le, ast.Gt: op.gt, ast.GtE: op.ge,
    ast.Not: op.not_, ast.USub: _unary("-", op.neg), ast.UAdd: _unary("+", op.pos),
    ast.In: lambda x, y: _contains(y, x), ast.NotIn: lambda x, y: not _contains(y, x),
}
_NUMBERS_ONLY = (ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod)

_ALLOWED_NODES: tuple[type, ...] = (
    ast.Expression, ast.Expr, ast.Name, ast.Constant, ast.Attribute, ast.Subscript, ast.Load,
    ast.UnaryOp, ast.BinOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.And, ast.Or, *_OPERATORS,
)


def check(text: str) -> None:
    """Refuse anything outside the language, or beyond its limits, before it is ever
    evaluated on a run's data: publishing a definition runs this on every expression."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, RecursionError, MemoryError) as exc:
        message = exc.msg if isinstance(exc, SyntaxError) else "nested too deeply"
        raise ExpressionError(f"{text!r} is not a valid expression: {message}") from exc
    nodes = list(ast.walk(tree))
    for node in nodes:
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionError(
                f"{text!r} uses {type(node).__name__}, which expressions do not allow: "
                "use comparisons, and/or/not, arithmetic and field access only"
            )
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"{text!r} reads {node.attr!r}: names starting with '_' are not fields")
        if isinstance(node, ast.BinOp) and isinstance(node.op, _NUMBERS_ONLY):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and not _is_number(side.value):
                    raise ExpressionError(f"{text!r}: {ast.unparse(node)!r} applies arithmetic to "
                                          f"{side.value!r}; '-', '*', '/', '//' and '%' work on numbers only")
    if len(nodes) > MAX_NODES:
        raise ExpressionError(f"{text!r} has {len(nodes)} parts; an expression may have at most {MAX_NODES}")
    if _depth(tree) > MAX_DEPTH:
        raise ExpressionError(f"{text!r} is nested more than {MAX_DEPTH} levels deep")
    _check_constant_parts(text, tree.body)


def _depth(node: ast.AST) -> int:
    deepest, level = 0, [node]
    while level:
        deepest += 1
        level = [child for parent in level for child in ast.iter_child_nodes(parent)]
    return deepest


def _is_constant(node: ast.AST) -> bool:
    """True when the value does not depend on a run's data."""
    return all(not isinstance(n, ast.Name) or n.id in _JSON_NAMES for n in ast.walk(node))


def _check_constant_parts(text: str, node: ast.AST) -> None:
    """Evaluate, under the caps, every part that does not depend on the run's data:
    what would fail on every run is refused when the definition is published."""
    if not isinstance(node, ast.expr) or isinstance(node, ast.Constant | ast.Name):
        return
    if _is_constant(node):
        _run(text, lambda evaluator: evaluator._eval(node), {})
        return
    for child in ast.iter_child_nodes(node):
        _check_constant_parts(text, child)


class _FieldsOnly(SimpleEval):  # type: ignore[misc]
    """simpleeval, narrowed: `a.b` reads a field of a mapping, never a Python
    attribute; each evaluation visits at most `MAX_NODES` nodes."""

    def __init__(self, names: Mapping[str, Any]) -> None:
        super().__init__(operators=_OPERATORS, functions={}, names={**_JSON_NAMES, **names})
        for node in (ast.Call, ast.Assign, ast.AugAssign, ast.Import, ast.JoinedStr, ast.Slice):
            self.nodes.pop(node, None)
        self._budget = MAX_NODES

    def _eval(self, node: ast.AST) -> Any:
        self._budget -= 1
        if self._budget < 0:
            raise _LimitReached(f"more than {MAX_NODES} steps in one evaluation")
        return super()._eval(node)

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        if node.attr.startswith("_"):
            raise FeatureNotAvailable(f"{node.attr!r} is not a field")
        value = self._eval(node.value)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise FeatureNotAvailable(f"{node.attr!r}: only fields of objects can be read")
        return value.get(node.attr)

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self._eval(node.value)
        key = self._eval(node.slice)
        if isinstance(container, Mapping):
            return container.get(key)
        if isinstance(container, list | tuple | str) and isinstance(key, int):
            return container[key] if -len(container) <= key < len(container) else None
        raise FeatureNotAvailable("only objects and lists can be indexed")


def _run(text: str, evaluation: Callable[[_FieldsOnly], Any], names: Mapping[str, Any]) -> Any:
    evaluator = _FieldsOnly(names)
    evaluator.expr = text
    try:
        return evaluation(evaluator)
    except _LimitReached as exc:
        raise ExpressionError(f"{text!r} exceeds the expression limits: {exc}") from exc
    except (InvalidExpression, FeatureNotAvailable, TypeError, ValueError, ZeroDivisionError,
            KeyError, IndexError, OverflowError, RecursionError) as exc:
        raise ExpressionError(f"{text!r} cannot be evaluated: {exc}") from exc


def evaluate(text: str, names: Mapping[str, Any]) -> Any:
    """The value of `text` over `names` (plain JSON data). A missing field reads as
    null; anything else that goes wrong, a limit reached included, is an
    `ExpressionError`."""
    check(text)
    return _run(text, lambda evaluator: evaluator.eval(text.strip()), names)


def templates_in(value: Any) -> list[str]:
    """The `${...}` expressions of a template: a string, or lists and objects of them."""
    if isinstance(value, str):
        return _TEMPLATE.findall(value)
    if isinstance(value, Mapping):
        return [found for item in value.values() for found in templates_in(item)]
    if isinstance(value, list):
        return [found for item in value for found in templates_in(item)]
    return []


def check_template(value: Any) -> None:
    """Refuse a template whose `${...}` parts are not in the language or beyond its
    limits, before it is ever rendered."""
    for text in templates_in(value):
        check(text)


def render(template: Any, names: Mapping[str, Any]) -> Any:
    """Fill in a template. A string that is exactly one `${expr}` is that
    expression's value (a number stays a number, a list a list); `${expr}` inside
    longer text is written in (null as nothing, other non-text as JSON), the text
    capped like any operator's; lists and objects are rendered item by item;
    anything else is itself."""
    if isinstance(template, str):
        whole = _TEMPLATE.fullmatch(template)
        if whole:
            return evaluate(whole.group(1), names)
        text = _TEMPLATE.sub(lambda match: _as_text(evaluate(match.group(1), names)), template)
        if len(text) > MAX_TEXT:
            raise ExpressionError(f"a template made a string of {len(text)} characters; at most {MAX_TEXT}")
        return text
    if isinstance(template, Mapping):
        return {key: render(item, names) for key, item in template.items()}
    if isinstance(template, list):
        return [render(item, names) for item in template]
    return template


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)
