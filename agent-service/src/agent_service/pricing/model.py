"""The pricing skill's vocabulary: what it reads (a listing, its bookings, its
market) and what it answers (a price, a minimum stay and the factors behind them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from agent_service.pricing.rules import PricingRules

CENT = Decimal("0.01")


@dataclass(frozen=True)
class MarketNight:
    """What comparable listings did on one night: their median price and the share
    of them booked (as of the data's date; final for a night already past)."""

    median_price: Decimal
    occupancy: float
    sample_size: int | None = None
    local_event: str | None = None


@dataclass(frozen=True)
class Stay:
    """A booking that holds the listing's calendar (pending or confirmed), nights
    [check_in, check_out), with its nightly rate when known."""

    check_in: dt.date
    check_out: dt.date
    booked_at: dt.datetime
    nightly_rate: Decimal | None = None

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
    # Nights before "today" may be included: they tell the market's typical level.
    market: Mapping[dt.date, MarketNight]
    timezone: str = "UTC"
    min_stay: int | None = None
    rules: PricingRules = field(default_factory=PricingRules)


@dataclass(frozen=True)
class Factor:
    name: str
    effect_pct: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "effect_pct": self.effect_pct, "detail": self.detail}


@dataclass(frozen=True)
class NightRecommendation:
    listing_id: str
    date: dt.date
    current_price: Decimal
    recommended_price: Decimal
    change_pct: float
    confidence: float
    factors: tuple[Factor, ...]
    expected_occupancy: float
    currency: str = ""
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    min_stay: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "listing_id": self.listing_id,
            "date": self.date.isoformat(),
            "currency": self.currency,
            "current_price": str(self.current_price),
            "recommended_price": str(self.recommended_price),
            "change_pct": self.change_pct,
            "min_price": str(self.min_price) if self.min_price is not None else None,
            "max_price": str(self.max_price) if self.max_price is not None else None,
            "min_stay": self.min_stay,
            "confidence": self.confidence,
            "expected_occupancy": self.expected_occupancy,
            "factors": [f.as_dict() for f in self.factors],
        }


@dataclass(frozen=True)
class PricingResult:
    recommendations: tuple[NightRecommendation, ...]
    max_abs_change_pct: float
    min_confidence: float
    needs_review: bool
    # The currency of the listings when they share one; None for a multi-currency
    # result, where each recommendation carries its own (the pricing result schema's
    # rule, `stayops_schemas.results`).
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


def money(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def pct(part: Decimal, whole: Decimal) -> float:
    if whole == 0:
        return 0.0
    return float((part / whole * 100).quantize(CENT, rounding=ROUND_HALF_UP))


def cap(value: float, limit: float) -> float:
    return round(max(-limit, min(limit, value)), 2)
