"""`stayops up`: start-up, the ready line, the demo org and an orderly shutdown."""

from __future__ import annotations

import asyncio
import io
import os
import time
from pathlib import Path

import pytest
from rich.console import Console

from stayops_infra import runlock
from stayops_infra.config import StackConfig, default_kafka_cache
from stayops_infra.kafka.broker import ApacheKafka
from stayops_infra.launcher import run_system
from stayops_infra.postgres import EmbeddedPostgres
from stayops_infra.services import ServiceSpec
from stayops_infra.testing import free_port, free_port_pair


async def test_up_reports_ready_then_stops_services_broker_and_database(
    tmp_path: Path, fake_service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child finds the module through PYTHONPATH, `up`'s installed-check through sys.path.
    monkeypatch.setenv("PYTHONPATH", fake_service_env["PYTHONPATH"])
    monkeypatch.syspath_prepend(fake_service_env["PYTHONPATH"])
    config = StackConfig(
        data_dir=tmp_path / "data",
        pg_port=free_port(),
        kafka_port=free_port_pair(),
        kafka_cache=default_kafka_cache(),
    )
    service = ServiceSpec("fake-service", int(fake_service_env["STAYOPS_HTTP_PORT"]))
    output = io.StringIO()
    stop = asyncio.Event()
    running = asyncio.create_task(run_system(config, True, Console(file=output, width=200), (service,), stop))

    deadline = time.monotonic() + 120
    while "StayOps is ready" not in output.getvalue():
        assert not running.done(), output.getvalue()
        assert time.monotonic() < deadline, output.getvalue()
        await asyncio.sleep(0.2)
    assert runlock.running_pid(config.data_dir) == os.getpid()
    assert f"http://127.0.0.1:{service.port}/docs" in output.getvalue()
    assert "token revenue_manager_agent" in output.getvalue()
    assert "fake service starting" in (config.logs_dir / "fake_service.log").read_text()

    stop.set()

    assert await running == 0
    assert not EmbeddedPostgres(config.data_dir, config.pg_port).is_running()
    assert not ApacheKafka(config).is_running()
    assert runlock.running_pid(config.data_dir) is None
