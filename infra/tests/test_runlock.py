"""Only one `stayops up` may own a data directory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stayops_infra import runlock
from stayops_infra.cli import app


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A process that stays alive until the test ends (it waits on its stdin)."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield child.pid
    child.kill()
    child.wait()


def test_second_up_refuses_while_one_is_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_pid: int) -> None:
    monkeypatch.setenv("STAYOPS_DATA_DIR", str(tmp_path))
    (tmp_path / runlock.PID_FILE).write_text(f"{live_pid}\n")

    result = CliRunner().invoke(app, ["up"])

    assert result.exit_code == 1
    assert "already running" in result.output
    assert str(live_pid) in result.output
    assert (tmp_path / runlock.PID_FILE).read_text().strip() == str(live_pid)


def test_a_stale_pid_file_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / runlock.PID_FILE).write_text(f"{dead.pid}\n")

    runlock.acquire(tmp_path)

    assert runlock.running_pid(tmp_path) is not None
    runlock.release(tmp_path)
    assert not (tmp_path / runlock.PID_FILE).exists()
