"""Time and identifiers, injected so that tests control both."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


IdFactory = Callable[[], str]


def new_id() -> str:
    return str(uuid.uuid4())
