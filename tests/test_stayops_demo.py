"""`stayops demo` runs the weekly pricing scenario twice on its own ephemeral stack
and prints readable timelines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.stack
def test_the_demo_runs_both_branches_and_exits_0(tmp_path: Path) -> None:
    stayops = Path(sys.executable).parent / "stayops"
    finished = subprocess.run([str(stayops), "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    output = finished.stdout + finished.stderr

    assert finished.returncode == 0, output[-3000:]
    assert "Both runs completed." in output
    assert "approved by rule" in output, "run 1 is approved by rule"
    assert "completed: approved" in output, "run 2 is approved by the owner"
    assert "AI Revenue Manager" in output and "prices proposed by" in output, "who proposed which prices"
