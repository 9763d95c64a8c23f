"""The expressions of event automations: filters (`data.rating <= 3`), `${...}`
templates (`Clean ${listing.title}`) and dedupe keys (`${data.reservation_id}`).

The same restricted language as workflow definitions — comparisons, boolean logic,
arithmetic and field access over plain JSON data; no calls, no dunders — built the
same way on simpleeval. It lives here rather than shared with workflow-service
while that module is being hardened; the two should become one module in the kit."""

from __future__ import annotations

import ast
import operator as op
import re
from collections.abc import Mapping
from typing import Any

from simpleeval import FeatureNotAvailable, InvalidExpression, SimpleEval

from stayops_kit.errors import InvalidRequest

_MAX_LENGTH = 1000
_JSON_NAMES = {"true": True, "false": False, "null": None}
# `${expr}`; an expression holds no braces, so the first `}` ends it.
_TEMPLATE = re.compile(r"\$\{([^{}]*)\}")


def _numbers(x: Any, y: Any) -> Any:
    """`*` multiplies numbers only: `'a' * 10000000000` must not eat the memory."""
    if isinstance(x, int | float) and isinstance(y, int | float):
        return x * y
    raise TypeError("'*' multiplies numbers only")


def _contains(container: Any, item: Any) -> bool:
    return container is not None and item in container


_OPERATORS: dict[type, Any] = {
    ast.Add: op.add, ast.Sub: op.sub, ast.Mult: _numbers, ast.Div: op.truediv,
    ast.FloorDiv: op.floordiv, ast.Mod: op.mod,
    ast.Eq: op.eq, ast.NotEq: op.ne, ast.Lt: op.lt, ast.LtE: op.le, ast.Gt: op.gt, ast.GtE: op.ge,
    ast.Not: op.not_, ast.USub: op.neg, ast.UAdd: op.pos,
    ast.In: lambda x, y: _contains(y, x), ast.NotIn: lambda x, y: not _contains(y, x),
}

_ALLOWED_NODES: tuple[type, ...] = (
    ast.Expression, ast.Name, ast.Constant, ast.Attribute, ast.Subscript, ast.Load,
    ast.UnaryOp, ast.BinOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.And, ast.Or, *_OPERATORS,
)


class ExpressionError(InvalidRequest):
    """An expression outside the language, or one that cannot be evaluated on its data."""

    title = "Invalid expression"


def check(text: str) -> None:
    """Refuse anything outside the language before it is ever evaluated."""
    if len(text) > _MAX_LENGTH:
        raise ExpressionError(f"expression longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{text!r} is not a valid expression: {exc.msg}") from exc
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionError(
                f"{text!r} uses {type(node).__name__}, which expressions do not allow: "
                "use comparisons, and/or/not, arithmetic and field access only"
            )
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"{text!r} reads {node.attr!r}: names starting with '_' are not fields")


class _FieldsOnly(SimpleEval):  # type: ignore[misc]
    """simpleeval, narrowed: `a.b` reads a field of a mapping, never a Python attribute."""

    def __init__(self, names: Mapping[str, Any]) -> None:
        super().__init__(operators=_OPERATORS, functions={}, names={**_JSON_NAMES, **names})

    def _eval_attribute(self, node: ast.Attribute) -> Any:
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


def evaluate(text: str, names: Mapping[str, Any]) -> Any:
    """The value of `text` over `names`. A missing field reads as null; anything
    else that goes wrong is an `ExpressionError`."""
    check(text)
    try:
        return _FieldsOnly(names).eval(text.strip())
    except (InvalidExpression, FeatureNotAvailable, TypeError, ValueError, ZeroDivisionError,
            KeyError, IndexError) as exc:
        raise ExpressionError(f"{text!r} cannot be evaluated: {exc}") from exc


def check_template(value: Any) -> None:
    """Refuse a template (a string, or lists and objects of them) whose `${...}`
    parts are not in the language."""
    if isinstance(value, str):
        for expression in _TEMPLATE.findall(value):
            check(expression)
    elif isinstance(value, Mapping):
        for item in value.values():
            check_template(item)
    elif isinstance(value, list):
        for item in value:
            check_template(item)


def render(value: Any, names: Mapping[str, Any]) -> Any:
    """Fill in a template. A string that is one `${expr}` is that expression's value
    (a number stays a number); `${...}` inside text is interpolated (null as '');
    lists and objects are rendered item by item; anything else is itself."""
    if isinstance(value, str):
        whole = _TEMPLATE.fullmatch(value.strip())
        if whole:
            return evaluate(whole.group(1), names)

        def interpolate(match: re.Match[str]) -> str:
            found = evaluate(match.group(1), names)
            return "" if found is None else str(found)

        return _TEMPLATE.sub(interpolate, value)
    if isinstance(value, Mapping):
        return {key: render(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, names) for item in value]
    return value
