"""`stayops demo`: an ephemeral stack, a fresh solo org with its seed automations,
the weekly dynamic-pricing scenario run twice — approved by rule, then through the
owner's decision over REST — and a readable timeline of both runs; then the reactive
scenarios: a reservation on Airbnb sets guest welcome and cleaning in motion, a
reservation cancelled on Hostaway (as Hostaway's update) cancels its tasks, and a
2-star review alerts the owner. Exits 0 when both runs completed and every reactive
scenario happened.

`stayops demo propco`: a property manager's 50 listings in three segments priced by
`portfolio-pricing` (a child run per segment, three at once), one batch review taken by
the revenue manager over REST (two segments approved, one night edited), published
listing by listing, with the run's timeline and each listing's outcome. Exits 0 when
the run completed and exactly the approved listings were published."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from rich.console import Console

from stayops_infra import simulate
from stayops_infra.automations import create_seed_automations
from stayops_infra.hostawaysim import HostawaySimulator
from stayops_infra.orgsim import (
    Member,
    Org,
    OrgRegistry,
    member_event,
    publish_events,
    publish_policy,
    seed_propco,
    seed_solo,
)
from stayops_infra.scenario import OrgHandle, PricingClient, ScenarioError, timeline
from stayops_infra.services import SERVICES
from stayops_infra.syncsim import CITY_ZONES, listing_of
from stayops_infra.system import ephemeral_system
from stayops_schemas.events.sync import Platform

# A threshold no change reaches approves by rule (unless the agent asks for review),
# once the org's policy lets rules approve that much (a run's threshold can only lower
# the org's); a threshold every change reaches sends the proposal to the owner.
BY_RULE_THRESHOLD_PCT = 1000.0
BY_OWNER_THRESHOLD_PCT = 0.0
RULES_APPROVE_ALL = {"pricing": {"approval_threshold_pct": 1000, "max_change_pct": 1000}}


async def run_demo(console: Console) -> int:
    async with ephemeral_system(lambda message: console.print(f"{message}..."), prefix="stayops-demo-",
                                notify=lambda message: console.print(f"[bold]stack[/] {message}")) as (stack, system):
        seeded = await seed_solo(stack.broker.bootstrap, stack.keys, OrgRegistry(system.work_dir / "orgs.json"))
        policy = await publish_policy(stack.broker.bootstrap, seeded.org.org_id, RULES_APPROVE_ALL)
        automations = await create_seed_automations(seeded.as_json(), system.url("automation-service"))
        cleaner = await _hire_a_cleaner(stack.broker.bootstrap, seeded.org.org_id)
        org = OrgHandle.from_seed(seeded.as_json())
        console.print(f"Seeded a solo host: org {org.org_id}, listings {', '.join(org.listing_ids)}; "
                      f"automations: {', '.join(a['name'] for a in automations)}; a cleaner in Operations")
        urls = {spec.name: system.url(spec.name) for spec in SERVICES}
        async with httpx.AsyncClient(timeout=15) as http:
            client = PricingClient(urls, http)
            await client.policy_applied(org, policy)
            priced = await _two_runs(console, client, org)
            reacted = await _reactive(console, client, org, system.bootstrap,
                                      {**org.names, cleaner.user_id: cleaner.display_name})
            ok = priced and reacted
            console.print("[green]Both runs completed and every reactive scenario happened.[/]" if ok
                          else "[red]Something did not happen as it should (see above).[/]")
            return 0 if ok else 1


async def _two_runs(console: Console, client: PricingClient, org: OrgHandle) -> bool:
    console.rule("Run 1: small changes, approved by rule")
    first = await client.start_run(org, threshold_pct=BY_RULE_THRESHOLD_PCT, monitor_days=0,
                                   idempotency_key=f"demo-rule-{org.org_id}")
    first_run = await client.wait_until(org, first, timeout_s=180)
    _print(console, first_run, await client.run_tasks(org, first), org.names)

    console.rule("Run 2: the owner decides over REST")
    second = await client.start_run(org, threshold_pct=BY_OWNER_THRESHOLD_PCT, monitor_days=0,
                                    idempotency_key=f"demo-owner-{org.org_id}")
    task = await client.decision_task(org, second, timeout_s=180)
    console.print(f"The owner's inbox has decision task {task['id']}: {task['title']}")
    await client.decide(org, task["id"], "approved", "Approved for the season (demo)")
    second_run = await client.wait_until(org, second, timeout_s=180)
    _print(console, second_run, await client.run_tasks(org, second), org.names)

    ok = bool(first_run["status"] == "completed" and second_run["status"] == "completed")
    console.print("[green]Both runs completed.[/]" if ok else "[red]A run did not complete.[/]")
    return ok


async def _hire_a_cleaner(bootstrap: str, org_id: str) -> Member:
    """The solo host's cleaner joins the Operations role, so cleaning tasks reach someone."""
    cleaner = Member(str(uuid.uuid4()), "human", "Cleaner", "operations", "Operations", None, None,
                     dt.datetime.now(dt.UTC).isoformat())
    await publish_events(bootstrap, [member_event("joined", Org(org_id, "Solo host", "solo", []), cleaner)])
    return cleaner


async def _reactive(console: Console, client: PricingClient, org: OrgHandle, bootstrap: str,
                    names: dict[str, str]) -> bool:
    """The reactive scenarios on the running system, as the sync simulators report them."""
    listing = org.listing_ids[0]
    check_in = dt.date.today() + dt.timedelta(days=14)
    # The listing's zone, as the sync simulator reported it: due times are local there.
    zone = ZoneInfo(CITY_ZONES[listing_of(org.org_id, listing).city])

    def show(task: dict[str, Any]) -> str:
        who = names.get(str(task.get("assigned_to")), task.get("assigned_to") or "unassigned")
        due = ""
        if task.get("due_at"):
            local = dt.datetime.fromisoformat(str(task["due_at"]).replace("Z", "+00:00")).astimezone(zone)
            due = f", due {local:%Y-%m-%d %H:%M} {zone.key}"
        return f"    {task['status']:<9} {task['title']} ({task['priority']}, for {who}{due})"

    try:
        console.rule("Reactive 1: a reservation on Airbnb")
        booked = simulate.SimulatedStay(org.org_id, listing, f"res-{uuid.uuid4().hex[:8]}", check_in, nights=3)
        await simulate.publish(bootstrap, simulate.airbnb_reservation(booked, change=False, cancel=False,
                                                                      now=dt.datetime.now(dt.UTC)))
        tasks = await client.linked_tasks(org, booked.reservation_id, count=2)
        console.print(f"Reservation {booked.reservation_id} on Airbnb ({check_in}, 3 nights): "
                      f"{len(tasks)} tasks appeared", highlight=False)
        for task in tasks:
            console.print(show(task), highlight=False, markup=False)

        console.rule("Reactive 2: a reservation on Hostaway, cancelled by Hostaway's update")
        hostaway = HostawaySimulator()
        stay = simulate.SimulatedStay(org.org_id, listing, f"hx-{uuid.uuid4().hex[:8]}",
                                      check_in + dt.timedelta(days=7), nights=2)
        await simulate.publish(bootstrap, simulate.hostaway_reservation(hostaway, stay, change=False, cancel=False,
                                                                        now=dt.datetime.now(dt.UTC)))
        await client.linked_tasks(org, stay.reservation_id, count=2)
        console.print(f"Reservation {stay.reservation_id} on Hostaway: 2 tasks appeared", highlight=False)
        cancel = simulate.hostaway_reservation(hostaway, stay, change=False, cancel=True,
                                               now=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
        await simulate.publish(bootstrap, cancel)
        cancelled = await client.linked_tasks(org, stay.reservation_id, count=2, until=lambda tasks: all(
            t["status"] == "cancelled" for t in tasks))
        console.print(f"Hostaway sent an update with status cancelled ({', '.join(e.type for e in cancel)}): "
                      f"{len(cancelled)} tasks cancelled", highlight=False)
        for task in cancelled:
            console.print(show(task), highlight=False, markup=False)

        console.rule("Reactive 3: a 2-star review")
        review = simulate.review(org.org_id, listing, 2, text="The shower was cold and nobody answered",
                                 reservation_id=booked.reservation_id, review_id=f"rv-{uuid.uuid4().hex[:8]}",
                                 platform=Platform.AIRBNB, now=dt.datetime.now(dt.UTC))
        started = time.monotonic()
        await simulate.publish(bootstrap, review)
        [alert] = await client.linked_tasks(org, f"review:airbnb:{review[0].data['review_id']}", count=1)
        console.print(f"Owner alert {time.monotonic() - started:.1f}s after the review:", highlight=False)
        console.print(show(alert), highlight=False, markup=False)
    except ScenarioError as exc:
        console.print(f"[red]{exc}[/]", highlight=False)
        return False
    return True


def _print(console: Console, run: dict[str, Any], tasks: list[dict[str, Any]], names: dict[str, str]) -> None:
    for line in timeline(run, tasks, names=names):
        console.print(line, highlight=False, markup=False)


async def run_propco_demo(console: Console) -> int:
    async with ephemeral_system(lambda message: console.print(f"{message}..."), prefix="stayops-demo-",
                                notify=lambda message: console.print(f"[bold]stack[/] {message}")) as (stack, system):
        seeded = (await seed_propco(stack.broker.bootstrap, stack.keys, OrgRegistry(system.work_dir / "orgs.json"),
                                    system.listing_profiles_file)).as_json()
        org = OrgHandle.from_seed(seeded)
        console.print(f"Seeded a property manager: org {org.org_id}, "
                      + ", ".join(f"{len(ids)} {segment}" for segment, ids in org.segments.items())
                      + " listings; departments " + ", ".join(seeded["departments"]), highlight=False)
        names = {m["user_id"]: m["display_name"] for m in seeded["users"].values()}
        urls = {spec.name: system.url(spec.name) for spec in SERVICES}
        async with httpx.AsyncClient(timeout=30) as http:
            client = PricingClient(urls, http)
            try:
                return await _portfolio(console, client, org, names)
            except ScenarioError as exc:
                console.print(f"[red]{exc}[/]", highlight=False)
                return 1


async def _portfolio(console: Console, client: PricingClient, org: OrgHandle, names: dict[str, str]) -> int:
    console.rule("portfolio-pricing: three segments in parallel, one batch review")
    started = time.monotonic()
    run_id = await client.start_portfolio(org, monitor_days=0, idempotency_key=f"demo-propco-{org.org_id}")
    task = await client.batch_task(org, run_id, timeout_s=900)
    console.print(f"{time.monotonic() - started:.0f}s: the revenue manager's inbox has the batch review "
                  f"{task['id']} ({task['title']}), due {task['due_at']}:", highlight=False)
    batch = {entry["segment"]: entry for entry in task["data"]["batch"]}
    for segment, entry in batch.items():
        console.print(f"    {segment:<9} {len(entry['listing_ids']):>3} listings  {entry['nights']:>5} nights  "
                      f"largest change {float(entry['max_abs_change_pct']):.1f}%  "
                      f"(stored result {entry['proposal_ref']['id']}, {entry['proposal_ref']['size']:,} bytes)",
                      highlight=False, markup=False)
    night = (await client.stored_result(org, batch["budget"]["proposal_ref"]))["recommendations"][0]
    price = str((Decimal(night["current_price"]) * Decimal("1.02")).quantize(Decimal("0.01")))
    edit = {"listing_id": night["listing_id"], "date": night["date"], "price": price}
    console.print(f"The revenue manager approves luxury and budget (not standard), {night['listing_id'][:8]} "
                  f"{night['date']} at {price}", highlight=False)
    await client.decide(org, task["id"], "approved", "Luxury and budget this week (demo)",
                        changes={"segments": ["luxury", "budget"], "prices": [edit]},
                        headers=org.headers_of("revenue-manager"))
    run = await client.wait_until(org, run_id, timeout_s=900)
    console.print(f"{time.monotonic() - started:.0f}s: run {run['status']}", highlight=False)
    for line in timeline(run, [], names=names):
        console.print(line, highlight=False, markup=False)
    listings = (run.get("steps", {}).get("publish") or {}).get("listings") or {}
    published = sorted(lid for lid, outcome in listings.items() if outcome["status"] == "published")
    approved = sorted({*batch["luxury"]["listing_ids"], *batch["budget"]["listing_ids"]})
    console.print(f"Published {len(published)} listings (luxury and budget), each once; standard unchanged.",
                  highlight=False)
    ok = run["status"] == "completed" and published == approved
    console.print("[green]The portfolio run completed; exactly the approved listings were published.[/]" if ok
                  else "[red]The portfolio run did not end as it should (see above).[/]")
    return 0 if ok else 1
