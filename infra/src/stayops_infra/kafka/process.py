"""A broker process that outlives the command that started it, tracked by a pid file."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import psutil
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from stayops_infra.errors import StackError
from stayops_kit.settings import BrokerKind


class Broker(Protocol):
    """What the stack needs from a broker, Apache Kafka or the Tansu fallback."""

    description: str
    kind: BrokerKind
    log_file: Path

    @property
    def bootstrap(self) -> str: ...

    def start(self) -> None: ...

    async def wait_ready(self, timeout_s: float = 120) -> None: ...

    def stop(self, timeout_s: float = 30) -> None: ...

    def is_running(self) -> bool: ...


class DetachedProcess:
    """Starts a process in its own session (so Ctrl-C in the terminal reaches only us and
    we choose the shutdown order) and records pid and start time to survive pid reuse."""

    def __init__(self, pid_file: Path, log_file: Path) -> None:
        self.pid_file = pid_file
        self.log_file = log_file

    def running(self) -> psutil.Process | None:
        try:
            record = json.loads(self.pid_file.read_text())
            process = psutil.Process(int(record["pid"]))
            if abs(process.create_time() - float(record["started"])) > 1:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
        except (FileNotFoundError, ValueError, KeyError, psutil.Error):
            return None
        return process

    def spawn(self, argv: list[str], cwd: Path | None = None) -> psutil.Process:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = psutil.Process(popen.pid)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(json.dumps({"pid": popen.pid, "started": process.create_time(), "argv": argv}))
        return process

    def stop(self, timeout_s: float) -> None:
        """SIGTERM for a clean shutdown, SIGKILL if it has not exited by the deadline."""
        process = self.running()
        if process is not None:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=timeout_s)
            except psutil.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            except psutil.NoSuchProcess:
                pass
        self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_file.exists():
            return "(no output)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


async def wait_for_broker(
    bootstrap: str, timeout_s: float, alive: Callable[[], bool], describe_failure: Callable[[], str]
) -> None:
    """Wait until an admin client can list topics, the process dies, or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise StackError(f"the broker exited while starting:\n{describe_failure()}")
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        if not port_in_use(int(port), host):
            # aiokafka logs every refused connection as an error: wait for the port quietly.
            await asyncio.sleep(0.2)
            continue
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last_error = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise StackError(
        f"the broker at {bootstrap} did not answer within {timeout_s:.0f}s "
        f"(last error: {last_error!r}):\n{describe_failure()}"
    )


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0
