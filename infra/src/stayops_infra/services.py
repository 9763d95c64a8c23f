"""The four services: how to configure one and how to run it as a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from stayops_infra.errors import StackError
from stayops_kit.settings import BrokerKind

DEFAULT_API_KEY = "dev-internal-key"
# The ops console (`stayops_console`), served beside the services by `stayops up`.
CONSOLE = "console"
CONSOLE_MODULE = "stayops_console"
CONSOLE_PORT = 8000


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int

    @property
    def module(self) -> str:
        return self.name.replace("-", "_")

    @property
    def database(self) -> str:
        return self.module


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("task-service", 8001),
    ServiceSpec("workflow-service", 8002),
    ServiceSpec("automation-service", 8003),
    ServiceSpec("agent-service", 8004),
)


def service_env(
    service_name: str,
    *,
    database_url: str,
    http_port: int,
    kafka_bootstrap: str,
    jwt_public_key_file: Path,
    kafka_broker: BrokerKind = "kafka",
    http_host: str = "127.0.0.1",
    service_api_key: str = DEFAULT_API_KEY,
    agent_service_url: str | None = None,
) -> dict[str, str]:
    """The `STAYOPS_*` variables `stayops_kit.settings.ServiceSettings` reads;
    `agent_service_url` is where stored results (claim check) are fetched, and
    `kafka_broker` which broker runs (the consumers' fetch wait depends on it)."""
    return {
        **({"STAYOPS_AGENT_SERVICE_URL": agent_service_url} if agent_service_url else {}),
        "STAYOPS_SERVICE_NAME": service_name,
        "STAYOPS_DATABASE_URL": database_url,
        "STAYOPS_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STAYOPS_KAFKA_BROKER": kafka_broker,
        "STAYOPS_HTTP_HOST": http_host,
        "STAYOPS_HTTP_PORT": str(http_port),
        "STAYOPS_JWT_PUBLIC_KEY_FILE": str(jwt_public_key_file),
        "STAYOPS_SERVICE_API_KEY": service_api_key,
    }


def console_env(
    *,
    service_urls: dict[str, str],
    http_port: int,
    kafka_bootstrap: str,
    registry_file: Path | None = None,
    private_key_file: Path | None = None,
    http_host: str = "127.0.0.1",
) -> dict[str, str]:
    """The `STAYOPS_CONSOLE_*` variables `stayops_console.settings.ConsoleSettings`
    reads; with the org-service simulator's registry and key, its dev sign-in."""
    env = {
        "STAYOPS_CONSOLE_HTTP_HOST": http_host,
        "STAYOPS_CONSOLE_HTTP_PORT": str(http_port),
        "STAYOPS_CONSOLE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        **{f"STAYOPS_CONSOLE_{name.replace('-', '_').upper()}_URL": url for name, url in service_urls.items()},
    }
    if registry_file is not None and private_key_file is not None:
        env["STAYOPS_CONSOLE_REGISTRY_FILE"] = str(registry_file)
        env["STAYOPS_CONSOLE_DEV_PRIVATE_KEY_FILE"] = str(private_key_file)
        env["STAYOPS_CONSOLE_OPERATOR_REDRIVE"] = "true"  # the local system's operator is its user
    return env


def console_process(env: dict[str, str], *, log_file: Path | None = None,
                    echo: Callable[[str, str], None] | None = None) -> ServiceProcess:
    url = f"http://{env['STAYOPS_CONSOLE_HTTP_HOST']}:{env['STAYOPS_CONSOLE_HTTP_PORT']}"
    return ServiceProcess(CONSOLE, env, log_file=log_file, echo=echo, module=CONSOLE_MODULE, base_url=url)


class ServiceProcess:
    """One service run as `python -m <module>`; output goes to a log file and, when
    `echo` is given, to the console line by line."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        *,
        log_file: Path | None = None,
        echo: Callable[[str, str], None] | None = None,
        module: str | None = None,
        base_url: str | None = None,
    ) -> None:
        self.name = name
        self.module = module or name.replace("-", "_")
        self._base_url = base_url
        self.env = env
        self.log_file = log_file
        self.echo = echo
        self._popen: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        # The last lines, for the error message when it dies without a log file.
        self._tail: deque[str] = deque(maxlen=40)

    @property
    def base_url(self) -> str:
        if self._base_url is not None:
            return self._base_url
        host = self.env.get("STAYOPS_HTTP_HOST", "127.0.0.1")
        return f"http://{host}:{self.env['STAYOPS_HTTP_PORT']}"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        if self.is_alive():
            raise StackError(f"{self.name} is already running (pid {self.pid})")
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._popen = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own session: Ctrl-C in the terminal reaches only `stayops up`, which then
            # stops services before the broker and the database, in that order.
            start_new_session=True,
        )
        assert self._popen.stdout is not None
        self._pump = threading.Thread(
            target=self._copy_output,
            args=(self._popen.stdout,),
            daemon=True,
            name=f"{self.name}-output",
        )
        self._pump.start()

    def is_alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def kill(self) -> None:
        """SIGKILL: a crash, for tests that prove nothing is lost."""
        if self.is_alive():
            assert self._popen is not None
            self._popen.send_signal(signal.SIGKILL)
            self._popen.wait(timeout=10)
        self._join_pump()

    def terminate(self, timeout_s: float = 15) -> None:
        """SIGTERM for a graceful stop; SIGKILL if it is still running after `timeout_s`."""
        if self.is_alive():
            assert self._popen is not None
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait(timeout=10)
        self._join_pump()

    def wait_healthy(self, deadline_s: float = 60) -> None:
        """Poll `/healthz` until it answers 200; fail early if the process exits."""
        deadline = time.monotonic() + deadline_s
        last = "no answer yet"
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if not self.is_alive():
                    raise StackError(
                        f"{self.name} exited with code {self.returncode} before it was healthy{self._log_hint()}"
                    )
                try:
                    response = client.get(f"{self.base_url}/healthz")
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                time.sleep(0.2)
        raise StackError(
            f"{self.name} was not healthy at {self.base_url}/healthz within {deadline_s:.0f}s "
            f"({last}){self._log_hint()}"
        )

    def _copy_output(self, stream: IO[bytes]) -> None:
        log = self.log_file.open("ab") if self.log_file else None
        try:
            for raw in iter(stream.readline, b""):
                if log is not None:
                    log.write(raw)
                    log.flush()
                line = raw.decode(errors="replace").rstrip("\n")
                self._tail.append(line)
                if self.echo is not None:
                    self.echo(self.name, line)
        finally:
            if log is not None:
                log.close()
            stream.close()

    def _join_pump(self) -> None:
        if self._pump is not None:
            self._pump.join(timeout=5)
            self._pump = None

    def output_tail(self) -> str:
        return "\n".join(self._tail)

    def _log_hint(self) -> str:
        where = f"; see {self.log_file}" if self.log_file else ""
        return f"{where}\n--- last output ---\n{self.output_tail()}"
