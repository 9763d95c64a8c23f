"""The safe expression language of workflow definitions: comparisons, boolean logic
and arithmetic over `params` and `steps`, nothing else — no calls, no dunders."""

from __future__ import annotations

import ast
import operator as op
from collections.abc import Mapping
from typing import Any

from simpleeval import FeatureNotAvailable, InvalidExpression, SimpleEval

from stayops_kit.errors import InvalidRequest

_MAX_LENGTH = 1000
# JSON's spelling of the constants, for definitions written in JSON or YAML.
_JSON_NAMES = {"true": True, "false": False, "null": None}


def _numbers(x: Any, y: Any) -> bool:
    """`*` multiplies numbers only: `'a' * 10000000000` must not eat the memory."""
    if isinstance(x, int | float) and isinstance(y, int | float):
        return True
    raise TypeError("'*' multiplies numbers only")

_OPERATORS: dict[type, Any] = {
    ast.Add: op.add, ast.Sub: op.sub, ast.Mult: lambda x, y: _numbers(x, y) and x * y, ast.Div: op.truediv,
    ast.FloorDiv: op.floordiv, ast.Mod: op.mod,
    ast.Eq: op.eq, ast.NotEq: op.ne, ast.Lt: op.lt, ast.LtE: op.le, ast.Gt: op.gt, ast.GtE: op.ge,
    ast.Not: op.not_, ast.USub: op.neg, ast.UAdd: op.pos,
    ast.In: lambda x, y: op.contains(y, x), ast.NotIn: lambda x, y: not op.contains(y, x),
}

_ALLOWED_NODES: tuple[type, ...] = (
    ast.Expression, ast.Expr, ast.Name, ast.Constant, ast.Attribute, ast.Subscript, ast.Load,
    ast.UnaryOp, ast.BinOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.And, ast.Or, *_OPERATORS,
)



class ExpressionError(InvalidRequest):
    """An expression that is not in the language, or cannot be evaluated on its data."""
    code = "expression-invalid"

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
        for node in (ast.Call, ast.Assign, ast.AugAssign, ast.Import, ast.JoinedStr, ast.Slice):
            self.nodes.pop(node, None)

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


def evaluate(text: str, names: Mapping[str, Any]) -> Any:
    """The value of `text` over `names` (plain JSON data). A missing field reads as
    null; anything else that goes wrong is an `ExpressionError`."""
    check(text)
    try:
        return _FieldsOnly(names).eval(text.strip())
    except (InvalidExpression, FeatureNotAvailable, TypeError, ValueError, ZeroDivisionError,
            KeyError, IndexError) as exc:
        raise ExpressionError(f"{text!r} cannot be evaluated: {exc}") from exc
