"""Service processes: healthy detection, kill, graceful stop and restart by the supervisor."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from stayops_infra.errors import StackError
from stayops_infra.services import ServiceProcess
from stayops_infra.supervisor import Supervisor


def test_wait_healthy_then_kill(fake_service_env: dict[str, str], tmp_path: Path) -> None:
    process = ServiceProcess("fake-service", fake_service_env, log_file=tmp_path / "fake.log")
    process.start()
    try:
        process.wait_healthy(deadline_s=20)
        process.kill()
        assert not process.is_alive()
        assert process.returncode == -9
        assert "fake service starting" in (tmp_path / "fake.log").read_text()
    finally:
        process.terminate()


def test_wait_healthy_reports_a_process_that_dies(tmp_path: Path) -> None:
    process = ServiceProcess("no-such-service", {"STAYOPS_HTTP_PORT": "1"})
    process.start()

    with pytest.raises(StackError, match="exited with code 1"):
        process.wait_healthy(deadline_s=20)


async def test_supervisor_restarts_a_service_that_dies(fake_service_env: dict[str, str]) -> None:
    process = ServiceProcess("fake-service", fake_service_env)
    reports: list[str] = []
    supervisor = Supervisor([process], report=reports.append, terminate_timeout_s=5)
    supervisor.start_all()
    stop = asyncio.Event()
    watching = asyncio.create_task(supervisor.run(stop))
    try:
        await asyncio.to_thread(process.wait_healthy, 20)
        first_pid = process.pid
        process.kill()

        deadline = time.monotonic() + 20
        while not (process.is_alive() and process.pid != first_pid):
            assert time.monotonic() < deadline, "the supervisor did not restart the service"
            await asyncio.sleep(0.1)
        await asyncio.to_thread(process.wait_healthy, 20)
        assert any("fake-service exited" in report for report in reports)
    finally:
        stop.set()
        await watching
    assert not process.is_alive()


def test_the_console_is_configured_with_the_service_urls_and_dev_sign_in(tmp_path: Path) -> None:
    from stayops_infra.services import console_env, console_process

    env = console_env(service_urls={"task-service": "http://127.0.0.1:9001", "agent-service": "http://a:9004"},
                      http_port=9000, kafka_bootstrap="127.0.0.1:9092", registry_file=tmp_path / "orgs.json",
                      private_key_file=tmp_path / "jwt-private.pem")
    assert env["STAYOPS_CONSOLE_TASK_SERVICE_URL"] == "http://127.0.0.1:9001"
    assert env["STAYOPS_CONSOLE_AGENT_SERVICE_URL"] == "http://a:9004"
    assert env["STAYOPS_CONSOLE_REGISTRY_FILE"] == str(tmp_path / "orgs.json")
    process = console_process(env)
    assert (process.module, process.base_url) == ("stayops_console", "http://127.0.0.1:9000")
    settings_module = pytest.importorskip("stayops_console.settings")
    fields = {k.removeprefix("STAYOPS_CONSOLE_").lower(): v for k, v in env.items()}
    settings = settings_module.ConsoleSettings(**fields)
    assert settings.service_urls()["task-service"] == "http://127.0.0.1:9001" and settings.dev_sign_in
