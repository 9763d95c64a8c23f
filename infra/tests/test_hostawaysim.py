"""The sync-hostaway simulator: Hostaway's webhooks, in the orders Hostaway sends
them, become each canonical event once, on `sync.hostaway` as `/sync-hostaway`;
its state survives between `stayops simulate` runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from stayops_infra import simulate
from stayops_infra.hostawaysim import HostawaySimulator
from stayops_schemas.catalog import SYNC_HOSTAWAY, event_type
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
