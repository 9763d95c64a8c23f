"""Keyset pages behind an opaque cursor: a page ends at the sort key and id of its
last item, and the next page starts strictly after them, so items inserted or
changed meanwhile never shift a later page (no duplicate, no gap among the items
that were there), and a deep page costs what the first does.

The cursor is base64url JSON (`[sort, [key values...], id]`); clients pass it back
as they got it."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from stayops_kit.errors import InvalidRequest

# A cursor is base64url text; its pattern for the OpenAPI document.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{4,600}={0,2}$"


class CursorInvalid(InvalidRequest):
    code = "cursor-invalid"
    title = "Cursor invalid"


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"t": value.isoformat()}
    return value


def _typed(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"t"} and isinstance(value["t"], str):
        return dt.datetime.fromisoformat(value["t"])
    return value


def encode_cursor(sort: str, keys: Sequence[Any], last_id: str) -> str:
    text = json.dumps([sort, [_plain(k) for k in keys], last_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, width: int) -> tuple[list[Any], str]:
    """The key values and id a cursor of this sort (with `width` keys) ends at;
    a cursor of another sort, or one this service did not give, is a 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, keys, last_id = json.loads(raw)
        values = [_typed(k) for k in keys]
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CursorInvalid("the cursor is not one this service gave: pass next_cursor as it came") from exc
    if made_for != sort or not isinstance(last_id, str) or not isinstance(keys, list) or len(values) != width:
        raise CursorInvalid(f"the cursor belongs to another sort than {sort!r}: start again without a cursor")
    return values, last_id


def after(columns: Sequence[sa.ColumnElement[Any]], values: Sequence[Any], *, descending: bool
          ) -> sa.ColumnElement[bool]:
    """Rows strictly after (or, descending, before) the position `values` of `columns`
    (the last of which is unique): a row comparison, which an index on the columns serves."""
    left = sa.tuple_(*columns)
    right = sa.tuple_(*(sa.literal(v, type_=c.type) for c, v in zip(columns, values, strict=True)))
    return left < right if descending else left > right
