"""`stayops up`: the stack, the four supervised services and the demo org, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stayops_infra import runlock
from stayops_infra.automations import create_seed_automations
from stayops_infra.config import StackConfig
from stayops_infra.errors import StackError
from stayops_infra.kafka.process import Broker
from stayops_infra.kafka.tansu import TansuBroker
from stayops_infra.orgsim import OrgRegistry, seed_solo
from stayops_infra.ports import port_is_free
from stayops_infra.services import (
    CONSOLE,
    CONSOLE_MODULE,
    CONSOLE_PORT,
    SERVICES,
    ServiceProcess,
    ServiceSpec,
    console_env,
    console_process,
    service_env,
)
from stayops_infra.stack import EmbeddedStack
from stayops_infra.supervisor import Supervisor
from stayops_infra.syncsim import platform_simulators, run_all
from stayops_kit.settings import FETCH_MAX_WAIT_MS

HEALTH_DEADLINE_S = 120
CONSOLE_URL = f"http://127.0.0.1:{CONSOLE_PORT}"
_COLOURS = ("cyan", "magenta", "green", "yellow", "blue")


def org_registry(config: StackConfig) -> OrgRegistry:
    return OrgRegistry(config.data_dir / "orgsim" / "orgs.json")


def _service_processes(
    stack: EmbeddedStack, console: Console, services: tuple[ServiceSpec, ...]
) -> list[ServiceProcess]:
    names = [spec.name for spec in services] + [CONSOLE]
    colours = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(names)}
    width = max(len(name) for name in names)

    def echo(name: str, line: str) -> None:
        console.print(f"[{colours[name]}]{name:>{width}} |[/] {escape(line)}", highlight=False)

    processes = [
        ServiceProcess(
            spec.name,
            service_env(
                spec.name,
                database_url=stack.postgres.url(spec.database),
                http_port=spec.port,
                kafka_bootstrap=stack.broker.bootstrap,
                jwt_public_key_file=stack.keys.public_key,
                kafka_broker=stack.broker.kind,
                agent_service_url=f"http://127.0.0.1:{_port_of('agent-service', services)}",
            ),
            log_file=stack.config.logs_dir / f"{spec.module}.log",
            echo=echo,
        )
        for spec in services
    ]
    if _console_wanted(services, console):
        # The ops console: a client of the four services' REST APIs, signing in the
        # simulator's seeded members in dev.
        env = console_env(
            service_urls={p.name: p.base_url for p in processes},
            http_port=CONSOLE_PORT,
            kafka_bootstrap=stack.broker.bootstrap,
            registry_file=org_registry(stack.config).path,
            private_key_file=stack.keys.private_key,
        )
        processes.append(console_process(env, log_file=stack.config.logs_dir / "console.log", echo=echo))
    return processes


def _console_wanted(services: tuple[ServiceSpec, ...], console: Console) -> bool:
    """The console, when it is installed and the four services it is a client of run."""
    if importlib.util.find_spec(CONSOLE_MODULE) is None or {s.name for s in SERVICES} - {s.name for s in services}:
        return False
    if not port_is_free(CONSOLE_PORT):
        console.print(f"[yellow]port {CONSOLE_PORT} is taken: the ops console is not started[/]")
        return False
    return True


def _port_of(name: str, services: tuple[ServiceSpec, ...]) -> int:
    return next((spec.port for spec in (*services, *SERVICES) if spec.name == name), 8004)


def _missing_services(services: tuple[ServiceSpec, ...]) -> list[ServiceSpec]:
    return [spec for spec in services if importlib.util.find_spec(spec.module) is None]


def ready_table(processes: list[ServiceProcess]) -> Table:
    table = Table(title="StayOps services")
    table.add_column("service")
    table.add_column("URL")
    table.add_column("API docs")
    for process in processes:
        docs = "the ops console (sign in there)" if process.name == CONSOLE else f"{process.base_url}/docs"
        table.add_row(process.name, process.base_url, docs)
    return table


async def wait_all_healthy(processes: list[ServiceProcess], deadline_s: float) -> None:
    """Poll every `/healthz` until it answers 200; a process that exits fails at once."""
    deadline = time.monotonic() + deadline_s
    pending = list(processes)
    async with httpx.AsyncClient(timeout=2) as client:
        while pending:
            for process in list(pending):
                if not process.is_alive():
                    raise StackError(
                        f"{process.name} exited with code {process.returncode} before it was "
                        f"healthy; see {process.log_file}"
                    )
                try:
                    response = await client.get(f"{process.base_url}/healthz")
                except httpx.TransportError:
                    continue
                if response.status_code == 200:
                    pending.remove(process)
            if pending and time.monotonic() > deadline:
                names = ", ".join(p.name for p in pending)
                raise StackError(f"not healthy within {deadline_s:.0f}s: {names}")
            if pending:
                await asyncio.sleep(0.3)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM set `stop`; the default handlers come back afterwards."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def run_system(
    config: StackConfig,
    demo: bool,
    console: Console,
    services: tuple[ServiceSpec, ...] = SERVICES,
    stop: asyncio.Event | None = None,
) -> int:
    """Start everything, report readiness, wait for Ctrl-C or SIGTERM (or `stop`), then
    stop in reverse order: services, broker, PostgreSQL. Returns the exit code."""
    runlock.acquire(config.data_dir)
    try:
        missing = _missing_services(services)
        if missing:
            names = ", ".join(spec.module for spec in missing)
            console.print(f"[red]Cannot start: {names} not installed (run `uv sync`).[/]")
            return 1
        if stop is not None:
            return await _run_until_stopped(config, demo, console, services, stop)
        stop = asyncio.Event()
        with stop_on_signals(stop):
            return await _run_until_stopped(config, demo, console, services, stop)
    finally:
        runlock.release(config.data_dir)


async def _run_until_stopped(
    config: StackConfig,
    demo: bool,
    console: Console,
    services: tuple[ServiceSpec, ...],
    stop: asyncio.Event,
) -> int:
    stack = EmbeddedStack(config, notify=lambda message: console.print(f"[bold]stack[/] {message}"))
    supervisor: Supervisor | None = None
    watching: asyncio.Task[None] | None = None
    simulating: asyncio.Task[None] | None = None

    async def start_everything() -> None:
        nonlocal supervisor, watching, simulating
        await stack.start()
        simulating = asyncio.create_task(run_sync_simulator(config, stack.broker, stop, console))
        processes = _service_processes(stack, console, services)
        supervisor = Supervisor(processes, report=lambda m: console.print(f"[red]{m}[/]"))
        supervisor.start_all()
        watching = asyncio.create_task(supervisor.run(stop))
        await wait_all_healthy(processes, HEALTH_DEADLINE_S)
        console.print(ready_table(processes))
        if demo:
            seeded = await seed_solo(
                stack.broker.bootstrap,
                stack.keys,
                org_registry(config),
                idempotent=not isinstance(stack.broker, TansuBroker),
            )
            result = seeded.as_json()
            automation_service = next((p for p in processes if p.name == "automation-service"), None)
            if automation_service is not None:
                automations = await create_seed_automations(result, automation_url=automation_service.base_url)
                result["automations"] = [{"id": a["id"], "name": a["name"]} for a in automations]
            print_seed(console, result)
        console.print(
            f"StayOps is ready: {len(services)} services, Kafka at {stack.broker.bootstrap}, "
            f"PostgreSQL at 127.0.0.1:{config.pg_port}"
            + (f", the console at {CONSOLE_URL}" if any(p.name == CONSOLE for p in processes) else "")
            + ". Ctrl-C stops it."
        )

    starting = asyncio.create_task(start_everything())
    stopping = asyncio.create_task(stop.wait())
    try:
        # A Ctrl-C during start-up must not wait for the start-up to finish.
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            await stopping
        return 0
    except StackError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        return 1
    finally:
        console.print("Stopping StayOps...")
        stop.set()
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, StackError):
            await starting
        await stopping
        if watching is not None:
            await watching
        elif supervisor is not None:
            await supervisor.stop_all()
        if simulating is not None:
            await simulating
        await asyncio.to_thread(stack.stop)


async def run_sync_simulator(config: StackConfig, broker: Broker, stop: asyncio.Event, console: Console) -> None:
    """The sync-airbnb and sync-hostaway simulators, restarted after a pause if one
    crashes, until `stop`. Listing ids written one a line to
    `<data dir>/syncsim/fail-listings` get their price updates refused (to see a
    pricing run compensate); `<data dir>/syncsim/listings.json` (written by `stayops
    seed propco`) gives listings their segment and tags."""
    simulators = platform_simulators(config.data_dir / "syncsim")
    while not stop.is_set():
        try:
            await run_all(broker.bootstrap, simulators, stop, fetch_max_wait_ms=FETCH_MAX_WAIT_MS[broker.kind])
        except Exception as exc:
            console.print(f"[red]sync simulator crashed ({escape(str(exc))}); restarting in 2s[/]")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2)


def print_seed(console: Console, seeded: dict[str, Any], as_json: bool = False) -> None:
    if as_json:
        # Plain print: rich would wrap long tokens and break the JSON.
        print(json.dumps(seeded, indent=2))
        return
    console.print(f"[bold]Org[/] {seeded['name']}  org_id={seeded['org_id']}")
    console.print(f"  listings: {', '.join(seeded['listing_ids'])}")
    for segment, listing_ids in seeded.get("segments", {}).items():
        console.print(f"  segment {segment}: {len(listing_ids)} listings, {', '.join(listing_ids)}")
    for department, members in seeded.get("departments", {}).items():
        console.print(f"  department {department}: {', '.join(members)}")
    for key, user in seeded["users"].items():
        console.print(
            f"  {key}: {user['display_name']} ({user['user_type']}, role {user['role_id']}) user_id={user['user_id']}"
        )
    for automation in seeded.get("automations", []):
        console.print(f"  automation: {automation['name']} id={automation['id']}")
    for key, token in seeded["tokens"].items():
        console.print(f"  token {key}:", highlight=False)
        print(token)
