"""The whole system on one machine for end-to-end tests, the demo and benchmarks:
the four services as processes on free ports and the sync simulators (sync-airbnb
and sync-hostaway), on a broker and a PostgreSQL someone else runs; or, with
`ephemeral_system`, on an embedded stack of its own in a temporary directory."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from stayops_infra.config import StackConfig, default_kafka_cache
from stayops_infra.ports import free_port, free_port_pair
from stayops_infra.services import CONSOLE, SERVICES, ServiceProcess, console_env, console_process, service_env
from stayops_infra.stack import EmbeddedStack
from stayops_infra.syncsim import platform_simulators, run_all
from stayops_kit.settings import FETCH_MAX_WAIT_MS, BrokerKind


@dataclass
class LocalSystem:
    """`database_url(name)` returns (creating it if needed) the URL of a service's
    database. Listing ids written to `fail_listings_file` get their price updates
    refused by the simulators (a line `<id> <n>`: their next n updates);
    `listing_profiles_file` gives listings their segment and tags
    (`stayops_infra.syncsim.write_listing_profiles`); `faults_file` plans failures
    inside the services."""

    bootstrap: str
    database_url: Callable[[str], Awaitable[str]]
    public_key_file: Path
    work_dir: Path
    broker_kind: BrokerKind = "kafka"
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _simulator: asyncio.Task[None] | None = None

    @property
    def fail_listings_file(self) -> Path:
        return self.work_dir / "syncsim" / "fail-listings"

    @property
    def faults_file(self) -> Path:
        """Planned failures the services take (`stayops_kit.failpoints.planned_failure`):
        `analysis <listing id> <n>` fails the next n pricing analyses naming the listing."""
        return self.work_dir / "faults"

    @property
    def listing_profiles_file(self) -> Path:
        return self.work_dir / "syncsim" / "listings.json"

    def url(self, service: str) -> str:
        return self.processes[service].base_url

    async def start(self) -> None:
        ports = {spec.name: free_port() for spec in SERVICES}
        for spec in SERVICES:
            env = service_env(
                spec.name,
                database_url=await self.database_url(spec.database),
                http_port=ports[spec.name],
                kafka_bootstrap=self.bootstrap,
                jwt_public_key_file=self.public_key_file,
                kafka_broker=self.broker_kind,
                agent_service_url=f"http://127.0.0.1:{ports['agent-service']}",
            )
            env["STAYOPS_FAULTS_FILE"] = str(self.faults_file)
            env.update(self.extra_env)
            self.processes[spec.name] = ServiceProcess(
                spec.name, env, log_file=self.work_dir / "logs" / f"{spec.module}.log"
            )
        for process in self.processes.values():
            process.start()
        await asyncio.gather(*(asyncio.to_thread(p.wait_healthy, 120) for p in self.processes.values()))
        self.fail_listings_file.parent.mkdir(parents=True, exist_ok=True)
        started = asyncio.Event()
        simulators = platform_simulators(self.fail_listings_file.parent)
        self._simulator = asyncio.create_task(run_all(
            self.bootstrap, simulators, self._stop, started, fetch_max_wait_ms=FETCH_MAX_WAIT_MS[self.broker_kind]))
        await asyncio.wait_for(started.wait(), 60)

    async def start_console(self, registry_file: Path, private_key_file: Path) -> str:
        """The ops console on a free port, beside the running services, signing
        members of `registry_file` in with `private_key_file`; returns its URL."""
        env = console_env(service_urls={spec.name: self.url(spec.name) for spec in SERVICES},
                          http_port=free_port(), kafka_bootstrap=self.bootstrap, registry_file=registry_file,
                          private_key_file=private_key_file)
        previous = self.processes.get(CONSOLE)
        if previous is not None:
            previous.terminate()
        process = console_process(env, log_file=self.work_dir / "logs" / "console.log")
        self.processes[CONSOLE] = process
        process.start()
        await asyncio.to_thread(process.wait_healthy, 60)
        return process.base_url

    def kill(self, service: str) -> None:
        """SIGKILL one service: a crash."""
        self.processes[service].kill()

    async def restart(self, service: str) -> None:
        process = self.processes[service]
        if process.is_alive():
            process.terminate()
        process.start()
        await asyncio.to_thread(process.wait_healthy, 120)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*(asyncio.to_thread(p.terminate) for p in self.processes.values()))
        if self._simulator is not None:
            # Its consumer may end with a cancelled fetch; stopping is all that matters.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._simulator


def _quiet(message: str) -> None:
    """Says nothing."""


@contextlib.asynccontextmanager
async def ephemeral_system(
    say: Callable[[str], None], *, prefix: str = "stayops-", allow_tansu: bool = True,
    notify: Callable[[str], None] = _quiet,
) -> AsyncIterator[tuple[EmbeddedStack, LocalSystem]]:
    """An embedded PostgreSQL and Apache Kafka on free ports in a temporary directory
    (named from `prefix`), and the whole system on them, for the demo and the
    benchmarks; yields both (the system's `work_dir` is the directory). On the way out
    the system and the stack stop and the directory goes. `say` is told what starts;
    `notify` hears the stack's own news (the Tansu fallback, which `allow_tansu=False`
    refuses)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        work = Path(scratch)
        config = StackConfig(data_dir=work / "data", pg_port=free_port(), kafka_port=free_port_pair(),
                             kafka_cache=default_kafka_cache())
        stack = EmbeddedStack(config, allow_tansu=allow_tansu, notify=notify)
        system: LocalSystem | None = None
        try:
            say("Starting an ephemeral PostgreSQL and Kafka")
            await stack.start()

            async def database_url(name: str) -> str:
                return stack.postgres.url(name)

            system = LocalSystem(bootstrap=stack.broker.bootstrap, database_url=database_url,
                                 public_key_file=stack.keys.public_key, work_dir=work,
                                 broker_kind=stack.broker.kind)
            say("Starting the four services and the sync simulators")
            await system.start()
            yield stack, system
        finally:
            if system is not None:
                await system.stop()
            stack.stop()
