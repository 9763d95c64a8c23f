"""A short-term-rental market simulator: comparable listings and a few of ours,
guests who arrive on a booking curve and choose among listings by price and
quality, over a simulated year. Its parameters are drawn per seed over wide ranges
(market size, level, seasonality shape and hemisphere, weekday pattern, events,
booking curve and last-minute share, length of stay, price sensitivity) so that a
pricing strategy is judged on many kinds of market, not one.

The model (see infra/README.md, "Backtest"):
- Demand: booking requests per check-in date = a rate x season(date) x weekday x
  event; each has a length of stay, a lead time (a booking curve: exponential, plus
  a last-minute share within 7 days) and a budget (the market's level, higher in
  season and on event nights, times a lognormal spread).
- Choice: a guest sees a random page of the listings free for the whole stay whose
  minimum stay admits it, and picks one with the multinomial logit of
  quality - sensitivity x ln(average price / budget), or books nothing.
- Comparable listings price from their own base: some static, the others following
  the season and weekends partly, some with a last-minute discount.
- Our listings are priced by the strategy under test; the same seed gives every
  strategy the same guests (common random numbers)."""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field

YEAR_DAYS = 365
WARM_UP_DAYS = 200  # simulated before the measured year, so calendars and history are realistic
MAX_LEAD_DAYS = 300
PAGE_SIZE = 25  # listings a guest looks at


@dataclass(frozen=True)
class MarketParameters:
    """One market, drawn from a seed."""

    seed: int
    start: dt.date  # the first measured night
    competitors: int
    ours: int
    level: float  # the market's typical nightly price
    currency: str
    season_amplitude: float
    season_peaks: tuple[int, ...]  # day of year of each peak (one or two)
    weekend_uplift: float  # demand on Friday and Saturday nights against other nights (may be < 0)
    events: tuple[tuple[int, int, float, bool], ...]  # (first day, nights, demand x, announced)
    occupancy_target: float
    mean_lead_days: float
    last_minute_share: float
    mean_stay_nights: float
    sensitivity: float  # logit weight of ln(price / budget)
    budget_follows_season: float  # how much of the demand swing guests accept to pay
    dynamic_share: float  # competitors who follow the season
    default_min_stay: int
    year_days: int = YEAR_DAYS  # smaller in tests
    warm_up_days: int = WARM_UP_DAYS

    @classmethod
    def draw(cls, seed: int) -> MarketParameters:
        rng = random.Random(seed * 7919 + 17)
        hemisphere_peak = rng.choice((196, 15))  # mid-July (north) or mid-January (south)
        peaks = (hemisphere_peak,) if rng.random() < 0.6 else (hemisphere_peak, (hemisphere_peak + 182) % 365)
        events = []
        for _ in range(rng.randint(3, 14)):
            events.append((rng.randrange(-WARM_UP_DAYS, YEAR_DAYS), rng.randint(1, 4), rng.uniform(1.3, 2.6),
                           rng.random() < 0.6))
        return cls(
            seed=seed,
            start=dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(0, 365)),
            competitors=rng.randint(25, 140),
            ours=rng.randint(4, 8),
            level=round(rng.uniform(45, 320), 2),
            currency=rng.choice(("EUR", "USD", "GBP", "AUD", "BRL")),
            season_amplitude=rng.uniform(0.1, 0.55),
            season_peaks=peaks,
            weekend_uplift=rng.uniform(-0.1, 0.45),
            events=tuple(events),
            occupancy_target=rng.uniform(0.45, 0.85),
            mean_lead_days=rng.uniform(10, 70),
            last_minute_share=rng.uniform(0.05, 0.4),
            mean_stay_nights=rng.uniform(1.6, 5.5),
            sensitivity=rng.uniform(1.5, 6.0),
            budget_follows_season=rng.uniform(0.2, 0.9),
            dynamic_share=rng.uniform(0.1, 0.8),
            default_min_stay=rng.choice((1, 2, 2, 3)),
        )


@dataclass
class Listing:
    listing_id: str
    quality: float
    base_price: float
    min_price: float
    max_price: float
    min_stay: int
    ours: bool
    # A competitor's pricing style.
    follows_season: float = 0.0
    weekend_premium: float = 0.0
    last_minute_pct: float = 0.0
    # Calendar: one bit per simulated night (index 0 = the first warm-up night).
    booked: int = 0
    prices: list[float] = field(default_factory=list)
    min_stays: list[int] = field(default_factory=list)
    prefix: list[float] = field(default_factory=list)

    def reprice(self, first: int, prices: list[float], min_stays: list[int]) -> None:
        self.prices[first:first + len(prices)] = prices
        self.min_stays[first:first + len(min_stays)] = min_stays
        self._sum_prices()

    def _sum_prices(self) -> None:
        total = 0.0
        self.prefix = [0.0]
        for price in self.prices:
            total += price
            self.prefix.append(total)


@dataclass(frozen=True)
class Booking:
    listing_id: str
    first: int  # night index
    nights: int
    nightly_rate: float
    booked_on: int  # day index


@dataclass(frozen=True)
class Request:
    check_in: int
    nights: int
    booked_on: int
    budget: float
    rng_seed: int


class Market:
    """The market's state while a year is simulated; `Market.new` builds it from
    parameters (the same parameters, the same listings and guests)."""

    def __init__(self, params: MarketParameters) -> None:
        self.params = params
        self.warm_up = params.warm_up_days
        self.days = params.warm_up_days + params.year_days
        rng = random.Random(params.seed)
        total = self.days + MAX_LEAD_DAYS
        self.dates = [params.start + dt.timedelta(days=i - self.warm_up) for i in range(total)]
        self.events = [self._event(i) for i in range(total)]
        self.seasons = [self._season(i) for i in range(total)]
        self.demand = [self._demand(i) for i in range(total)]
        self.listings: list[Listing] = []
        for i in range(params.competitors):
            self.listings.append(self._competitor(rng, i))
        for i in range(params.ours):
            self.listings.append(self._ours(rng, i))
        self.by_id = {listing.listing_id: listing for listing in self.listings}
        self.competitors = [listing for listing in self.listings if not listing.ours]
        self.bookings: list[Booking] = []
        self.booked_count = [0] * (self.days + MAX_LEAD_DAYS)  # competitors booked per night
        self.requests = self._requests(rng)

    # --- the market's shape ---------------------------------------------------------

    def date_of(self, index: int) -> dt.date:
        if 0 <= index < len(self.dates):
            return self.dates[index]
        return self.params.start + dt.timedelta(days=index - self.warm_up)

    def index_of(self, date: dt.date) -> int:
        return (date - self.params.start).days + self.warm_up

    def season(self, index: int) -> float:
        return self.seasons[index]

    def event(self, index: int) -> tuple[float, str | None]:
        return self.events[index]

    def _season(self, index: int) -> float:
        p = self.params
        doy = self.date_of(index).timetuple().tm_yday
        wave = max(math.cos(2 * math.pi * (doy - peak) / 365) for peak in p.season_peaks)
        return 1 + p.season_amplitude * wave

    def _event(self, index: int) -> tuple[float, str | None]:
        day = index - self.warm_up
        for first, nights, lift, announced in self.params.events:
            if first <= day < first + nights:
                return lift, f"event {first}" if announced else None
        return 1.0, None

    def _weekday(self, index: int) -> float:
        return 1 + self.params.weekend_uplift if self.date_of(index).weekday() in (4, 5) else 1.0

    def _demand(self, index: int) -> float:
        return self.season(index) * self._weekday(index) * self.event(index)[0]

    # --- listings -------------------------------------------------------------------

    def _competitor(self, rng: random.Random, i: int) -> Listing:
        p = self.params
        quality = rng.gauss(0, 0.35)
        base = p.level * math.exp(0.45 * quality + rng.gauss(0, 0.12))
        listing = Listing(
            listing_id=f"c-{i}", quality=quality, base_price=base, min_price=base * 0.6, max_price=base * 2.5,
            min_stay=rng.choice((1, 1, 2, 2, 3)), ours=False,
            follows_season=rng.uniform(0.3, 1.0) if rng.random() < p.dynamic_share else 0.0,
            weekend_premium=rng.uniform(0.0, 0.25) if rng.random() < 0.5 else 0.0,
            last_minute_pct=rng.uniform(0.05, 0.25) if rng.random() < 0.3 else 0.0,
        )
        total = self.days + MAX_LEAD_DAYS
        listing.prices = [self._competitor_price(listing, n) for n in range(total)]
        listing.min_stays = [listing.min_stay] * total
        listing._sum_prices()
        return listing

    def _competitor_price(self, listing: Listing, index: int) -> float:
        demand_swing = self.season(index) * self.event(index)[0] - 1
        weekend = listing.weekend_premium if self.date_of(index).weekday() in (4, 5) else 0.0
        return round(listing.base_price * (1 + listing.follows_season * demand_swing) * (1 + weekend), 2)

    def _ours(self, rng: random.Random, i: int) -> Listing:
        p = self.params
        quality = rng.gauss(0, 0.35)
        # The owner's base is their guess of a fair price for the listing's quality.
        base = round(p.level * math.exp(0.45 * quality + rng.gauss(0, 0.12)), 2)
        total = self.days + MAX_LEAD_DAYS
        return Listing(
            listing_id=f"ours-{i}", quality=quality, base_price=base,
            min_price=round(base * rng.uniform(0.45, 0.75), 2), max_price=round(base * rng.uniform(1.5, 3.0), 2),
            min_stay=p.default_min_stay, ours=True,
            prices=[base] * total, min_stays=[p.default_min_stay] * total, prefix=[base * n for n in range(total + 1)],
        )

    # --- guests ---------------------------------------------------------------------

    def _requests(self, rng: random.Random) -> list[Request]:
        p = self.params
        total_units = len(self.listings)
        # Enough requests that the market, at typical prices, books about its target.
        per_night = total_units * p.occupancy_target / p.mean_stay_nights * 1.6
        found: list[Request] = []
        for check_in in range(self.days + 60):
            lam = per_night * self.demand[check_in] / (1 + p.season_amplitude * 0.3)
            for _ in range(_poisson(rng, lam)):
                nights = min(14, 1 + _poisson(rng, p.mean_stay_nights - 1))
                if rng.random() < p.last_minute_share:
                    lead = rng.randint(0, 7)
                else:
                    lead = min(MAX_LEAD_DAYS - 1, int(rng.expovariate(1 / p.mean_lead_days)))
                swing = self.season(check_in) * self.event(check_in)[0] - 1
                budget = p.level * (1 + p.budget_follows_season * swing) * math.exp(rng.gauss(0, 0.3))
                found.append(Request(check_in, nights, check_in - lead, budget, rng.getrandbits(32)))
        found.sort(key=lambda r: (r.booked_on, r.rng_seed))
        return found

    def serve(self, request: Request) -> Booking | None:
        """The guest's choice among the listings free for the stay (or none)."""
        first, nights = request.check_in, request.nights
        if first < 0 or first + nights > len(self.listings[0].prices):
            return None
        mask = ((1 << nights) - 1) << first
        rng = random.Random(request.rng_seed)
        order = rng.sample(range(len(self.listings)), min(len(self.listings), 3 * PAGE_SIZE))
        page: list[tuple[Listing, float]] = []
        for i in order:
            listing = self.listings[i]
            if listing.booked & mask or listing.min_stays[first] > nights:
                continue
            average = (listing.prefix[first + nights] - listing.prefix[first]) / nights
            if listing.last_minute_pct and first - request.booked_on <= 7:
                average *= 1 - listing.last_minute_pct
            page.append((listing, average))
            if len(page) == PAGE_SIZE:
                break
        if not page:
            return None
        sensitivity = self.params.sensitivity
        weights = [math.exp(listing.quality - sensitivity * math.log(price / request.budget))
                   for listing, price in page]
        outside = PAGE_SIZE * 0.35
        pick = rng.random() * (sum(weights) + outside)
        for (listing, price), weight in zip(page, weights, strict=True):
            pick -= weight
            if pick < 0:
                listing.booked |= mask
                booking = Booking(listing.listing_id, first, nights, round(price, 2), request.booked_on)
                self.bookings.append(booking)
                if not listing.ours:
                    for n in range(first, first + nights):
                        self.booked_count[n] += 1
                return booking
        return None


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, product = math.exp(-lam), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k
