"""The reactive scenarios end to end, on the real broker and the four services'
own databases: a seeded org's automations react to what the sync services say.

1. A reservation on Airbnb for a listing in Lisbon: the guest-welcome task (2 h
   after a 15:00 check-in) and the cleaning task (11:00 on check-out day, for the
   Operations member with the fewest open tasks), in local time; the check-out
   moves and so does the cleaning; a cancellation cancels both. On Hostaway the
   same, with its quirks: an update before the create, a duplicate, a cancellation
   sent as an update.
2. A review of 3 stars or fewer: an urgent task for the owner within 5 s; 5 stars:
   nothing; the same review twice: one alert.
Also with automation-service killed between the event and its action."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from stayops_infra import simulate
from stayops_infra.automations import create_seed_automations
from stayops_infra.hostawaysim import HostawaySimulator, reservation_webhook
from stayops_infra.orgsim import Member, Org, OrgRegistry, member_event, publish_events, publish_policy, seed_propco
from stayops_infra.scenario import OrgHandle, PricingClient, sources_of_run
from stayops_infra.services import SERVICES
from stayops_infra.syncsim import SOURCE as AIRBNB
from stayops_infra.system import LocalSystem
from stayops_kit.testing import eventually
from stayops_schemas.catalog import event_type
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.sync import ListingSynced, Platform

pytestmark = pytest.mark.stack

CHECK_IN = dt.date(2026, 7, 6)  # summer: Lisbon is UTC+1
NOW = dt.datetime.now(dt.UTC)


@dataclass
class ReactiveOrg:
    seeded: dict[str, Any]
    system: LocalSystem
    http: httpx.AsyncClient
    cleaners: tuple[str, str]  # (busy, free)
    stack: Any

    @property
    def org_id(self) -> str:
        return str(self.seeded["org_id"])

    @property
    def listing_id(self) -> str:
        return str(self.seeded["listing_ids"][0])

    @property
    def owner(self) -> str:
        return str(self.seeded["users"]["owner"]["user_id"])

    def headers(self, user: str | None = None, role: str = "owner") -> dict[str, str]:
        if user is None:
            return {"Authorization": f"Bearer {self.seeded['tokens']['owner']}"}
        return {"Authorization": f"Bearer {self.stack.mint_token(self.org_id, user, role)}"}

    async def tasks(self) -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.system.url('task-service')}/v1/tasks", params={"limit": 200},
                                       headers=self.headers())
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def linked(self, link: str, count: int) -> dict[str, dict[str, Any]]:
        """The tasks linked to `link`, by key, once there are `count` of them."""
        async def found() -> dict[str, dict[str, Any]]:
            tasks = {t["data"]["link_key"]: t for t in await self.tasks() if t["data"].get("link") == link}
            return tasks if len(tasks) >= count else {}

        return await eventually(found, timeout=30, what=f"{count} task(s) linked to {link}")

    async def publish(self, envelopes: list[Envelope]) -> None:
        await simulate.publish(self.system.bootstrap, envelopes)


@pytest.fixture
async def org(system: LocalSystem, solo_org: dict[str, Any], stack: Any) -> AsyncIterator[ReactiveOrg]:
    async with httpx.AsyncClient(timeout=20) as http:
        await create_seed_automations(solo_org, automation_url=system.url("automation-service"))
        reactive = ReactiveOrg(solo_org, system, http, (f"cleaner-{uuid.uuid4().hex[:6]}",
                                                         f"cleaner-{uuid.uuid4().hex[:6]}"), stack)
        await _two_cleaners_one_busy(reactive)
        await reactive.publish([event_type("airbnb.listing.synced").envelope(ListingSynced(
            listing_id=reactive.listing_id, org_id=reactive.org_id, title="Alfama flat", city="Lisbon",
            capacity=4, base_price=Decimal("120"), currency="EUR", timezone="Europe/Lisbon", synced_at=NOW,
        ), id=str(uuid.uuid4()), source=AIRBNB, partitionkey=reactive.listing_id, time=NOW)])
        yield reactive


async def _two_cleaners_one_busy(org: ReactiveOrg) -> None:
    """Two Operations members; the first has an open task, so the second is the one
    with the fewest. Role tasks are created until one reaches the second cleaner,
    which proves task-service knows both; that one is then done."""
    directory = Org(org_id=org.org_id, name="Solo host", kind="solo", listing_ids=org.seeded["listing_ids"])
    members = [Member(user, "human", f"Cleaner {i}", "operations", "Operations", None, None,
                      (NOW + dt.timedelta(seconds=i)).isoformat()) for i, user in enumerate(org.cleaners)]
    await publish_events(org.system.bootstrap, [member_event("joined", directory, m) for m in members])
    free = org.cleaners[1]

    async def reaches_free_cleaner() -> dict[str, Any] | None:
        response = await org.http.post(f"{org.system.url('task-service')}/v1/tasks", headers=org.headers(), json={
            "title": "Restock towels", "task_type": "manual", "role_id": "operations"})
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        return task if task["assigned_to"] == free else None

    warm_up = await eventually(reaches_free_cleaner, interval=0.3, what="both cleaners known")
    done = await org.http.post(f"{org.system.url('task-service')}/v1/tasks/{warm_up['id']}/complete",
                               headers=org.headers(free, "operations"), json={"result": {}})
    assert done.status_code == 200, done.text


def stay(org: ReactiveOrg, nights: int = 3, reservation_id: str | None = None) -> simulate.SimulatedStay:
    return simulate.SimulatedStay(org_id=org.org_id, listing_id=org.listing_id,
                                  reservation_id=reservation_id or f"res-{uuid.uuid4().hex[:8]}",
                                  check_in=CHECK_IN, nights=nights)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_an_airbnb_reservation_sets_welcome_and_cleaning_in_local_time_moves_and_cancels_them(
    org: ReactiveOrg,
) -> None:
    booked = stay(org)
    await org.publish(simulate.airbnb_reservation(booked, change=False, cancel=False, now=NOW))

    tasks = await org.linked(booked.reservation_id, 2)
    welcome, cleaning = tasks["guest-welcome"], tasks["cleaning"]
    assert utc(welcome["due_at"]) == dt.datetime(2026, 7, 6, 16, 0, tzinfo=dt.UTC)  # 17:00 in Lisbon
    assert utc(cleaning["due_at"]) == dt.datetime(2026, 7, 9, 10, 0, tzinfo=dt.UTC)  # 11:00 in Lisbon
    assert welcome["assigned_to"] == org.owner
    assert cleaning["assigned_to"] == org.cleaners[1], "the Operations member with the fewest open tasks"
    assert cleaning["data"]["reservation_id"] == booked.reservation_id
    assert cleaning["data"]["platform"] == "airbnb"

    longer = stay(org, nights=4, reservation_id=booked.reservation_id)
    await org.publish(simulate.airbnb_reservation(longer, change=True, cancel=False, now=NOW))

    async def cleaning_moved() -> bool:
        moved = (await org.linked(booked.reservation_id, 2))["cleaning"]
        return utc(moved["due_at"]) == dt.datetime(2026, 7, 10, 10, 0, tzinfo=dt.UTC)

    await eventually(cleaning_moved, timeout=30, what="cleaning moved to the new check-out day")

    await org.publish(simulate.airbnb_reservation(longer, change=False, cancel=True, now=NOW))

    async def both_cancelled() -> bool:
        linked = await org.linked(booked.reservation_id, 2)
        return all(t["status"] == "cancelled" for t in linked.values())

    await eventually(both_cancelled, timeout=30, what="both tasks cancelled")
    assert len(await org.linked(booked.reservation_id, 2)) == 2, "never a second task"


async def test_hostaway_update_before_create_duplicate_and_cancel_as_update_make_two_tasks_then_cancel_them(
    org: ReactiveOrg,
) -> None:
    hostaway = HostawaySimulator()
    booked = stay(org)
    t0 = NOW

    def hook(event: str, status: str, minutes: int) -> Any:
        return reservation_webhook(event, reservation_id=booked.reservation_id, listing_id=booked.listing_id,
                                   check_in=booked.check_in, check_out=booked.check_out, status=status,
                                   inserted_on=t0, updated_on=t0 + dt.timedelta(minutes=minutes))

    updated = hook("reservation.updated", "modified", 1)
    created = hook("reservation.created", "new", 0)
    # Hostaway's order: the update first, then the create, then the update again.
    envelopes = [envelope for webhook in (updated, created, updated)
                 for envelope in hostaway.receive(org.org_id, webhook)]
    assert [e.type for e in envelopes] == ["hostaway.reservation.created"]
    await org.publish(envelopes)
    tasks = await org.linked(booked.reservation_id, 2)
    assert tasks["cleaning"]["data"]["platform"] == "hostaway"

    cancel = hostaway.receive(org.org_id, hook("reservation.updated", "cancelled", 2))
    assert [e.type for e in cancel] == ["hostaway.reservation.cancelled"]
    await org.publish(cancel)

    async def both_cancelled() -> bool:
        linked = await org.linked(booked.reservation_id, 2)
        return all(t["status"] == "cancelled" for t in linked.values())

    await eventually(both_cancelled, timeout=30, what="both tasks cancelled by the Hostaway update")


async def test_a_bad_review_alerts_the_owner_within_5_s_once_and_a_good_one_not_at_all(org: ReactiveOrg) -> None:
    good = simulate.review(org.org_id, org.listing_id, 5, text="Perfect", reservation_id="res-good",
                           review_id="rv-good", platform=Platform.AIRBNB, now=NOW)
    bad = simulate.review(org.org_id, org.listing_id, 2, text="The shower was cold", reservation_id="res-bad",
                          review_id="rv-bad", platform=Platform.AIRBNB, now=NOW)
    started = time.monotonic()
    await org.publish(good + bad + bad)  # the bad one delivered twice

    [alert] = (await org.linked("review:airbnb:rv-bad", 1)).values()
    assert time.monotonic() - started < 5.0, "the owner is alerted within 5 s"
    assert (alert["priority"], alert["assigned_to"]) == ("urgent", org.owner)
    assert alert["description"] == "The shower was cold" and alert["data"]["reservation_id"] == "res-bad"

    # A later bad review on the same partition: once its alert exists, every event before it was applied.
    later = simulate.review(org.org_id, org.listing_id, 1, text="Noisy", reservation_id=None,
                            review_id="rv-later", platform=Platform.AIRBNB, now=NOW)
    await org.publish(later)
    await org.linked("review:airbnb:rv-later", 1)
    reviews = [t for t in await org.tasks() if str(t["data"].get("link", "")).startswith("review:")]
    assert sorted(t["data"]["review_id"] for t in reviews) == ["rv-bad", "rv-later"]


async def test_a_reservation_acted_on_by_a_killed_automation_service_makes_its_tasks_once(
    org: ReactiveOrg, system: LocalSystem,
) -> None:
    automation = system.processes["automation-service"]
    system.kill("automation-service")
    booked = stay(org)
    await org.publish(simulate.airbnb_reservation(booked, change=False, cancel=False, now=NOW))
    # It handles the reservation, commits, and dies before committing the Kafka offset:
    # on the next start the reservation is delivered again.
    automation.env["STAYOPS_FAILPOINTS"] = "consumer.before_commit"
    try:
        automation.start()
        await eventually(lambda: _dead(automation), timeout=60, what="automation-service killed at the failpoint")
    finally:
        automation.env.pop("STAYOPS_FAILPOINTS", None)
    await system.restart("automation-service")

    tasks = await org.linked(booked.reservation_id, 2)
    assert set(tasks) == {"guest-welcome", "cleaning"}
    # Another reservation afterwards: once its tasks exist, the redelivery was long applied.
    after = stay(org)
    await org.publish(simulate.airbnb_reservation(after, change=False, cancel=False, now=NOW))
    await org.linked(after.reservation_id, 2)
    linked = [t for t in await org.tasks() if t["data"].get("link") == booked.reservation_id]
    assert len(linked) == 2, "the action happened once"


async def _dead(process: Any) -> bool:
    return not process.is_alive()


async def test_a_pricing_run_for_hostaway_listings_is_synced_and_published_by_sync_hostaway(
    system: LocalSystem, solo_org: dict[str, Any],
) -> None:
    policy = await publish_policy(system.bootstrap, solo_org["org_id"], {"pricing": {"approval_threshold_pct": 1000,
                                                                                     "max_change_pct": 1000}})
    handle = OrgHandle.from_seed(solo_org)
    async with httpx.AsyncClient(timeout=20) as http:
        pricing = PricingClient({spec.name: system.url(spec.name) for spec in SERVICES}, http)
        await pricing.policy_applied(handle, policy)
        run_id = await pricing.start_run(handle, threshold_pct=1000, platform="hostaway")
        run = await pricing.wait_until(handle, run_id, timeout_s=180)
        tasks = await pricing.run_tasks(handle, run_id)

    assert run["status"] == "completed", run["log"]
    analysis = next(t for t in tasks if t["task_type"] == "analysis" and t["data"].get("skill") == "pricing")
    assert analysis["result"]["recommendations"], "agent-service priced from Hostaway's listing and market data"
    [publish] = [t for t in tasks if (t.get("data") or {}).get("action") == "publish_prices"]
    assert (publish["status"], publish["data"]["platform"]) == ("completed", "hostaway")
    sources = await sources_of_run(system.bootstrap, run_id)
    assert "/sync-hostaway" in sources and "/sync-airbnb" not in sources, sources


async def test_a_guests_message_on_hostaway_fires_an_event_automation_on_message_received(org: ReactiveOrg) -> None:
    response = await org.http.post(f"{org.system.url('automation-service')}/v1/automations", headers=org.headers(),
                                   json={"name": "Guest message: answer within the hour", "kind": "event",
                                         "on": "message.received", "actions": [{
                                             "type": "create_task", "key": "answer",
                                             "link": "message:${platform}:${data.message_id}",
                                             "title": "Answer ${data.guest_name}", "description": "${data.text}",
                                             "assigned_to": org.owner, "priority": "high",
                                             "data": {"thread_id": "${data.thread_id}", "platform": "${platform}",
                                                      "reservation_id": "${data.reservation_id}"}}]})
    assert response.status_code == 201, response.text
    [received] = simulate.message(org.org_id, org.listing_id, "Can we check in at noon?", platform=Platform.HOSTAWAY,
                                  reservation_id="hx-77", guest_name="Ana", now=NOW)
    await org.publish([received])

    [task] = (await org.linked(f"message:hostaway:{received.data['message_id']}", 1)).values()
    assert (task["title"], task["description"], task["assigned_to"]) == (
        "Answer Ana", "Can we check in at noon?", org.owner)
    assert (task["data"]["platform"], task["data"]["reservation_id"]) == ("hostaway", "hx-77")


async def test_a_seeded_propco_has_50_listings_3_departments_its_automations_and_reacts_to_a_reservation(
    system: LocalSystem, stack: Any, tmp_path: Any,
) -> None:
    seeded = (await seed_propco(stack.kafka_bootstrap, stack.keys, OrgRegistry(tmp_path / "orgs.json"),
                                system.listing_profiles_file)).as_json()
    assert len(seeded["listing_ids"]) == 50
    assert {segment: len(ids) for segment, ids in seeded["segments"].items()} == {
        "luxury": 10, "standard": 25, "budget": 15}
    assert sorted(seeded["departments"]) == ["Guest relations", "Operations", "Revenue"]
    assert seeded["departments"]["Operations"] == ["operations", "operations-2", "operations-3"]
    assert seeded["departments"]["Revenue"] == ["revenue-manager", "revenue_manager_agent"]
    assert seeded["departments"]["Guest relations"] == ["guest-relations", "guest_relations_agent"]

    await create_seed_automations(seeded, automation_url=system.url("automation-service"))
    async with httpx.AsyncClient(timeout=20) as http:
        headers = {"Authorization": f"Bearer {seeded['tokens']['owner']}"}
        response = await http.get(f"{system.url('automation-service')}/v1/automations", headers=headers)
        assert response.status_code == 200, response.text
        automations = response.json()["items"]
        pricing = [a for a in automations if a["kind"] == "scheduled"]
        # One portfolio run over the three segments (luxury 10, standard 25, budget 15).
        [portfolio] = pricing
        assert portfolio["action"]["workflow_key"] == "portfolio-pricing"
        segments = portfolio["action"]["parameters"]["segments"]
        priced = [lid for s in segments for lid in s["listing_ids"]]
        assert sorted(priced) == sorted(seeded["listing_ids"]), "every listing priced weekly, once"
        assert [len(s["listing_ids"]) for s in segments] == [10, 25, 15]
        assert {a["name"] for a in automations if a["kind"] == "event"} == {
            "Reservation: guest welcome and cleaning", "Bad review: alert the owner"}

        luxury = seeded["segments"]["luxury"][0]
        booked = simulate.SimulatedStay(org_id=seeded["org_id"], listing_id=luxury,
                                        reservation_id=f"res-{uuid.uuid4().hex[:8]}", check_in=CHECK_IN, nights=2)
        await simulate.publish(system.bootstrap, simulate.airbnb_reservation(booked, change=False, cancel=False,
                                                                             now=NOW))
        cleaners = {seeded["users"][key]["user_id"] for key in seeded["departments"]["Operations"]}

        async def its_tasks() -> dict[str, dict[str, Any]]:
            response = await http.get(f"{system.url('task-service')}/v1/tasks", headers=headers,
                                      params={"limit": 200})
            tasks = {t["data"]["link_key"]: t for t in response.json()["items"]
                     if t["data"].get("link") == booked.reservation_id}
            assigned = len(tasks) == 2 and tasks["cleaning"]["assigned_to"] in cleaners
            return tasks if assigned else {}

        tasks = await eventually(its_tasks, timeout=30, what="the propco reservation's tasks")
    assert tasks["guest-welcome"]["assigned_to"] == seeded["users"]["guest-relations"]["user_id"]
    assert utc(tasks["cleaning"]["due_at"]) == dt.datetime(2026, 7, 8, 10, 0, tzinfo=dt.UTC)  # 11:00 in Lisbon
