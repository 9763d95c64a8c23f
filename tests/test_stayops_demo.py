"""`stayops demo` runs the weekly pricing scenario twice on its own ephemeral stack
and prints readable timelines, then the reactive scenarios: a reservation's tasks, a
Hostaway cancellation cancelling them, a bad review alerting the owner."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.stack
def test_the_demo_runs_both_branches_and_the_reactive_scenarios_and_exits_0(tmp_path: Path) -> None:
    stayops = Path(sys.executable).parent / "stayops"
    finished = subprocess.run([str(stayops), "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    output = finished.stdout + finished.stderr

    assert finished.returncode == 0, output[-3000:]
    assert "Both runs completed." in output
    assert "approved by rule" in output, "run 1 is approved by rule"
    assert "completed: approved" in output, "run 2 is approved by the owner"
    assert "AI Revenue Manager" in output and "prices proposed by" in output, "who proposed which prices"

    assert "every reactive scenario happened." in output
    airbnb = re.search(r"Reservation (res-\w+) on Airbnb \(.*\): 2 tasks appeared", output)
    assert airbnb, "a reservation's tasks appear"
    reservation = airbnb.group(1)
    # Local times in the listing's zone: a welcome 2 h after a 15:00 check-in, cleaning at 11:00.
    assert re.search(rf"pending   Welcome the guests of reservation {reservation} \(medium, for owner, due "
                     r"\d{4}-\d\d-\d\d 17:00 Europe/\w+\)", output), "the owner welcomes the guests"
    assert re.search(rf"pending   Clean after reservation {reservation} \(high, for Cleaner, due "
                     r"\d{4}-\d\d-\d\d 11:00 Europe/\w+\)", output), "the cleaner cleans at 11:00"
    hostaway = re.search(r"Reservation (hx-\w+) on Hostaway: 2 tasks appeared", output)
    assert hostaway, "the Hostaway reservation's tasks appear"
    assert "hostaway.reservation.cancelled): 2 tasks cancelled" in output
    cancelled = [line for line in output.splitlines() if line.strip().startswith("cancelled ")]
    assert {hostaway.group(1) in line for line in cancelled} == {True} and len(cancelled) == 2
    assert re.search(r"Owner alert \d+\.\ds after the review:\n\s+pending\s+2-star review on airbnb: answer the "
                     r"guest \(urgent, for owner\)", output), "the owner is alerted"
