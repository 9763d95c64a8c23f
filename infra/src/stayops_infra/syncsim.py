"""The sync-service simulators (sync-airbnb, and sync-hostaway for Hostaway
listings): seeded, realistic listings, reservations and market data; each answers the
`stayops.sync.requested` of its platform with listing, reservation and market-rate
events and `<platform>.sync.completed`; applies the `stayops.pricing.approved` of its
platform and answers `<platform>.price.updated` per listing, or
`<platform>.price.update_failed` for listings it is told to fail (always, or their
next n updates) or whose prices the platform refuses; a request delivered again gets
the same answer, not a second update.

Everything it publishes carries the request's `correlationid`, and its `causationid`
is the request's id. Each platform's simulator consumes as its own group
(`sync-simulator` for Airbnb, `sync-hostaway-simulator` for Hostaway, so both see
every request) and commits a record's offset after its answers are acknowledged (at
least once: consumers dedupe). A listing's segment and tags (a property manager's
luxury / standard / budget) come from a listing profiles file the seed writes."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError

from stayops_kit.settings import FETCH_MAX_WAIT_MS, BrokerKind
from stayops_schemas.binding import from_kafka, to_kafka
from stayops_schemas.canonical import AirbnbMessage
from stayops_schemas.catalog import AUTOMATIONS, event_type, sync_event_type
from stayops_schemas.envelope import Envelope
from stayops_schemas.errors import SchemaError
from stayops_schemas.events import automations as auto
from stayops_schemas.events import sync
from stayops_schemas.events.base import Payload
from stayops_schemas.events.sync import Platform
from stayops_schemas.ownership import SYNC_AIRBNB, SYNC_HOSTAWAY
from stayops_schemas.subscriptions import SYNC_HOSTAWAY_SIMULATOR, SYNC_SIMULATOR

log = logging.getLogger(__name__)

GROUP = SYNC_SIMULATOR
SOURCE = SYNC_AIRBNB
# Each platform's simulator: its consumer group and the source it publishes as.
GROUPS: Mapping[Platform, str] = {Platform.AIRBNB: GROUP, Platform.HOSTAWAY: SYNC_HOSTAWAY_SIMULATOR}
SOURCES: Mapping[Platform, str] = {Platform.AIRBNB: SYNC_AIRBNB, Platform.HOSTAWAY: SYNC_HOSTAWAY}
PLATFORM_NAMES: Mapping[Platform, str] = {Platform.AIRBNB: "Airbnb", Platform.HOSTAWAY: "Hostaway"}
CURRENCY = "EUR"
HORIZON_DAYS = 90
CITIES = ("Lisbon", "Porto", "Barcelona", "Nice", "Seville", "Valencia")
# Each city's IANA zone: a listing's local times (check-in, cleaning) are planned in it.
CITY_ZONES = {"Lisbon": "Europe/Lisbon", "Porto": "Europe/Lisbon", "Barcelona": "Europe/Madrid",
              "Nice": "Europe/Paris", "Seville": "Europe/Madrid", "Valencia": "Europe/Madrid"}
KINDS = ("Seaside loft", "Old-town flat", "Garden studio", "Rooftop apartment", "Family house")
# Month factors of a southern-European coastal market (July and August peak).
SEASON = {1: 0.80, 2: 0.82, 3: 0.90, 4: 1.00, 5: 1.05, 6: 1.18, 7: 1.32, 8: 1.35, 9: 1.12, 10: 0.98,
          11: 0.85, 12: 0.95}
EVENTS = ("Jazz festival", "Football derby", "Marathon", "Wine fair")
# A segment's nightly base price range (EUR) and the kinds of place in it; a listing
# without a segment gets the plain range and kinds.
SEGMENT_PRICES = {"luxury": (260, 480), "standard": (110, 200), "budget": (50, 95)}
SEGMENT_KINDS = {"luxury": ("Penthouse", "Villa with pool", "Designer loft"),
                 "standard": KINDS, "budget": ("Studio", "Room with a view", "Compact flat")}


@dataclass(frozen=True)
class ListingProfile:
    """What the owner says about a listing on the platform beyond the world the
    simulator draws for it: its segment and tags."""

    segment: str | None = None
    tags: tuple[str, ...] = ()


def _money(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _rng(*parts: str) -> random.Random:
    """The same listing always gets the same world."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True)
class SimListing:
    listing_id: str
    org_id: str
    title: str
    city: str
    capacity: int
    base_price: Decimal
    min_price: Decimal
    max_price: Decimal
    segment: str | None = None
    tags: tuple[str, ...] = ()


def listing_of(org_id: str, listing_id: str, profile: ListingProfile | None = None) -> SimListing:
    rng = _rng(org_id, listing_id, "listing")
    profile = profile or ListingProfile()
    low, high = SEGMENT_PRICES.get(profile.segment or "", (80, 220))
    base = _money(rng.randrange(low, high))
    return SimListing(
        listing_id=listing_id,
        org_id=org_id,
        title=f"{rng.choice(SEGMENT_KINDS.get(profile.segment or '', KINDS))} {rng.randrange(1, 40)}",
        city=rng.choice(CITIES),
        capacity=rng.randrange(2, 7),
        base_price=base,
        min_price=_money(base * Decimal("0.6")),
        max_price=_money(base * Decimal("1.8")),
        segment=profile.segment,
        tags=profile.tags,
    )


def listing_profiles_file(path: Path) -> Callable[[], dict[str, ListingProfile]]:
    """Listing profiles by listing id from a JSON file (`{"<id>": {"segment": "luxury",
    "tags": ["sea view"]}}`), read at each request; no file: none."""

    def read() -> dict[str, ListingProfile]:
        if not path.exists():
            return {}
        raw: dict[str, dict[str, Any]] = json.loads(path.read_text())
        return {listing_id: ListingProfile(segment=entry.get("segment") or None,
                                           tags=tuple(str(tag) for tag in entry.get("tags") or ()))
                for listing_id, entry in raw.items()}

    return read


def write_listing_profiles(path: Path, profiles: Mapping[str, ListingProfile]) -> None:
    """Add (or replace) listing profiles in the file `listing_profiles_file` reads."""
    current: dict[str, object] = json.loads(path.read_text()) if path.exists() else {}
    current.update({listing_id: {"segment": p.segment, "tags": list(p.tags)} for listing_id, p in profiles.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(current, indent=2))
    partial.replace(path)


def guest_message(*, message_id: str, thread_id: str, listing_id: str, text: str,
                  confirmation_code: str | None = None, first_name: str = "Simulated guest",
                  role: str = "guest", created_at: dt.datetime) -> AirbnbMessage:
    """A message of an Airbnb thread as Airbnb's messaging API sends it."""
    return AirbnbMessage.model_validate({
        "id": message_id, "thread_id": thread_id, "listing_id": listing_id,
        "confirmation_code": confirmation_code, "sender": {"role": role, "first_name": first_name},
        "message": text, "created_at": created_at.isoformat(), "attachments": [],
    })


def refused_nights(listing: SimListing, nights: list[auto.PriceChange]) -> list[str]:
    """The nights a platform would refuse: outside the listing's min/max, or in a
    currency other than the listing's."""
    refused = []
    for night in nights:
        if night.currency != CURRENCY:
            refused.append(f"{night.date} is priced in {night.currency}; the listing is priced in {CURRENCY}")
        elif not listing.min_price <= night.price <= listing.max_price:
            refused.append(f"{night.date} at {night.price} is outside the listing's "
                           f"[{listing.min_price}, {listing.max_price}]")
    return refused


def market_rates(listing: SimListing, today: dt.date) -> list[sync.MarketRate]:
    rng = _rng(listing.org_id, listing.listing_id, "market", today.isoformat())
    event_nights = {today + dt.timedelta(days=rng.randrange(5, HORIZON_DAYS)) for _ in range(2)}
    rates = []
    for offset in range(HORIZON_DAYS):
        night = today + dt.timedelta(days=offset)
        weekend = 1.15 if night.weekday() in (4, 5) else 1.0
        event = night in event_nights
        median = float(listing.base_price) * SEASON[night.month] * weekend * (1.25 if event else 1.0)
        occupancy = min(0.98, max(0.2, 0.55 * SEASON[night.month] * weekend + rng.uniform(-0.1, 0.1)))
        rates.append(sync.MarketRate(
            date=night, median_price=_money(median * rng.uniform(0.92, 1.08)),
            occupancy=round(occupancy, 3), sample_size=rng.randrange(20, 120),
            local_event=rng.choice(EVENTS) if event else None,
        ))
    return rates


def reservations(listing: SimListing, today: dt.date, now: dt.datetime) -> list[sync.ReservationCreated]:
    """Stays of 2-5 nights, denser in the next weeks and on weekends."""
    rng = _rng(listing.org_id, listing.listing_id, "reservations", today.isoformat())
    stays = []
    night = today
    end = today + dt.timedelta(days=HORIZON_DAYS)
    while night < end:
        lead = (night - today).days
        booked_probability = 0.65 if lead < 14 else 0.45 if lead < 45 else 0.2
        if night.weekday() in (4, 5):
            booked_probability += 0.15
        if rng.random() < booked_probability:
            length = rng.randrange(2, 6)
            check_out = min(end, night + dt.timedelta(days=length))
            rate = _money(float(listing.base_price) * SEASON[night.month] * rng.uniform(0.9, 1.1))
            nights = (check_out - night).days
            stays.append(sync.ReservationCreated(
                reservation_id=f"res-{listing.listing_id[:8]}-{night.isoformat()}",
                listing_id=listing.listing_id, org_id=listing.org_id,
                status=sync.ReservationStatus.CONFIRMED, check_in=night, check_out=check_out,
                guests=rng.randrange(1, listing.capacity + 1), nightly_rate=rate,
                total=_money(rate * nights), currency=CURRENCY,
                booked_at=now - dt.timedelta(days=rng.randrange(1, 60)),
            ))
            night = check_out
        else:
            night += dt.timedelta(days=1)
    return stays


@dataclass
class SyncSimulator:
    """Answers its platform's requests; `handle` is pure of Kafka: it returns the
    envelopes to publish. `listing_profiles` gives listings their segment and tags."""

    fail_listings: Callable[[], set[str]] = set
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    prices: dict[tuple[str, str], dict[dt.date, Decimal]] = field(default_factory=dict)
    platform: Platform = Platform.AIRBNB
    listing_profiles: Callable[[], Mapping[str, ListingProfile]] = dict
    # Listings whose next n price updates fail (then succeed), by listing id.
    fail_counts: Callable[[], Mapping[str, int]] = dict
    _failed: dict[str, int] = field(default_factory=dict)
    # Like the platform, a calendar update is applied once per request and listing: a
    # request delivered again gets the same answer (the same event), not a second update.
    _answered: dict[tuple[str, str], Envelope] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return SOURCES[self.platform]

    @property
    def group(self) -> str:
        return GROUPS[self.platform]

    def handle(self, request: Envelope) -> list[Envelope]:
        if request.type == "stayops.sync.requested":
            payload = auto.SyncRequested.model_validate(request.data)
            return self._sync(request, payload) if payload.platform == self.platform else []
        if request.type == "stayops.pricing.approved":
            approved = auto.PricingApproved.model_validate(request.data)
            return self._apply_prices(request, approved) if approved.platform == self.platform else []
        return []

    def _listing(self, org_id: str, listing_id: str) -> SimListing:
        return listing_of(org_id, listing_id, self.listing_profiles().get(listing_id))

    def _sync(self, request: Envelope, payload: auto.SyncRequested) -> list[Envelope]:
        now = self.clock()
        today = now.date()
        out: list[Envelope] = []
        counts = {"listings": 0, "reservations": 0, "market_rates": 0}
        for listing_id in payload.listing_ids:
            listing = self._listing(payload.org_id, listing_id)
            out.append(self._event(request, "listing.synced", listing_id, sync.ListingSynced(
                listing_id=listing_id, org_id=payload.org_id, title=listing.title, city=listing.city,
                capacity=listing.capacity, base_price=listing.base_price, min_price=listing.min_price,
                max_price=listing.max_price, currency=CURRENCY, timezone=CITY_ZONES[listing.city],
                synced_at=now, segment=listing.segment, tags=list(listing.tags),
            )))
            for stay in reservations(listing, today, now):
                out.append(self._event(request, "reservation.created", listing_id, stay))
                counts["reservations"] += 1
            out.append(self._event(request, "market.rates.synced", listing_id, sync.MarketRatesSynced(
                org_id=payload.org_id, listing_id=listing_id, currency=CURRENCY,
                rates=market_rates(listing, today), synced_at=now,
            )))
            counts["listings"] += 1
            counts["market_rates"] += HORIZON_DAYS
        out.append(self._event(request, "sync.completed", payload.request_id, sync.SyncCompleted(
            request_id=payload.request_id, org_id=payload.org_id, listing_ids=payload.listing_ids,
            counts=sync.SyncCounts(**counts), completed_at=now,
        )))
        return out

    def _apply_prices(self, request: Envelope, approved: auto.PricingApproved) -> list[Envelope]:
        out: list[Envelope] = []
        for listing_id in approved.listing_ids:
            key = (approved.request_id, listing_id)
            if key not in self._answered:
                self._answered[key] = self._apply_listing(request, approved, listing_id)
            out.append(self._answered[key])
        return out

    def _fails(self, listing_id: str) -> bool:
        if listing_id in self.fail_listings():
            return True
        times = self.fail_counts().get(listing_id, 0)
        if self._failed.get(listing_id, 0) < times:
            self._failed[listing_id] = self._failed.get(listing_id, 0) + 1
            return True
        return False

    def _apply_listing(self, request: Envelope, approved: auto.PricingApproved, listing_id: str) -> Envelope:
        name = PLATFORM_NAMES[self.platform]
        if self._fails(listing_id):
            return self._event(request, "price.update_failed", listing_id, sync.PriceUpdateFailed(
                request_id=approved.request_id, listing_id=listing_id, org_id=approved.org_id,
                reason=f"{name} refused the calendar update (simulated failure)",
            ))
        nights = [p for p in approved.prices if p.listing_id == listing_id]
        refused = refused_nights(self._listing(approved.org_id, listing_id), nights)
        if refused:
            # Like the platform: the whole calendar update of the listing is refused.
            return self._event(request, "price.update_failed", listing_id, sync.PriceUpdateFailed(
                request_id=approved.request_id, listing_id=listing_id, org_id=approved.org_id,
                reason=f"{name} refused the calendar update: " + "; ".join(refused),
            ))
        calendar = self.prices.setdefault((approved.org_id, listing_id), {})
        for price in nights:
            calendar[price.date] = price.price
        return self._event(request, "price.updated", listing_id, sync.PriceUpdated(
            request_id=approved.request_id, listing_id=listing_id, org_id=approved.org_id,
            prices=[sync.NightlyPrice(date=p.date, price=p.price, currency=p.currency) for p in nights]
            or [sync.NightlyPrice(date=self.clock().date(), price=Decimal("0.01"), currency=CURRENCY)],
            applied_at=self.clock(),
        ))

    def _event(self, request: Envelope, name: str, key: str, payload: Payload) -> Envelope:
        """`name` is the platform's event without its prefix (`listing.synced`)."""
        return sync_event_type(self.platform, name).envelope(
            payload, id=str(uuid.uuid4()), source=self.source, partitionkey=key, time=self.clock(),
            correlationid=request.correlationid, causationid=request.id,
        )


def fail_list_file(path: Path) -> Callable[[], set[str]]:
    """Listings whose price updates fail: one id a line in `path`, read at each request
    (a line `<id> <n>` fails only its next n updates: `fail_count_file`)."""

    def read() -> set[str]:
        if not path.exists():
            return set()
        return {line.strip() for line in path.read_text().splitlines() if len(line.split()) == 1}

    return read


def fail_count_file(path: Path) -> Callable[[], dict[str, int]]:
    """Listings whose next n price updates fail: lines `<id> <n>` in `path`."""

    def read() -> dict[str, int]:
        if not path.exists():
            return {}
        pairs = [line.split() for line in path.read_text().splitlines()]
        return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}

    return read


def platform_simulators(directory: Path) -> list[SyncSimulator]:
    """sync-airbnb and sync-hostaway, each refusing the price updates of the listings
    in `<directory>/fail-listings` and profiling listings from `<directory>/listings.json`."""
    return [SyncSimulator(fail_listings=fail_list_file(directory / "fail-listings"),
                          fail_counts=fail_count_file(directory / "fail-listings"),
                          listing_profiles=listing_profiles_file(directory / "listings.json"), platform=platform)
            for platform in Platform]


async def run_all(bootstrap: str, simulators: list[SyncSimulator], stop: asyncio.Event,
                  started: asyncio.Event | None = None, *,
                  fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS["kafka"]) -> None:
    """Run several simulators until `stop`; `started` is set once all consume.
    `fetch_max_wait_ms` is the broker's (`stayops_kit.settings.FETCH_MAX_WAIT_MS`)."""
    ready = [asyncio.Event() for _ in simulators]
    tasks = [asyncio.create_task(run(bootstrap, simulator, stop, event, fetch_max_wait_ms=fetch_max_wait_ms))
             for simulator, event in zip(simulators, ready, strict=True)]
    all_ready: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*(event.wait() for event in ready)))
    try:
        done, _ = await asyncio.wait([all_ready, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if started is not None and all_ready in done:
            started.set()
        await asyncio.gather(*tasks)
    finally:
        all_ready.cancel()
        for task in tasks:
            task.cancel()


async def run(bootstrap: str, simulator: SyncSimulator, stop: asyncio.Event,
              started: asyncio.Event | None = None, *,
              fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS["kafka"]) -> None:
    consumer = AIOKafkaConsumer(AUTOMATIONS, bootstrap_servers=bootstrap, group_id=simulator.group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=fetch_max_wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                client_id=simulator.group)
    await producer.start()
    await consumer.start()
    if started is not None:
        started.set()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=100)
            for records in batch.values():
                await _publish(producer, _answers(simulator, records))
            if batch:
                try:
                    await consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batch.items()})
                except CommitFailedError as exc:
                    log.warning("sync simulator: commit refused after a rebalance: %s", exc)
    finally:
        await consumer.stop()
        await producer.stop()


def _answers(simulator: SyncSimulator, records: Iterable[object]) -> list[Envelope]:
    out: list[Envelope] = []
    for record in records:
        try:
            request = from_kafka(record.key, record.value, list(record.headers))  # type: ignore[attr-defined]
            out.extend(simulator.handle(request))
        except (SchemaError, ValueError) as exc:
            log.warning("sync simulator: ignoring an unreadable request: %s", exc)
    return out


async def _publish(producer: AIOKafkaProducer, envelopes: list[Envelope]) -> None:
    futures = []
    for envelope in envelopes:
        record = to_kafka(envelope)
        futures.append(await producer.send(event_type(envelope.type).topic, record.value, key=record.key,
                                           headers=record.headers))
    await asyncio.gather(*futures)


def main() -> None:
    """`python -m stayops_infra.syncsim`: both platforms' simulators until SIGTERM/SIGINT."""
    import os
    import signal

    from stayops_infra.config import StackConfig

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    config = StackConfig.from_env()
    bootstrap = os.environ.get("STAYOPS_KAFKA_BOOTSTRAP_SERVERS", config.kafka_bootstrap)
    broker: BrokerKind = "tansu" if os.environ.get("STAYOPS_KAFKA_BROKER") == "tansu" else "kafka"
    simulators = platform_simulators(config.data_dir / "syncsim")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_all(bootstrap, simulators, stop, fetch_max_wait_ms=FETCH_MAX_WAIT_MS[broker])

    asyncio.run(serve())


if __name__ == "__main__":
    main()
