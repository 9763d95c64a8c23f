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
from typing import Annotated, Any, get_args

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema, model_validator


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


def _date_time_text(value: Any) -> Any:
    """A query parameter is always text: refuse text that is a number (pydantic would
    read "0.5" as seconds since 1970), which `format: date-time` does not allow."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("a time is ISO 8601 text, e.g. '2025-03-02T09:00:00+01:00', not a number")
    return _text_only("a time", "2025-03-02T09:00:00+01:00")(value)


# A date-time in a query string (where every value arrives as text).
IsoDateTimeQuery = Annotated[dt.datetime, BeforeValidator(_date_time_text)]


def _date_text(value: Any) -> Any:
    """A date in a query string: refuse text that is a number (pydantic would read
    "20250302" as seconds since 1970), which `format: date` does not allow."""
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("a date is ISO 8601 text, e.g. '2025-03-02', not a number")
    return _text_only("a date", "2025-03-02")(value)


# A date in a query string.
IsoDateQuery = Annotated[dt.date, BeforeValidator(_date_text)]


def _takes_numbers_not_booleans(annotation: Any) -> bool:
    kinds = set(get_args(annotation)) or {annotation}
    return bool(kinds & {int, float}) and bool not in kinds


class ExactNumbers(BaseModel):
    """A request body whose integer and number fields refuse `true`/`false` (which
    pydantic reads as 1/0). A model validator, not a field type, so each field's
    published schema keeps its `minimum`/`maximum`."""

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                for key in {name, field.alias or name}:
                    if isinstance(data.get(key), bool) and _takes_numbers_not_booleans(field.annotation):
                        raise ValueError(f"{key} is a number, not true or false")
        return data


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
