"""`stayops up`: the stack, the four supervised services and the demo org, until a signal."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stayops_infra import runlock
from stayops_infra.config import StackConfig
from stayops_infra.errors import StackError
from stayops_infra.orgsim import OrgRegistry, seed_solo
from stayops_infra.services import SERVICES, ServiceProcess, ServiceSpec, service_env
from stayops_infra.stack import EmbeddedStack
from stayops_infra.supervisor import Supervisor

HEALTH_DEADLINE_S = 120
_COLOURS = ("cyan", "magenta", "green", "yellow")


def org_registry(config: StackConfig) -> OrgRegistry:
    return OrgRegistry(config.data_dir / "orgsim" / "orgs.json")


def _service_processes(
    stack: EmbeddedStack, console: Console
) -> list[ServiceProcess]:
    colours = {spec.name: _COLOURS[i % len(_COLOURS)] for i, spec in enumerate(SERVICES)}
    width = max(len(spec.name) for spec in SERVICES)

    def echo(name: str, line: str) -> None:
        console.print(f"[{colours[name]}]{name:>{width}} |[/] {escape(line)}", highlight=False)

    return [
        ServiceProcess(
            spec.name,
            service_env(
                spec.name,
                database_url=stack.postgres.url(spec.database),
                http_port=spec.port,
                kafka_bootstrap=stack.broker.bootstrap,
                jwt_public_key_file=stack.keys.public_key,
            ),
            log_file=stack.config.logs_dir / f"{spec.module}.log",
            echo=echo,
        )
        for spec in SERVICES
    ]


def _missing_services() -> list[ServiceSpec]:
    return [spec for spec in SERVICES if importlib.util.find_spec(spec.module) is None]


def ready_table(processes: list[ServiceProcess]) -> Table:
    table = Table(title="StayOps services")
    table.add_column("service")
    table.add_column("URL")
    table.add_column("API docs")
    for process in processes:
        table.add_row(process.name, process.base_url, f"{process.base_url}/docs")
    return table


def _install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


async def run_system(config: StackConfig, demo: bool, console: Console) -> int:
    """Start everything, report readiness, wait for Ctrl-C or SIGTERM, then stop in
    reverse order: services, broker, PostgreSQL."""
    runlock.acquire(config.data_dir)
    missing = _missing_services()
    if missing:
        runlock.release(config.data_dir)
        names = ", ".join(spec.module for spec in missing)
        console.print(f"[red]Cannot start: {names} not installed (run `uv sync`).[/]")
        return 1
    stop = asyncio.Event()
    _install_stop_signals(stop)
    stack = EmbeddedStack(config, notify=lambda message: console.print(f"[bold]stack[/] {message}"))
    supervisor: Supervisor | None = None
    watching: asyncio.Task[None] | None = None
    try:
        await stack.start()
        processes = _service_processes(stack, console)
        supervisor = Supervisor(processes, report=lambda m: console.print(f"[red]{m}[/]"))
        supervisor.start_all()
        watching = asyncio.create_task(supervisor.run(stop))
        await asyncio.gather(
            *(asyncio.to_thread(p.wait_healthy, HEALTH_DEADLINE_S) for p in processes)
        )
        console.print(ready_table(processes))
        if demo:
            seeded = await seed_solo(stack.broker.bootstrap, stack.keys, org_registry(config))
            print_seed(console, seeded.as_json())
        console.print(
            f"StayOps is ready: {len(processes)} services, Kafka at {stack.broker.bootstrap}, "
            f"PostgreSQL at 127.0.0.1:{config.pg_port}. Ctrl-C stops it."
        )
        await stop.wait()
        return 0
    except StackError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        return 1
    finally:
        console.print("Stopping StayOps...")
        stop.set()
        if watching is not None:
            await watching
        elif supervisor is not None:
            await supervisor.stop_all()
        await asyncio.to_thread(stack.stop)
        runlock.release(config.data_dir)


def print_seed(console: Console, seeded: dict[str, Any], as_json: bool = False) -> None:
    if as_json:
        # Plain print: rich would wrap long tokens and break the JSON.
        print(json.dumps(seeded, indent=2))
        return
    console.print(f"[bold]Org[/] {seeded['name']}  org_id={seeded['org_id']}")
    console.print(f"  listings: {', '.join(seeded['listing_ids'])}")
    for key, user in seeded["users"].items():
        console.print(
            f"  {key}: {user['display_name']} ({user['user_type']}, role {user['role_id']}) "
            f"user_id={user['user_id']}"
        )
    for key, token in seeded["tokens"].items():
        console.print(f"  token {key}:", highlight=False)
        print(token)
