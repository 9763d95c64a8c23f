"""Field types for request bodies that accept exactly what their JSON Schema says.
pydantic reads a bare number as a date, time, date-time or duration (seconds since
1970, seconds of a day, seconds) and `true`/`false` as the integers 1/0, which no
client means and no schema of ours allows: these refuse them, so the documented
schema (`format: date`, `date-time`, `time`, `duration`; `type: integer`) is what a
service accepts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema


def _text_only(what: str, example: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool | int | float):
            raise ValueError(f"{what} is ISO 8601 text, e.g. {example!r}, not a number")
        return value

    return check


IsoDate = Annotated[dt.date, BeforeValidator(_text_only("a date", "2025-03-02"))]
IsoTime = Annotated[dt.time, BeforeValidator(_text_only("a time of day", "11:00"))]
IsoDateTime = Annotated[dt.datetime, BeforeValidator(_text_only("a time", "2025-03-02T09:00:00+01:00"))]
IsoDuration = Annotated[dt.timedelta, BeforeValidator(_text_only("a duration", "PT2H"))]


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a whole number, not true or false")
    return value


Integer = Annotated[int, BeforeValidator(_not_a_boolean)]
Number = Annotated[float, BeforeValidator(_not_a_boolean)]


def _amount_text(value: Any) -> Any:
    if not isinstance(value, str | Decimal):
        raise ValueError("an amount is decimal text with at most two decimals, e.g. '129.00', not a number")
    return value


# A price above zero, as text (exact money never travels as a float).
PositiveAmount = Annotated[
    Decimal,
    BeforeValidator(_amount_text),
    Field(gt=0, max_digits=12, decimal_places=2),
    WithJsonSchema({
        "type": "string",
        "pattern": r"^(?!0+(\.0{1,2})?$)[0-9]{1,10}(\.[0-9]{1,2})?$",
        "description": "An amount above zero, as a decimal string with at most two decimals.",
        "examples": ["129.00"],
    }),
]
