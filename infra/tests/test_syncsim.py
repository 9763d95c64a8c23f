"""The sync simulators answer sync and price requests as sync-airbnb and sync-hostaway would."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from stayops_infra.syncsim import (
    HORIZON_DAYS,
    ListingProfile,
    SyncSimulator,
    listing_of,
    listing_profiles_file,
    write_listing_profiles,
)
from stayops_schemas.catalog import SYNC_HOSTAWAY, event_type, parse_payload
from stayops_schemas.envelope import Envelope
from stayops_schemas.events import automations as auto
from stayops_schemas.events.sync import Platform
from stayops_schemas.ownership import check_source

NOW = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)


def request(type_: str, payload: auto.Payload) -> Envelope:
    return event_type(type_).envelope(payload, id="req-event-1", source="/automation-service",
                                      partitionkey="t1", time=NOW, correlationid="run-1")


def simulator(fail: set[str] | None = None) -> SyncSimulator:
    return SyncSimulator(fail_listings=lambda: fail or set(), clock=lambda: NOW)


def test_a_sync_request_is_answered_with_data_then_completion() -> None:
    sync_request = auto.SyncRequested(org_id="o1", request_id="task-1", platform="airbnb",
                                      listing_ids=["l1", "l2"], requested_by="automation")
    answers = simulator().handle(request("stayops.sync.requested", sync_request))

    types = [a.type for a in answers]
    assert types.count("airbnb.listing.synced") == 2
    assert types.count("airbnb.market.rates.synced") == 2
    assert types.count("airbnb.reservation.created") > 0
    assert types[-1] == "airbnb.sync.completed", "completion comes after every record"
    assert answers[-1].data["request_id"] == "task-1"
    for answer in answers:
        parse_payload(answer)  # every answer matches its schema
        assert (answer.correlationid, answer.causationid, answer.orgid) == ("run-1", "req-event-1", "o1")
    rates = next(a for a in answers if a.type == "airbnb.market.rates.synced")
    assert len(rates.data["rates"]) == HORIZON_DAYS


def test_the_same_listing_always_gets_the_same_world() -> None:
    assert listing_of("o1", "l1") == listing_of("o1", "l1")
    listing = listing_of("o1", "l1")
    assert listing.min_price <= listing.base_price <= listing.max_price


def test_approved_prices_are_applied_except_for_listings_told_to_fail() -> None:
    prices = [auto.PriceChange(listing_id=lid, date=dt.date(2026, 12, 1), price=Decimal("120.00"), currency="EUR")
              for lid in ("l1", "l2")]
    approved = auto.PricingApproved(org_id="o1", request_id="task-2", platform="airbnb",
                                    listing_ids=["l1", "l2"], prices=prices, approved_by="rule:max_change")
    sim = simulator(fail={"l2"})
    answers = sim.handle(request("stayops.pricing.approved", approved))

    by_listing = {a.data["listing_id"]: a for a in answers}
    assert by_listing["l1"].type == "airbnb.price.updated"
    assert by_listing["l2"].type == "airbnb.price.update_failed"
    assert all(a.data["request_id"] == "task-2" for a in answers)
    assert sim.prices[("o1", "l1")] == {dt.date(2026, 12, 1): Decimal("120.00")}
    assert ("o1", "l2") not in sim.prices


def test_other_platforms_and_types_are_not_answered() -> None:
    hostaway = auto.SyncRequested(org_id="o1", request_id="r", platform="hostaway", listing_ids=["l1"],
                                  requested_by="automation")
    assert simulator().handle(request("stayops.sync.requested", hostaway)) == []


def test_a_price_outside_the_listings_bounds_or_in_another_currency_is_refused() -> None:
    listing = listing_of("o1", "l1")
    night = dt.date(2026, 12, 1)

    def change(price: Decimal, currency: str = "EUR", day: int = 0) -> auto.PriceChange:
        return auto.PriceChange(listing_id="l1", date=night + dt.timedelta(days=day), price=price, currency=currency)

    for refused, says in ((change(listing.max_price + Decimal("0.01")), "outside the listing's"),
                          (change(listing.min_price - Decimal("0.01")), "outside the listing's"),
                          (change(listing.base_price, "USD"), "priced in USD; the listing is priced in EUR")):
        approved = auto.PricingApproved(org_id="o1", request_id="task-3", platform="airbnb", listing_ids=["l1"],
                                        prices=[change(listing.base_price, day=1), refused], approved_by="u-owner")
        sim = simulator()
        [answer] = sim.handle(request("stayops.pricing.approved", approved))
        assert answer.type == "airbnb.price.update_failed"
        assert says in answer.data["reason"]
        assert sim.prices == {}, "no night of the listing is applied"


def test_the_hostaway_simulator_answers_hostaway_requests_as_sync_hostaway_and_ignores_airbnb_ones() -> None:
    hostaway = SyncSimulator(clock=lambda: NOW, platform=Platform.HOSTAWAY)
    sync_request = auto.SyncRequested(org_id="o1", request_id="task-h", platform="hostaway",
                                      listing_ids=["l1"], requested_by="automation")
    answers = hostaway.handle(request("stayops.sync.requested", sync_request))

    assert {a.type.split(".")[0] for a in answers} == {"hostaway"}
    assert answers[-1].type == "hostaway.sync.completed"
    for answer in answers:
        parse_payload(answer)
        check_source(answer)  # published as /sync-hostaway, the owner of hostaway.*
        assert event_type(answer.type).topic == SYNC_HOSTAWAY
    airbnb = auto.SyncRequested(org_id="o1", request_id="task-a", platform="airbnb", listing_ids=["l1"],
                                requested_by="automation")
    assert hostaway.handle(request("stayops.sync.requested", airbnb)) == []

    listing = listing_of("o1", "l1")
    prices = [auto.PriceChange(listing_id="l1", date=dt.date(2026, 12, 1), price=listing.base_price,
                               currency="EUR"),
              auto.PriceChange(listing_id="l1", date=dt.date(2026, 12, 2), price=listing.max_price * 2,
                               currency="EUR")]
    approved = auto.PricingApproved(org_id="o1", request_id="task-p", platform="hostaway", listing_ids=["l1"],
                                    prices=prices[:1], approved_by="u-owner")
    [applied] = hostaway.handle(request("stayops.pricing.approved", approved))
    assert applied.type == "hostaway.price.updated"
    [refused] = hostaway.handle(request("stayops.pricing.approved", approved.model_copy(
        update={"request_id": "task-q", "prices": prices})))
    assert refused.type == "hostaway.price.update_failed"
    assert refused.data["reason"].startswith("Hostaway refused the calendar update")


def test_listing_profiles_give_a_listing_its_segment_tags_and_price_range(tmp_path: Path) -> None:
    profiles = tmp_path / "listings.json"
    write_listing_profiles(profiles, {"lux": ListingProfile("luxury", ("segment:luxury", "pool")),
                                      "cheap": ListingProfile("budget", ("segment:budget",))})
    sim = SyncSimulator(clock=lambda: NOW, listing_profiles=listing_profiles_file(profiles))
    sync_request = auto.SyncRequested(org_id="o1", request_id="task-s", platform="airbnb",
                                      listing_ids=["lux", "cheap", "plain"], requested_by="automation")
    listings = {a.data["listing_id"]: a.data for a in sim.handle(request("stayops.sync.requested", sync_request))
                if a.type == "airbnb.listing.synced"}

    assert (listings["lux"]["segment"], listings["lux"]["tags"]) == ("luxury", ["segment:luxury", "pool"])
    assert (listings["plain"]["segment"], listings["plain"]["tags"]) == (None, [])
    assert Decimal(listings["cheap"]["base_price"]) < 95 <= 260 <= Decimal(listings["lux"]["base_price"])
