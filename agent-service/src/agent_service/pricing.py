"""The AI Revenue Manager's skills: nightly price recommendations and the review of
how the changed nights performed. Pure: no I/O, no clock — "today" is passed in.

A night's recommended price is the listing's base price moved by the sum of its
factors' effects (each in percent, each reported even when it is 0), then clamped
into the owner's [min_price, max_price]. Starting from the base price rather than
the current one keeps weekly runs from compounding the same effect week after week.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")

# Occupancy against the market: percent of price per unit of occupancy gap, and its cap.
OCCUPANCY_WEIGHT_PCT = 40.0
OCCUPANCY_CAP_PCT = 12.0
OCCUPANCY_WINDOW_NIGHTS = 3  # nights either side of the night priced
# Booking pace: nights booked in the last 14 days against the 14 days before.
PACE_WINDOW_DAYS = 14
PACE_CAP_PCT = 5.0
# Lead time: an empty night a few days out is unlikely to sell at full price; a night
# far out can wait for a guest who pays more.
LAST_MINUTE_DAYS = 3
LAST_MINUTE_PCT = {0: -15.0, 1: -15.0, 2: -10.0, 3: -10.0}
FAR_OUT_DAYS = 60
FAR_OUT_PCT = 5.0
WEEKEND_PCT = 10.0  # the nights of Friday and Saturday
WEEKEND_NIGHTS = {4: "Friday", 5: "Saturday"}
# Month factors of a northern-hemisphere city market (summer and year-end up).
SEASON_PCT = {1: -10.0, 2: -8.0, 3: -3.0, 4: 0.0, 5: 3.0, 6: 8.0,
              7: 12.0, 8: 12.0, 9: 5.0, 10: 0.0, 11: -8.0, 12: 4.0}
LOCAL_EVENT_PCT = 15.0
# Confidence: what lowers it, from a start that is never certainty.
BASE_CONFIDENCE = 0.9
NO_MARKET_RATE_PENALTY = 0.3
SMALL_SAMPLE_SIZE = 5
SMALL_SAMPLE_PENALTY = 0.1
FAR_OUT_PENALTY = 0.1
NO_CURRENT_PRICE_PENALTY = 0.05
# Expected occupancy of a night the market says nothing about.
DEFAULT_EXPECTED_OCCUPANCY = 0.6

FACTOR_NAMES = ("occupancy", "pace", "lead_time", "day_of_week", "season", "local_event", "bounds")


@dataclass(frozen=True)
class MarketNight:
    """What comparable listings did on one night."""

    median_price: Decimal
    occupancy: float
    sample_size: int | None = None
    local_event: str | None = None


@dataclass(frozen=True)
class Stay:
    """A booking that holds the listing's calendar (pending or confirmed), nights
    [check_in, check_out)."""

    check_in: dt.date
    check_out: dt.date
    booked_at: dt.datetime

    def nights(self) -> list[dt.date]:
        return [self.check_in + dt.timedelta(days=i) for i in range((self.check_out - self.check_in).days)]


@dataclass(frozen=True)
class ListingPricingInput:
    listing_id: str
    currency: str
    base_price: Decimal
    min_price: Decimal | None
    max_price: Decimal | None
    current_prices: Mapping[dt.date, Decimal]
    stays: Sequence[Stay]
    market: Mapping[dt.date, MarketNight]


@dataclass(frozen=True)
class Factor:
    name: str
    effect_pct: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "effect_pct": self.effect_pct, "detail": self.detail}


@dataclass(frozen=True)
class NightRecommendation:
    """A night's recommended price, in its own listing's currency and bounds: a
    multi-currency org's nights never borrow another listing's currency."""

    listing_id: str
    date: dt.date
    current_price: Decimal
    recommended_price: Decimal
    change_pct: float
    confidence: float
    factors: tuple[Factor, ...]
    expected_occupancy: float
    currency: str
    min_price: Decimal | None = None
    max_price: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "listing_id": self.listing_id,
            "date": self.date.isoformat(),
            "current_price": str(self.current_price),
            "recommended_price": str(self.recommended_price),
            "change_pct": self.change_pct,
            "confidence": self.confidence,
            "factors": [f.as_dict() for f in self.factors],
            "currency": self.currency,
            "min_price": str(self.min_price) if self.min_price is not None else None,
            "max_price": str(self.max_price) if self.max_price is not None else None,
        }


@dataclass(frozen=True)
class PricingResult:
    """`currency` is the listings' one currency, or None when they differ (each
    recommendation names its own); see `stayops_schemas.results.PricingResult`."""

    recommendations: tuple[NightRecommendation, ...]
    max_abs_change_pct: float
    min_confidence: float
    needs_review: bool
    currency: str | None

    def as_result(self) -> dict[str, Any]:
        """The result of `stayops.agent.result.produced` for the pricing skill."""
        return {
            "recommendations": [r.as_dict() for r in self.recommendations],
            "max_abs_change_pct": self.max_abs_change_pct,
            "min_confidence": self.min_confidence,
            "needs_review": self.needs_review,
            "currency": self.currency,
        }


def recommend_prices(
    listings: Sequence[ListingPricingInput],
    *,
    today: dt.date,
    horizon_days: int,
    confidence_threshold: float,
) -> PricingResult:
    """A recommendation for every night of every listing from `today` for
    `horizon_days` nights, except the booked ones, which keep their price."""
    if horizon_days < 1:
        raise ValueError("horizon_days must be at least 1")
    recommendations = tuple(
        night for listing in listings for night in _recommend_listing(listing, today, horizon_days)
    )
    min_confidence = min((r.confidence for r in recommendations), default=1.0)
    currencies = {listing.currency for listing in listings}
    return PricingResult(
        recommendations=recommendations,
        max_abs_change_pct=max((abs(r.change_pct) for r in recommendations), default=0.0),
        min_confidence=min_confidence,
        # Below the threshold a person looks, however small the change.
        needs_review=min_confidence < confidence_threshold,
        currency=next(iter(currencies)) if len(currencies) == 1 else None,
    )


def _recommend_listing(listing: ListingPricingInput, today: dt.date, horizon_days: int) -> list[NightRecommendation]:
    nights = [today + dt.timedelta(days=i) for i in range(horizon_days)]
    booked = {night for stay in listing.stays for night in stay.nights()}
    pace = _pace(listing.stays, today)
    found = []
    for night in nights:
        if night in booked:
            continue
        found.append(_recommend_night(listing, night, today, nights, booked, pace))
    return found


def _recommend_night(
    listing: ListingPricingInput,
    night: dt.date,
    today: dt.date,
    horizon: list[dt.date],
    booked: set[dt.date],
    pace: Factor,
) -> NightRecommendation:
    market = listing.market.get(night)
    lead = (night - today).days
    factors = [
        _occupancy(listing, night, horizon, booked),
        pace,
        _lead_time(lead),
        _day_of_week(night),
        _season(night),
        _local_event(market),
    ]
    total_pct = sum(f.effect_pct for f in factors)
    raw = _money(listing.base_price * (1 + Decimal(str(total_pct)) / 100))
    recommended, bounds = _clamp(raw, listing.min_price, listing.max_price)
    factors.append(bounds)
    current = listing.current_prices.get(night)
    reference = current if current is not None else listing.base_price
    change = _pct(recommended - reference, reference)
    return NightRecommendation(
        listing_id=listing.listing_id,
        date=night,
        current_price=reference,
        recommended_price=recommended,
        change_pct=change,
        confidence=_confidence(market, lead, has_current=current is not None),
        factors=tuple(factors),
        expected_occupancy=market.occupancy if market else DEFAULT_EXPECTED_OCCUPANCY,
        currency=listing.currency,
        min_price=listing.min_price,
        max_price=listing.max_price,
    )


def _occupancy(listing: ListingPricingInput, night: dt.date, horizon: list[dt.date], booked: set[dt.date]) -> Factor:
    first, last = horizon[0], horizon[-1]
    window = [night + dt.timedelta(days=d) for d in range(-OCCUPANCY_WINDOW_NIGHTS, OCCUPANCY_WINDOW_NIGHTS + 1)]
    window = [n for n in window if first <= n <= last]
    own = sum(1 for n in window if n in booked) / len(window)
    rates = [listing.market[n].occupancy for n in window if n in listing.market]
    if not rates:
        return Factor("occupancy", 0.0, f"listing {own:.0%} booked around this night; no market occupancy to compare")
    market = sum(rates) / len(rates)
    effect = _cap((own - market) * OCCUPANCY_WEIGHT_PCT, OCCUPANCY_CAP_PCT)
    return Factor("occupancy", effect,
                  f"listing {own:.0%} booked over {len(window)} nights around this night vs market {market:.0%}")


def _pace(stays: Sequence[Stay], today: dt.date) -> Factor:
    recent = previous = 0
    for stay in stays:
        age = (today - stay.booked_at.date()).days
        if 0 <= age < PACE_WINDOW_DAYS:
            recent += len(stay.nights())
        elif PACE_WINDOW_DAYS <= age < 2 * PACE_WINDOW_DAYS:
            previous += len(stay.nights())
    if recent + previous == 0:
        return Factor("pace", 0.0, f"no booking in the last {2 * PACE_WINDOW_DAYS} days")
    effect = round(PACE_CAP_PCT * (recent - previous) / (recent + previous), 2)
    return Factor("pace", effect, f"{recent} nights booked in the last {PACE_WINDOW_DAYS} days "
                                  f"vs {previous} in the {PACE_WINDOW_DAYS} days before")


def _lead_time(lead: int) -> Factor:
    if lead <= LAST_MINUTE_DAYS:
        return Factor("lead_time", LAST_MINUTE_PCT[lead], f"empty {lead} days ahead: last-minute discount")
    if lead >= FAR_OUT_DAYS:
        return Factor("lead_time", FAR_OUT_PCT, f"{lead} days ahead: far-out premium")
    return Factor("lead_time", 0.0, f"{lead} days ahead")


def _day_of_week(night: dt.date) -> Factor:
    name = WEEKEND_NIGHTS.get(night.weekday())
    if name:
        return Factor("day_of_week", WEEKEND_PCT, f"{name} night")
    return Factor("day_of_week", 0.0, f"{night.strftime('%A')} night")


def _season(night: dt.date) -> Factor:
    return Factor("season", SEASON_PCT[night.month], f"{night.strftime('%B')} season factor")


def _local_event(market: MarketNight | None) -> Factor:
    if market is not None and market.local_event:
        return Factor("local_event", LOCAL_EVENT_PCT, f"local event: {market.local_event}")
    return Factor("local_event", 0.0, "no local event known")


def _clamp(raw: Decimal, low: Decimal | None, high: Decimal | None) -> tuple[Decimal, Factor]:
    if low is not None and raw < low:
        return low, Factor("bounds", _pct(low - raw, raw), f"{raw} raised to the owner's minimum {low}")
    if high is not None and raw > high:
        return high, Factor("bounds", _pct(high - raw, raw), f"{raw} capped at the owner's maximum {high}")
    if low is None and high is None:
        return raw, Factor("bounds", 0.0, "no minimum or maximum set")
    return raw, Factor("bounds", 0.0, f"within the owner's bounds [{low or '-'}, {high or '-'}]")


def _confidence(market: MarketNight | None, lead: int, *, has_current: bool) -> float:
    confidence = BASE_CONFIDENCE
    if market is None:
        confidence -= NO_MARKET_RATE_PENALTY
    elif market.sample_size is not None and market.sample_size < SMALL_SAMPLE_SIZE:
        confidence -= SMALL_SAMPLE_PENALTY
    if lead >= FAR_OUT_DAYS:
        confidence -= FAR_OUT_PENALTY
    if not has_current:
        confidence -= NO_CURRENT_PRICE_PENALTY
    return round(min(1.0, max(0.0, confidence)), 2)


def _money(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _pct(part: Decimal, whole: Decimal) -> float:
    if whole == 0:
        return 0.0
    return float((part / whole * 100).quantize(CENT, rounding=ROUND_HALF_UP))


def _cap(value: float, cap: float) -> float:
    return round(max(-cap, min(cap, value)), 2)


# --- performance review -------------------------------------------------------------


@dataclass(frozen=True)
class ForecastNight:
    """A night whose price the pricing skill changed, and what it expected of it."""

    listing_id: str
    date: dt.date
    recommended_price: Decimal
    expected_occupancy: float

    @property
    def forecast_revenue(self) -> Decimal:
        return self.recommended_price * Decimal(str(self.expected_occupancy))


@dataclass(frozen=True)
class PerformanceReview:
    booked_revenue: Decimal
    forecast_revenue: Decimal
    shortfall_pct: float
    fell_short: bool
    nights_reviewed: int

    def as_result(self) -> dict[str, Any]:
        return {
            "booked_revenue": str(self.booked_revenue),
            "forecast_revenue": str(self.forecast_revenue),
            "shortfall_pct": self.shortfall_pct,
            "fell_short": self.fell_short,
            "nights_reviewed": self.nights_reviewed,
        }


def review_performance(
    forecast: Sequence[ForecastNight],
    booked_rates: Mapping[tuple[str, dt.date], Decimal],
    *,
    tolerance_pct: float = 0.0,
) -> PerformanceReview:
    """Booked revenue of the changed nights against their forecast (recommended price
    x expected occupancy). `booked_rates` holds the nightly rate of each booked
    (listing, night). It fell short when revenue is more than `tolerance_pct` below
    the forecast."""
    booked = _money(sum((booked_rates.get((n.listing_id, n.date), Decimal(0)) for n in forecast), Decimal(0)))
    expected = _money(sum((n.forecast_revenue for n in forecast), Decimal(0)))
    shortfall = _pct(expected - booked, expected) if expected > 0 else 0.0
    return PerformanceReview(
        booked_revenue=booked,
        forecast_revenue=expected,
        shortfall_pct=shortfall,
        fell_short=expected > 0 and shortfall > tolerance_pct,
        nights_reviewed=len(forecast),
    )
