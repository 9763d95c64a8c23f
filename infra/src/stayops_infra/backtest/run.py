"""`stayops backtest`: a simulated year per seed, our listings priced weekly by each
strategy — static prices, the baseline rules, and pricing v2 through the preview
API's contract — and the RevPAN, occupancy and ADR each earned."""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from stayops_infra.backtest.baseline import baseline_prices
from stayops_infra.backtest.market import Listing, Market, MarketParameters

# The preview API's contract: a request body in, a response body out (JSON-shaped).
Pricer = Callable[[dict[str, Any]], dict[str, Any]]

STRATEGIES = ("static", "rules", "v2")
REPRICE_EVERY_DAYS = 7
HORIZON_DAYS = 120
HISTORY_DAYS = 365
DAY_START = dt.time(9, 0)


@dataclass(frozen=True)
class Outcome:
    """What our listings earned over the measured year."""

    strategy: str
    revenue: float
    nights_sold: int
    nights_available: int
    bounds_breached: int

    @property
    def revpan(self) -> float:
        return self.revenue / self.nights_available

    @property
    def occupancy(self) -> float:
        return self.nights_sold / self.nights_available

    @property
    def adr(self) -> float:
        return self.revenue / self.nights_sold if self.nights_sold else 0.0


@dataclass(frozen=True)
class SeedResult:
    params: MarketParameters
    outcomes: dict[str, Outcome]

    def gain_pct(self, strategy: str, over: str) -> float:
        return (self.outcomes[strategy].revpan / self.outcomes[over].revpan - 1) * 100


def in_process_pricer() -> Pricer:
    """The preview endpoint's own function, without HTTP (the same request and answer)."""
    from agent_service.preview import PreviewRequest, preview_prices  # the service's code, not a copy

    def price(body: dict[str, Any]) -> dict[str, Any]:
        answer = preview_prices(PreviewRequest.model_validate(body), now=dt.datetime.now(dt.UTC))
        # Only what a backtest reads, without serialising every factor.
        return {"nights": [{"date": n.date.isoformat(), "recommended_price": n.recommended_price,
                            "min_stay": n.min_stay} for n in answer.nights]}

    return price


def http_pricer(url: str, token: str) -> Pricer:
    """POST /v1/pricing/preview on a running agent-service."""
    import httpx

    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def price(body: dict[str, Any]) -> dict[str, Any]:
        response = client.post("/v1/pricing/preview", json=body)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    return price


def scaled_pricer(pricer: Pricer, level: float) -> Pricer:
    """A DIAGNOSTIC, not a strategy: pricing v2's prices x `level`, clamped into the
    owner's [min, max]. It answers "what would one price level, chosen in hindsight
    for this seed, have earned?", so that a seed v2 misses can be told apart from a
    seed no price level would pass (a level that fits the simulator's guests is not
    one that fits markets: the level is not known in advance)."""
    if level <= 0:
        raise ValueError("level must be above 0")

    def price(body: dict[str, Any]) -> dict[str, Any]:
        low, high = float(body["listing"]["min_price"]), float(body["listing"]["max_price"])
        answer = pricer(body)
        nights = [{**night, "recommended_price": f"{_clamped(float(n_price) * level, low, high):.2f}"}
                  for night in answer["nights"] for n_price in [night["recommended_price"]]]
        return {**answer, "nights": nights}

    return price


def _clamped(price: float, low: float, high: float) -> float:
    return max(low, min(high, price))


def run_backtest(seeds: Iterable[int], pricer: Pricer, *, strategies: Iterable[str] = STRATEGIES,
                 overrides: dict[str, Any] | None = None,
                 progress: Callable[[str], None] = lambda _: None) -> list[SeedResult]:
    results = []
    for seed in seeds:
        params = MarketParameters.draw(seed)
        outcomes = {}
        for strategy in strategies:
            progress(f"seed {seed}: simulating a year priced by {strategy}")
            outcomes[strategy] = simulate(params, strategy, pricer, overrides)
        results.append(SeedResult(params, outcomes))
    return results


def simulate(params: MarketParameters, strategy: str, pricer: Pricer,
             overrides: dict[str, Any] | None = None) -> Outcome:
    market = Market(params)
    medians = _competitor_medians(market)
    requests = iter(market.requests)
    pending = next(requests, None)
    for day in range(market.days):
        if day % REPRICE_EVERY_DAYS == 0 and strategy != "static":
            for listing in (entry for entry in market.listings if entry.ours):
                _reprice(market, listing, day, strategy, pricer, medians, overrides)
        while pending is not None and pending.booked_on <= day:
            if pending.booked_on >= 0:
                market.serve(pending)
            pending = next(requests, None)
    return _outcome(market, strategy)


def _competitor_medians(market: Market) -> list[float]:
    nights = len(market.competitors[0].prices)
    return [statistics.median(c.prices[n] for c in market.competitors) for n in range(nights)]


def _reprice(market: Market, listing: Listing, day: int, strategy: str, pricer: Pricer,
             medians: list[float], overrides: dict[str, Any] | None) -> None:
    horizon = min(HORIZON_DAYS, len(listing.prices) - day)
    if strategy == "rules":
        nights = range(max(0, day - HISTORY_DAYS), day + horizon)
        prices, min_stays = baseline_prices(
            listing, day=day, horizon=horizon,
            month_of={n: market.date_of(n).month for n in nights},
            medians={n: medians[n] for n in nights},
            occupancy={n: market.booked_count[n] / len(market.competitors) for n in range(day, day + horizon)},
            weekday_of={n: market.date_of(n).weekday() for n in nights},
        )
        listing.reprice(day, prices, min_stays)
        return
    answer = pricer(preview_body(market, listing, day, horizon, medians, overrides))
    by_night = {market.index_of(dt.date.fromisoformat(n["date"])): n for n in answer["nights"]}
    prices = [float(by_night[n]["recommended_price"]) if n in by_night else listing.prices[n]
              for n in range(day, day + horizon)]
    min_stays = [int(by_night[n]["min_stay"]) if n in by_night else listing.min_stays[n]
                 for n in range(day, day + horizon)]
    listing.reprice(day, prices, min_stays)


def preview_body(market: Market, listing: Listing, day: int, horizon: int, medians: list[float],
                 overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The preview request a weekly run sends for one listing: what the market data
    and the listing's calendar show on `day`."""
    today = market.date_of(day)
    competitors = len(market.competitors)
    market_nights = []
    for n in range(max(0, day - HISTORY_DAYS), day + horizon):
        _, event = market.event(n)
        market_nights.append({
            "date": market.date_of(n).isoformat(), "median_price": f"{medians[n]:.2f}",
            "occupancy": round(market.booked_count[n] / competitors, 4), "sample_size": competitors,
            "local_event": event,
        })
    bookings = [
        {"check_in": market.date_of(b.first).isoformat(), "check_out": market.date_of(b.first + b.nights).isoformat(),
         "booked_at": dt.datetime.combine(market.date_of(b.booked_on), DAY_START, dt.UTC).isoformat(),
         "nightly_rate": f"{b.nightly_rate:.2f}"}
        for b in market.bookings
        if b.listing_id == listing.listing_id and b.first + b.nights > day - HISTORY_DAYS
    ]
    return {
        "listing": {"listing_id": listing.listing_id, "base_price": f"{listing.base_price:.2f}",
                    "min_price": f"{listing.min_price:.2f}", "max_price": f"{listing.max_price:.2f}",
                    "min_stay": listing.min_stay, "currency": market.params.currency, "timezone": "UTC"},
        "bookings": bookings,
        "current_prices": [{"date": market.date_of(n).isoformat(), "price": f"{listing.prices[n]:.2f}"}
                           for n in range(day, day + horizon)],
        "market": market_nights,
        "today": today.isoformat(),
        "horizon_days": horizon,
        "rules": overrides,
    }


def _outcome(market: Market, strategy: str) -> Outcome:
    first, last = market.warm_up, market.days
    ours = {listing.listing_id: listing for listing in market.listings if listing.ours}
    revenue, sold, breached = 0.0, 0, 0
    for booking in market.bookings:
        listing = ours.get(booking.listing_id)
        if listing is None:
            continue
        for night in range(booking.first, booking.first + booking.nights):
            price = listing.prices[night]
            if not listing.min_price - 0.005 <= price <= listing.max_price + 0.005:
                breached += 1
            if first <= night < last:
                revenue += booking.nightly_rate
                sold += 1
    return Outcome(strategy, revenue, sold, len(ours) * market.params.year_days, breached)
