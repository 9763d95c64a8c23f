"""The `stayops` command line: run the system, the stack alone, tokens, seeds, topics, events."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

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
from stayops_infra.keys import KeyPair, ensure_keys
from stayops_infra.launcher import org_registry, print_seed, run_system
from stayops_infra.orgsim import OrgRegistry, PolicyChange, SeededOrg, seed_propco, seed_solo, set_policy
from stayops_infra.stack import SERVICE_DATABASES, EmbeddedStack, tansu_is_running
from stayops_infra.tokens import mint_token
from stayops_infra.topics import topic_partitions
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.sync import Platform

app = typer.Typer(help="Run and poke at StayOps on one machine.", no_args_is_help=True)
stack_app = typer.Typer(help="PostgreSQL + Kafka + topics only (tests, benchmarks).")
seed_app = typer.Typer(help="Create demo organisations through the org-service simulator.")
events_app = typer.Typer(help="Look at the events on the broker.")
policy_app = typer.Typer(help="An org's policy (price guardrails, AI decisions) in the org-service simulator.")
schemas_app = typer.Typer(help="The event payload JSON Schemas.")
simulate_app = typer.Typer(help="Make the sync simulators report a reservation, a review or a guest's message.")
app.add_typer(stack_app, name="stack")
app.add_typer(seed_app, name="seed")
app.add_typer(events_app, name="events")
app.add_typer(policy_app, name="policy")
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


outbox_app = typer.Typer(help="Outbox rows the relay parked after Kafka refused them.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")
_SERVICES = tuple(name.replace("_", "-") for name in SERVICE_DATABASES)


def _service_database_url(service: str, database_url: str | None) -> str:
    """--database-url, else STAYOPS_DATABASE_URL, else the service's database on the embedded stack."""
    from stayops_infra.postgres import database_url as stack_database_url

    explicit = database_url or os.environ.get("STAYOPS_DATABASE_URL")
    if explicit:
        return explicit
    if service not in _SERVICES:
        raise typer.BadParameter(f"{service!r} is not one of {', '.join(_SERVICES)}")
    return stack_database_url(StackConfig.from_env().pg_port, service.replace("-", "_"))


DatabaseUrlOption = Annotated[
    str | None, typer.Option("--database-url", help="postgresql+asyncpg://... of the service's database.")
]


@outbox_app.command("list")
def outbox_list(service: str, database_url: DatabaseUrlOption = None,
                limit: int = typer.Option(100, "--max", help="At most this many rows.")) -> None:
    """Show SERVICE's parked outbox rows: id, type, key, org, attempts, last error."""
    from stayops_kit.db import create_engine
    from stayops_kit.relay import parked_rows

    async def run() -> list[dict[str, object]]:
        engine = create_engine(_service_database_url(service, database_url))
        try:
            return [{**vars(row), "parked_at": row.parked_at.isoformat()}
                    for row in await parked_rows(engine, limit)]
        finally:
            await engine.dispose()

    rows = asyncio.run(run())
    if not rows:
        console.print(f"Nothing parked in {service}'s outbox.")
    for row in rows:
        console.print(json.dumps(row), highlight=False, markup=False)


@outbox_app.command("retry")
def outbox_retry(service: str, ids: Annotated[list[int] | None, typer.Argument(help="Row ids; all if none.")] = None,
                 database_url: DatabaseUrlOption = None) -> None:
    """Put SERVICE's parked rows (all, or those named) back in the relay's queue."""
    from stayops_kit.db import create_engine
    from stayops_kit.relay import requeue_parked

    async def run() -> int:
        engine = create_engine(_service_database_url(service, database_url))
        try:
            return await requeue_parked(engine, ids or None)
        finally:
            await engine.dispose()

    console.print(f"Re-queued {asyncio.run(run())} parked row(s) of {service}.")


@app.command()
def demo(
    scenario: Annotated[str, typer.Argument(help="solo: a solo host's weekly pricing twice and the reactive "
                                            "scenarios; propco: a property manager's portfolio pricing")] = "solo",
) -> None:
    """Run a scenario on an ephemeral stack and print its timelines: `solo` (default) the
    weekly dynamic-pricing scenario twice and the reactive ones; `propco` 50 listings in
    three segments priced by portfolio-pricing with one batch review."""
    from stayops_infra.demo import run_demo, run_propco_demo

    if scenario not in ("solo", "propco"):
        raise _fail(StackError(f"unknown scenario {scenario!r}: solo or propco"))
    raise typer.Exit(asyncio.run(run_propco_demo(console) if scenario == "propco" else run_demo(console)))


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
    _seed(config, lambda bootstrap, keys, registry, idempotent: seed_solo(
        bootstrap, keys, registry, idempotent=idempotent), as_json)


@seed_app.command("propco")
def seed_propco_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a property manager: 50 listings (luxury, standard, budget), the Revenue,
    Operations and Guest relations departments with their people and two AI agents
    (the AI Revenue Manager, the AI Guest Assistant); weekly pricing is one
    portfolio-pricing run over the segments."""
    config = StackConfig.from_env()
    _seed(config, lambda bootstrap, keys, registry, idempotent: seed_propco(
        bootstrap, keys, registry, config.data_dir / "syncsim" / "listings.json", idempotent=idempotent), as_json)


def _seed(config: StackConfig, seed: Callable[[str, KeyPair, OrgRegistry, bool], Coroutine[Any, Any, SeededOrg]],
          as_json: bool) -> None:
    """Seed an org through the org-service simulator, create its automations, print it."""
    try:
        seeded = asyncio.run(seed(bootstrap_servers_from_env(config), ensure_keys(config.keys_dir),
                                  org_registry(config), not tansu_is_running(config)))
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


@policy_app.command("set")
def policy_set(
    org: Annotated[str, typer.Option(help="the org whose policy changes (as seeded)")],
    approval_threshold: Annotated[float | None, typer.Option(
        help="a change of this many percent or more on a night needs a person's approval")] = None,
    max_change: Annotated[float | None, typer.Option(
        help="no night may move more than this many percent, approved or not")] = None,
    floor: Annotated[str | None, typer.Option(help="no price below this amount")] = None,
    ceiling: Annotated[str | None, typer.Option(help="no price above this amount")] = None,
    ai_agents_may_decide: Annotated[bool | None, typer.Option(
        "--ai-agents-may-decide/--no-ai-agents-may-decide",
        help="whether AI agents may answer decisions (default: unchanged)")] = None,
    listing: Annotated[str | None, typer.Option(
        help="apply the price limits and --currency to this listing instead of the whole org")] = None,
    currency: Annotated[str | None, typer.Option(help="the listing's currency (ISO 4217), with --listing")] = None,
) -> None:
    """Change an org's policy and announce it (org.policy.updated); services enforce it at once."""
    config = StackConfig.from_env()
    try:
        change = PolicyChange(
            approval_threshold_pct=approval_threshold, max_change_pct=max_change,
            floor=Decimal(floor) if floor is not None else None,
            ceiling=Decimal(ceiling) if ceiling is not None else None,
            ai_agents_may_decide=ai_agents_may_decide, listing=listing, currency=currency,
        )
        event = asyncio.run(set_policy(bootstrap_servers_from_env(config), org_registry(config), org, change,
                                       idempotent=not tansu_is_running(config)))
    except (KeyError, ValueError, ArithmeticError) as exc:  # pydantic's ValidationError is a ValueError
        raise _fail(exc) from exc
    except Exception as exc:
        raise _fail(StackError(f"the policy was not announced (is the stack up?): {exc!r}")) from exc
    console.print_json(json.dumps(event.data, default=str))


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


@app.command()
def backtest(
    seeds: Annotated[int, typer.Option(help="How many markets to simulate (seeds 1..N).")] = 5,
    first_seed: Annotated[int, typer.Option(help="The first seed.")] = 1,
    url: Annotated[str | None, typer.Option(help="POST to a running agent-service's /v1/pricing/preview "
                                                 "instead of calling its code in-process.")] = None,
    token: Annotated[str | None, typer.Option(help="The bearer token for --url.")] = None,
    rules: Annotated[str | None, typer.Option(help="Rule overrides for pricing v2, as JSON.")] = None,
    level: Annotated[float | None, typer.Option(help="Diagnostic: pricing v2's prices x LEVEL (clamped into "
                                                     "the owner's bounds), to see what one price level "
                                                     "chosen in hindsight would earn.")] = None,
) -> None:
    """Simulate a year of a market per seed and compare static prices, the baseline
    rules and pricing v2 (through the preview API) on RevPAN, occupancy and ADR."""
    from stayops_infra.backtest.report import print_backtest
    from stayops_infra.backtest.run import http_pricer, in_process_pricer, run_backtest, scaled_pricer

    if url is not None and token is None:
        raise _fail(StackError("--url needs --token (stayops token --org ORG --user USER --role owner)"))
    pricer = http_pricer(url, token or "") if url else in_process_pricer()
    if level is not None:
        if level <= 0:
            raise _fail(StackError("--level must be above 0"))
        pricer = scaled_pricer(pricer, level)
    overrides = json.loads(rules) if rules else None
    results = run_backtest(range(first_seed, first_seed + seeds), pricer, overrides=overrides,
                           progress=lambda m: errors.print(m, highlight=False))
    print_backtest(results, console)


@app.command()
def trace(
    id_: Annotated[str, typer.Argument(metavar="ID", help="An event id, run id, task id or correlation id.")],
    org: Annotated[str | None, typer.Option(help="The org to look in (a token for its owner is minted "
                                                 "with the org-service simulator's key).")] = None,
    token: Annotated[str | None, typer.Option(help="A bearer token instead of --org.")] = None,
    url: Annotated[list[str] | None, typer.Option(help="SERVICE=URL of a service not on its default "
                                                       "port (repeatable).")] = None,
) -> None:
    """Print the causal tree of everything that followed from ID, across the four services:
    time, service, type, subject and which consumer groups applied each event."""
    from stayops_infra.services import SERVICES
    from stayops_infra.trace import TraceError, collect_trace, render_trace

    if (org is None) == (token is None):
        raise _fail(StackError("name the org (--org ORG) or give a token (--token JWT)"))
    if token is None:
        keys = ensure_keys(StackConfig.from_env().keys_dir)
        token = mint_token(keys.private_pem(), org_id=str(org), user_id="stayops-trace", role_id="owner")
    urls = {spec.name: f"http://127.0.0.1:{spec.port}" for spec in SERVICES}
    for given in url or []:
        name, _, value = given.partition("=")
        if name not in urls or not value:
            raise _fail(StackError(f"--url takes SERVICE=URL with SERVICE one of {', '.join(urls)}, not {given!r}"))
        urls[name] = value.rstrip("/")
    try:
        found = asyncio.run(collect_trace(urls, {"Authorization": f"Bearer {token}"}, id_))
    except TraceError as exc:
        raise _fail(exc) from exc
    render_trace(found, console)


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{option} takes an ISO 8601 time (2026-01-31T08:00:00Z), not {text!r}") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@app.command()
def replay(
    topic: Annotated[str | None, typer.Option(help="The topic whose records to re-deliver (with --to-group).")] = None,
    since: Annotated[str | None, typer.Option("--from", help="Records from this time (ISO 8601, the broker's "
                                                             "timestamps).")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Records up to this time (ISO 8601).")] = None,
    correlation: Annotated[str | None, typer.Option(help="Only the records of this correlation id.")] = None,
    to_group: Annotated[str | None, typer.Option(help="Re-deliver to this consumer group only (a service's), "
                                                      "through its inbox.")] = None,
    sandbox: Annotated[str | None, typer.Option(help="Feed --correlation's events to this service's handlers "
                                                     "on a scratch database instead; nothing is published.")] = None,
    database_url: DatabaseUrlOption = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the group to consume the replay.")] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Replay events from the broker: to one consumer group (`--topic T --to-group G`, applied
    at most once through G's inbox; reports new, already applied and parked), or into a
    sandbox (`--correlation ID --sandbox SERVICE`: the resulting rows and the events the
    service would have emitted)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from stayops_infra.replay import ReplayError, Selection, replay_to_group, sandbox_replay

    if (to_group is None) == (sandbox is None):
        raise _fail(StackError("say where to replay: --to-group GROUP or --sandbox SERVICE"))
    bootstrap = bootstrap_servers_from_env()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=errors, transient=True)
    tasks: dict[str, TaskID] = {}

    def progress(phase: str, done: int, total: int | None) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done, total=total)

    try:
        if to_group is not None:
            if topic is None:
                raise _fail(StackError("--to-group needs --topic"))
            selection = Selection(topic, _when(since, "--from"), _when(until, "--to"), correlation)
            with bar:
                report = asyncio.run(replay_to_group(bootstrap, _service_database_url(to_group, database_url),
                                                     to_group, selection, wait_s=wait, progress=progress))
            if as_json:
                console.print_json(json.dumps({**report.summary(), "new_ids": report.new,
                                               "already_applied_ids": report.already_applied,
                                               "parked_ids": report.parked, "pending_ids": report.pending}))
                return
            counts = report.summary()
            console.print(f"{topic}: {counts['selected']} record(s) selected, {counts['replayed']} of types "
                          f"{to_group} handles re-delivered on {to_group}.replay", highlight=False)
            console.print(f"new: {counts['new']}  already applied: {counts['already_applied']}  "
                          f"parked: {counts['parked']}" + (f"  not consumed yet: {counts['pending']}"
                                                           if counts["pending"] else ""), highlight=False)
            return
        assert sandbox is not None
        if correlation is None:
            raise _fail(StackError("--sandbox needs --correlation ID"))
        from stayops_infra.postgres import create_database

        port = StackConfig.from_env().pg_port
        agent = os.environ.get("STAYOPS_AGENT_SERVICE_URL", "http://127.0.0.1:8004")
        with bar:
            result = asyncio.run(sandbox_replay(
                bootstrap, correlation, sandbox, create_database=lambda name: create_database(port, name),
                result_urls={"agent-service": agent}, progress=progress))
    except ReplayError as exc:
        raise _fail(exc) from exc
    if as_json:
        console.print_json(json.dumps(result.as_json()))
        return
    render_sandbox(result.as_json())


def render_sandbox(result: dict[str, Any]) -> None:
    console.print(f"[bold]{escape(result['service'])} sandbox[/] on {escape(result['database_url'])}: "
                  f"{len(result['fed'])} event(s) applied, {len(result['parked'])} parked", highlight=False)
    for item in result["parked"]:
        console.print(f"  [red]parked[/] {escape(item['type'])} {escape(item['id'])}: {escape(item['reason'])}",
                      highlight=False)
    for name, rows in result["tables"].items():
        console.print(f"[bold]{escape(name)}[/] ({len(rows)} row(s))", highlight=False)
        for row in rows:
            console.print("  " + json.dumps(row, default=str), highlight=False, markup=False)
    console.print(f"[bold]would have emitted[/] {len(result['emitted'])} event(s) (not published):")
    for event in result["emitted"]:
        console.print(f"  {escape(event['type'])} key {escape(event['key'])} {escape(event['id'])}", highlight=False)


@schemas_app.command("export")
def schemas_export(directory: Path) -> None:
    """Write every event type's JSON Schema, their index and the AsyncAPI document into DIRECTORY."""
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


@simulate_app.command("message")
def simulate_message(
    org: Annotated[str, typer.Option("--org")],
    listing: Annotated[str, typer.Option("--listing")],
    text: Annotated[str, typer.Option("--text", help="What the guest wrote.")],
    platform: Annotated[Platform, typer.Option("--platform")] = Platform.AIRBNB,
    reservation: Annotated[str | None, typer.Option("--reservation", help="The guest's reservation id.")] = None,
    guest: Annotated[str, typer.Option("--guest", help="The guest's first name.")] = "Guest",
) -> None:
    """Report a guest's message to the host (message.received) on a platform."""
    config = StackConfig.from_env()
    _publish_simulated(config, simulate.message(org, listing, text, platform=platform, reservation_id=reservation,
                                                guest_name=guest, now=datetime.now(UTC)))


def main() -> None:
    app()
