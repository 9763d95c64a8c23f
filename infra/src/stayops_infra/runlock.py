"""One `stayops up` per data directory, recorded as a pid file."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from stayops_infra.errors import AlreadyRunning

PID_FILE = "stayops.pid"


def running_pid(data_dir: Path) -> int | None:
    """The pid of the live `stayops up` owning `data_dir`, if any."""
    try:
        pid = int((data_dir / PID_FILE).read_text().strip())
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
    except (FileNotFoundError, ValueError, psutil.Error):
        return None
    return pid


def acquire(data_dir: Path) -> Path:
    """Claim the data dir for this process; a stale pid file (dead process) is replaced.

    The file is created exclusively, so of two `up` started together only one wins."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pid_file = data_dir / PID_FILE
    for _ in range(2):
        try:
            fd = os.open(pid_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid = running_pid(data_dir)
            if pid is not None:
                raise AlreadyRunning(
                    f"StayOps is already running from {data_dir} (pid {pid}). Stop it first "
                    f"(Ctrl-C in its terminal, or `kill {pid}`), or use another STAYOPS_DATA_DIR."
                ) from None
            pid_file.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        return pid_file
    raise AlreadyRunning(f"another `stayops up` is claiming {data_dir} right now")


def release(data_dir: Path) -> None:
    if running_pid(data_dir) == os.getpid():
        (data_dir / PID_FILE).unlink(missing_ok=True)
