"""`stayops up --demo` as a newcomer runs it: the real services come up, the ready
line is printed, the four health checks answer, the demo org's tokens work, and
Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from stayops_infra.testing import free_port, free_port_pair

SERVICE_PORTS = (8000, 8001, 8002, 8003, 8004)  # the console, then the four services


def _ports_free() -> bool:
    import socket

    for port in SERVICE_PORTS:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


@pytest.mark.stack
def test_stayops_up_reaches_the_ready_line_and_every_service_is_healthy(tmp_path: Path) -> None:
    if not _ports_free():
        pytest.skip("ports 8000-8004 are taken (a `stayops up` is running here)")
    env = {
        **os.environ,
        "STAYOPS_DATA_DIR": str(tmp_path / "data"),
        "STAYOPS_PG_PORT": str(free_port()),
        "STAYOPS_KAFKA_PORT": str(free_port_pair()),
    }
    stayops = Path(sys.executable).parent / "stayops"
    process = subprocess.Popen([str(stayops), "up", "--demo"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("StayOps is ready"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(240), "no ready line:\n" + "".join(lines[-40:])
        for port in SERVICE_PORTS:
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        output = "".join(lines)
        owner_token = output.split("token owner:\n", 1)[1].splitlines()[0].strip()
        owner = {"Authorization": f"Bearer {owner_token}"}
        tasks = httpx.get("http://127.0.0.1:8001/v1/tasks", headers=owner)
        assert tasks.status_code == 200
        automations = httpx.get("http://127.0.0.1:8003/v1/automations", headers=owner).json()["items"]
        weekly = next(a for a in automations if a["name"] == "Weekly price optimisation")
        assert (weekly["cron"], weekly["action"]["workflow_key"]) == ("0 9 * * 0", "dynamic-pricing")
        next_fire = datetime.fromisoformat(weekly["next_fire_at"]).astimezone(ZoneInfo(weekly["timezone"]))
        assert (next_fire.weekday(), next_fire.hour, next_fire.minute) == (6, 9, 0), "Sundays 09:00, local time"
        sign_in = httpx.get("http://127.0.0.1:8000/sign-in", timeout=5)
        assert sign_in.status_code == 200 and "Sign in as Owner" in sign_in.text, "the console lists the demo org"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(90)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        reader.join(5)
    assert code == 0, "".join(lines[-30:])
    deadline = time.monotonic() + 10
    while not _ports_free() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ports_free(), "services still listening after Ctrl-C"
