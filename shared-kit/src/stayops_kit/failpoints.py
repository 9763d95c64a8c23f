"""Crash points for reliability tests: `STAYOPS_FAILPOINTS=relay.after_send` makes
the process kill itself with SIGKILL exactly there. Unset in production."""

from __future__ import annotations

import functools
import os
import signal


@functools.cache
def _armed() -> frozenset[str]:
    return frozenset(filter(None, os.environ.get("STAYOPS_FAILPOINTS", "").split(",")))


def failpoint(name: str) -> None:
    if name in _armed():
        os.kill(os.getpid(), signal.SIGKILL)
