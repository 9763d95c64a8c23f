"""The `stayops` command line: run the system, the stack alone, tokens, seeds, topics, events."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stayops_infra import runlock, simulate
from stayops_infra.automations import create_seed_automations
from stayops_infra.config import StackConfig, bootstrap_servers_from_env
from stayops_infra.errors import StackError
from stayops_infra.eventtail import tail_events
from stayops_infra.hostawaysim import HostawaySimulator
from stayops_infra.kafka.jars import ensure_kafka_jars, find_java, java_major_version
from stayops_infra.keys import ensure_keys
from stayops_infra.launcher import org_registry, print_seed, run_system
from stayops_infra.orgsim import seed_solo
from stayops_infra.stack import SERVICE_DATABASES, EmbeddedStack, tansu_is_running
from stayops_infra.tokens import mint_token
from stayops_infra.topics import topic_partitions
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.sync import Platform

app = typer.Typer(help="Run and poke at StayOps on one machine.", no_args_is_help=True)
stack_app = typer.Typer(help="PostgreSQL + Kafka + topics only (tests, benchmarks).")
seed_app = typer.Typer(help="Create demo organisations through the org-service simulator.")
events_app = typer.Typer(help="Look at the events on the broker.")
schemas_app = typer.Typer(help="The event payload JSON Schemas.")
simulate_app = typer.Typer(help="Make the sync simulators report a reservation or a review.")
app.add_typer(stack_app, name="stack")
app.add_typer(seed_app, name="seed")
app.add_typer(events_app, name="events")
app.add_typer(schemas_app, name="schemas")
app.add_typer(simulate_app, name="simulate")

console = Console(soft_wrap=True)
errors = Console(stderr=True)


class UserTypeChoice(StrEnum):
    human = "human"
    ai_agent = "ai_agent"


def _fail(exc: Exception) -> typer.Exit:
    errors.print(f"[red]{escape(str(exc))}[/]")
    return typer.Exit(1)


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Seed a solo-host org and print its tokens.")] = False,
) -> None:
    """Start PostgreSQL, Kafka, the topics and the four services; Ctrl-C stops everything."""
    try:
        code = asyncio.run(run_system(StackConfig.from_env(), demo, console))
    except StackError as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code)


@stack_app.command("up")
def stack_up() -> None:
    """Start PostgreSQL + Kafka in the background and provision the topics."""
    config = StackConfig.from_env()
    stack = EmbeddedStack(config, notify=lambda m: console.print(f"[bold]stack[/] {m}"))
    try:
        asyncio.run(stack.start())
    except StackError as exc:
        raise _fail(exc) from exc
    keys = stack.keys
    console.print(f"STAYOPS_KAFKA_BOOTSTRAP_SERVERS={stack.broker.bootstrap}")
    for database in SERVICE_DATABASES:
        console.print(f"{database}: {stack.postgres.url(database)}", highlight=False)
    console.print(f"STAYOPS_JWT_PUBLIC_KEY_FILE={keys.public_key}", highlight=False)
    console.print(f"data dir: {config.data_dir} (logs in {config.logs_dir})", highlight=False)


@stack_app.command("down")
def stack_down() -> None:
    """Stop the background Kafka and PostgreSQL of this data dir (data is kept)."""
    config = StackConfig.from_env()
    pid = runlock.running_pid(config.data_dir)
    if pid is not None:
        raise _fail(StackError(f"`stayops up` (pid {pid}) owns this stack; stop it instead"))
    EmbeddedStack(config).stop()
    console.print("stack stopped")


@stack_app.command("install")
def stack_install() -> None:
    """Check for Java 17+ and resolve the Apache Kafka jars into the cache (once)."""
    config = StackConfig.from_env()
    try:
        java = find_java()
        console.print(f"Java {java_major_version(java)} at {java}", highlight=False)
        libs = ensure_kafka_jars(config.kafka_cache)
    except StackError as exc:
        raise _fail(exc) from exc
    console.print(f"Kafka jars in {libs}", highlight=False)


dlq_app = typer.Typer(help="Dead-letter topics: what a consumer group parked, and redrive.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(group: str, limit: int = typer.Option(100, "--max", help="At most this many records.")) -> None:
    """Show what GROUP parked: type, id, org, reason, original topic/partition/offset, attempts."""
    from stayops_infra.dlq import list_dead_letters

    rows = asyncio.run(list_dead_letters(bootstrap_servers_from_env(), group, limit))
    if not rows:
        console.print(f"Nothing parked for {group}.")
    for row in rows:
        console.print(json.dumps(row), highlight=False, markup=False)


@dlq_app.command("redrive")
def dlq_redrive(group: str, limit: int = typer.Option(1000, "--max", help="At most this many records.")) -> None:
    """Send GROUP's parked records back to their original topics (through the inbox: once)."""
    from stayops_infra.dlq import MAX_REDRIVES, redrive

    sent, parked = asyncio.run(redrive(bootstrap_servers_from_env(), group, limit))
    console.print(f"Redrove {sent} record(s); {parked} left parked (no original topic, or redriven "
                  f"{MAX_REDRIVES} times already).")


@app.command()
def demo() -> None:
    """Run the weekly dynamic-pricing scenario twice on an ephemeral stack and print both timelines."""
    from stayops_infra.demo import run_demo

    raise typer.Exit(asyncio.run(run_demo(console)))


@app.command()
def token(
    org: Annotated[str, typer.Option(help="org_id claim")],
    user: Annotated[str, typer.Option(help="sub claim: the user id")],
    role: Annotated[str, typer.Option(help="role_id claim")],
    department: Annotated[str | None, typer.Option(help="department_id claim")] = None,
    type_: Annotated[UserTypeChoice, typer.Option("--type", help="who the user is")] = UserTypeChoice.human,
    ttl: Annotated[int, typer.Option(help="lifetime in seconds")] = 3600,
    permission: Annotated[
        list[str] | None,
        typer.Option(help="a permission to grant (repeatable); default: what the role's template grants"),
    ] = None,
    ai_may_decide: Annotated[
        bool, typer.Option(help="the org's policy lets AI agents answer decisions")
    ] = False,
) -> None:
    """Print a JWT signed with the org-service simulator's key."""
    keys = ensure_keys(StackConfig.from_env().keys_dir)
    print(
        mint_token(
            keys.private_pem(),
            org_id=org,
            user_id=user,
            role_id=role,
            department_id=department,
            user_type="ai_agent" if type_ is UserTypeChoice.ai_agent else "human",
            permissions=permission or None,
            ai_may_decide=ai_may_decide,
            ttl_s=ttl,
        )
    )


@seed_app.command("solo")
def seed_solo_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a solo-host org (owner + AI Revenue Manager, two listings) and announce it."""
    config = StackConfig.from_env()
    try:
        seeded = asyncio.run(
            seed_solo(
                bootstrap_servers_from_env(config),
                ensure_keys(config.keys_dir),
                org_registry(config),
                idempotent=not tansu_is_running(config),
            )
        )
    except Exception as exc:
        raise _fail(StackError(f"seeding failed (is the stack up?): {exc!r}")) from exc
    result = seeded.as_json()
    try:
        automations = asyncio.run(create_seed_automations(result))
        result["automations"] = [{"id": a["id"], "name": a["name"]} for a in automations]
    except httpx.HTTPError as exc:
        console.print(f"[yellow]The seed automations were not created (is automation-service up?): "
                      f"{exc!r}[/]", highlight=False)
    print_seed(console, result, as_json=as_json)


@app.command()
def topics() -> None:
    """List the topics on the broker with their partition counts."""
    try:
        counts = asyncio.run(topic_partitions(bootstrap_servers_from_env()))
    except Exception as exc:
        raise _fail(StackError(f"cannot list topics (is the stack up?): {exc!r}")) from exc
    table = Table("topic", "partitions")
    for name in sorted(counts):
        table.add_row(name, str(counts[name]))
    console.print(table)


@events_app.command("tail")
def events_tail(
    topic: str,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest event.")] = False,
    max_events: Annotated[int | None, typer.Option("--max", help="Stop after this many events.")] = None,
) -> None:
    """Print the decoded CloudEvents of a topic as they arrive."""

    def show(record: dict[str, object]) -> None:
        print(json.dumps(record, default=str), flush=True)

    try:
        asyncio.run(tail_events(bootstrap_servers_from_env(), topic, from_beginning, max_events, show))
    except KeyboardInterrupt:
        return


@schemas_app.command("export")
def schemas_export(directory: Path) -> None:
    """Write every event type's JSON Schema into DIRECTORY."""
    from stayops_schemas.export import export_schemas

    written = export_schemas(directory)
    console.print(f"{len(written)} files written to {directory}", highlight=False)


def _publish_simulated(config: StackConfig, envelopes: list[Envelope]) -> None:
    try:
        asyncio.run(simulate.publish(bootstrap_servers_from_env(config), envelopes,
                                     idempotent=not tansu_is_running(config)))
    except Exception as exc:
        raise _fail(StackError(f"publishing failed (is the stack up?): {exc!r}")) from exc
    if not envelopes:
        console.print("Nothing to announce: the platform's state did not change (a duplicate, or a "
                      "cancellation of a reservation never announced).")
    for envelope in envelopes:
        console.print(f"{envelope.type} {json.dumps(envelope.data, default=str)}", highlight=False)


@simulate_app.command("reservation")
def simulate_reservation(
    org: Annotated[str, typer.Option("--org", help="The org id (from `stayops seed solo`).")],
    listing: Annotated[str, typer.Option("--listing", help="One of the org's listing ids.")],
    platform: Annotated[Platform, typer.Option("--platform")] = Platform.AIRBNB,
    reservation: Annotated[str | None, typer.Option("--reservation", help="Its id; new if not given.")] = None,
    check_in: Annotated[str | None, typer.Option("--check-in", help="YYYY-MM-DD; default in 7 days.")] = None,
    nights: Annotated[int, typer.Option("--nights", min=1)] = 3,
    change: Annotated[bool, typer.Option("--change", help="A change of an existing reservation.")] = False,
    cancel: Annotated[bool, typer.Option("--cancel", help="Cancel it (on Hostaway: an update).")] = False,
) -> None:
    """Report a reservation made (or --change'd, or --cancel'led) on a platform."""
    config = StackConfig.from_env()
    now = datetime.now(UTC)
    stay = simulate.SimulatedStay(
        org_id=org, listing_id=listing, reservation_id=reservation or f"res-{uuid.uuid4().hex[:10]}",
        check_in=date.fromisoformat(check_in) if check_in else now.date() + timedelta(days=7), nights=nights)
    if platform is Platform.HOSTAWAY:
        hostaway = HostawaySimulator(state_file=simulate.hostaway_state(config.data_dir))
        envelopes = simulate.hostaway_reservation(hostaway, stay, change=change, cancel=cancel, now=now)
    else:
        envelopes = simulate.airbnb_reservation(stay, change=change, cancel=cancel, now=now)
    _publish_simulated(config, envelopes)


@simulate_app.command("review")
def simulate_review(
    org: Annotated[str, typer.Option("--org")],
    listing: Annotated[str, typer.Option("--listing")],
    rating: Annotated[int, typer.Option("--rating", min=1, max=5)],
    text: Annotated[str, typer.Option("--text")] = "Simulated review",
    reservation: Annotated[str | None, typer.Option("--reservation")] = None,
    review_id: Annotated[str | None, typer.Option("--review", help="Its id; the same id again is a duplicate.")]
    = None,
    platform: Annotated[Platform, typer.Option("--platform")] = Platform.AIRBNB,
) -> None:
    """Report a guest's review (rating 1..5) on a platform."""
    config = StackConfig.from_env()
    _publish_simulated(config, simulate.review(org, listing, rating, text=text, reservation_id=reservation,
                                               review_id=review_id, platform=platform, now=datetime.now(UTC)))


def main() -> None:
    app()
