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


# Planned failures for end-to-end tests: `STAYOPS_FAULTS_FILE` names a file of
# `<kind> <id> <times>` lines; the next `<times>` calls of `planned_failure(kind, ids)`
# naming that id answer True (the count is kept in the file, so a restart does not
# reset it). Unset in production.
FAULTS_FILE_ENV = "STAYOPS_FAULTS_FILE"


def planned_failure(kind: str, ids: list[str]) -> str | None:
    """The id whose planned failure of `kind` this call uses up, if one of `ids` has one left."""
    path = os.environ.get(FAULTS_FILE_ENV)
    if not path or not os.path.exists(path):
        return None
    with open(path) as faults:
        lines = [line.split() for line in faults if line.strip()]
    wanted = set(ids)
    for parts in lines:
        if len(parts) == 3 and parts[0] == kind and parts[1] in wanted and parts[2].isdigit() and int(parts[2]) > 0:
            parts[2] = str(int(parts[2]) - 1)
            partial = f"{path}.partial"
            with open(partial, "w") as out:
                out.write("".join(" ".join(p) + "\n" for p in lines))
            os.replace(partial, path)
            return parts[1]
    return None
