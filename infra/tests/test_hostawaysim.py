"""The sync-hostaway simulator: Hostaway's webhooks, in the orders Hostaway sends
them, become each canonical event once, on `sync.hostaway` as `/sync-hostaway`;
its state survives between `stayops simulate` runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from stayops_infra import simulate
from stayops_infra.hostawaysim import HostawaySimulator, message_webhook
from stayops_schemas.catalog import SYNC_HOSTAWAY, event_type, parse_payload
from stayops_schemas.events.sync import Platform
from stayops_schemas.ownership import check_source

NOW = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)
STAY = simulate.SimulatedStay(org_id="org-1", listing_id="l-1", reservation_id="hx-1",
                              check_in=dt.date(2025, 4, 1), nights=3)


def test_created_then_cancelled_as_an_update_across_two_runs_of_the_simulator(tmp_path: Path) -> None:
    state = simulate.hostaway_state(tmp_path)
    [created] = simulate.hostaway_reservation(HostawaySimulator(state_file=state), STAY, change=False,
                                              cancel=False, now=NOW)
    later = NOW + dt.timedelta(minutes=5)
    [cancelled] = simulate.hostaway_reservation(HostawaySimulator(state_file=state), STAY, change=False,
                                                cancel=True, now=later)
    assert (created.type, cancelled.type) == ("hostaway.reservation.created", "hostaway.reservation.cancelled")
    assert event_type(cancelled.type).topic == SYNC_HOSTAWAY
    check_source(cancelled)  # published as its owner, /sync-hostaway
    assert cancelled.data["reservation_id"] == "hx-1" and cancelled.partitionkey == "l-1"


def test_a_duplicate_webhook_announces_nothing_more() -> None:
    simulator = HostawaySimulator()
    assert len(simulate.hostaway_reservation(simulator, STAY, change=False, cancel=False, now=NOW)) == 1
    assert simulate.hostaway_reservation(simulator, STAY, change=False, cancel=False, now=NOW) == []


def test_a_guests_message_is_message_received_on_either_platform_and_the_hosts_own_is_not() -> None:
    [on_hostaway] = simulate.message("org-1", "l-1", "Can we check in early?", platform=Platform.HOSTAWAY,
                                     reservation_id="hx-1", guest_name="Ana", now=NOW)
    [on_airbnb] = simulate.message("org-1", "l-1", "Where is the key?", platform=Platform.AIRBNB,
                                   reservation_id="HMX42", guest_name="Bo", now=NOW)
    for envelope in (on_hostaway, on_airbnb):
        parse_payload(envelope)
        check_source(envelope)
    assert (on_hostaway.type, event_type(on_hostaway.type).topic) == ("hostaway.message.received", SYNC_HOSTAWAY)
    assert (on_hostaway.data["reservation_id"], on_hostaway.data["guest_name"]) == ("hx-1", "Ana")
    assert (on_airbnb.type, on_airbnb.data["reservation_id"], on_airbnb.data["text"]) == (
        "airbnb.message.received", "HMX42", "Where is the key?")
    hosts_own = message_webhook(message_id=7, conversation_id=8, listing_id="l-1", body="Sure!", incoming=False,
                                inserted_on=NOW)
    assert HostawaySimulator().receive_message("org-1", hosts_own) == []
