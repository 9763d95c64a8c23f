"""The what-if preview: pricing v2 on a listing, calendar and market given in the
request, with nothing read from or written to any store. How an owner asks "what
would you do if…", and how backtests drive the pricing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent_service.pricing import (
    DEFAULT_RULES,
    ListingPricingInput,
    MarketNight,
    NightRecommendation,
    Stay,
    local_today,
    price_listing,
)
from stayops_kit.fields import ExactNumbers, IsoDate, IsoDateTime, PositiveAmount

MAX_HORIZON_DAYS = 365


class _Body(ExactNumbers):
    model_config = ConfigDict(extra="forbid")


class PreviewListing(_Body):
    listing_id: str = Field(default="preview", min_length=1)
    base_price: PositiveAmount
    min_price: PositiveAmount | None = None
    max_price: PositiveAmount | None = None
    min_stay: int | None = Field(default=None, ge=1, description="The listing's usual minimum stay, in nights.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    timezone: str = Field(default="UTC", description="IANA time zone; it defines the listing's today.")

    @model_validator(mode="after")
    def _bounds_in_order(self) -> PreviewListing:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError("min_price must not be above max_price")
        return self


class PreviewBooking(_Body):
    """A booked stay, nights [check_in, check_out)."""

    check_in: IsoDate
    check_out: IsoDate
    booked_at: IsoDateTime
    nightly_rate: PositiveAmount | None = None

    @model_validator(mode="after")
    def _at_least_one_night(self) -> PreviewBooking:
        if self.check_out <= self.check_in:
            raise ValueError("check_out must be after check_in")
        return self


class PreviewPrice(_Body):
    date: IsoDate
    price: PositiveAmount


class PreviewMarketNight(_Body):
    """Comparable listings on one night; past nights tell the market's typical level."""

    date: IsoDate
    median_price: PositiveAmount
    occupancy: float = Field(ge=0, le=1)
    sample_size: int | None = Field(default=None, ge=0)
    local_event: str | None = None


class PreviewRequest(_Body):
    listing: PreviewListing
    bookings: list[PreviewBooking] = Field(default_factory=list, max_length=5000)
    current_prices: list[PreviewPrice] = Field(default_factory=list, max_length=MAX_HORIZON_DAYS * 2)
    market: list[PreviewMarketNight] = Field(default_factory=list, max_length=MAX_HORIZON_DAYS * 3)
    today: IsoDate | None = Field(default=None, description="Default: today in the listing's time zone.")
    horizon_days: int = Field(default=90, ge=1, le=MAX_HORIZON_DAYS)
    rules: dict[str, dict[str, Any]] | None = Field(
        default=None, description="Rule overrides, e.g. {\"last_minute\": {\"days\": 10, \"max_discount_pct\": 25}}.")


class PreviewFactor(BaseModel):
    name: str
    effect_pct: float
    detail: str


class PreviewNight(BaseModel):
    listing_id: str
    date: IsoDate
    currency: str
    current_price: Decimal
    recommended_price: Decimal
    change_pct: float
    min_price: Decimal | None
    max_price: Decimal | None
    min_stay: int
    confidence: float
    expected_occupancy: float
    factors: list[PreviewFactor]


class PreviewResponse(BaseModel):
    listing_id: str
    currency: str
    today: IsoDate
    horizon_days: int
    nights: list[PreviewNight]
    max_abs_change_pct: float
    min_confidence: float


PREVIEW_EXAMPLE: dict[str, Any] = {
    "listing": {"listing_id": "lisbon-loft", "base_price": "120.00", "min_price": "80.00",
                "max_price": "260.00", "min_stay": 2, "currency": "EUR", "timezone": "Europe/Lisbon"},
    "bookings": [{"check_in": "2025-06-06", "check_out": "2025-06-09",
                  "booked_at": "2025-05-20T10:00:00Z", "nightly_rate": "135.00"},
                 {"check_in": "2025-06-10", "check_out": "2025-06-13",
                  "booked_at": "2025-05-25T18:30:00Z", "nightly_rate": "118.00"}],
    "current_prices": [{"date": "2025-06-09", "price": "120.00"}],
    "market": [{"date": "2025-06-02", "median_price": "128.00", "occupancy": 0.71, "sample_size": 40},
               {"date": "2025-06-09", "median_price": "131.00", "occupancy": 0.55, "sample_size": 40},
               {"date": "2025-06-13", "median_price": "190.00", "occupancy": 0.62, "sample_size": 38,
                "local_event": "Santo António festival"}],
    "today": "2025-06-02",
    "horizon_days": 14,
    "rules": {"last_minute": {"days": 10, "max_discount_pct": 25}, "orphan_gap": {"discount_pct": 12}},
}


def preview_prices(request: PreviewRequest, *, now: dt.datetime) -> PreviewResponse:
    """Price the request's listing; `now` only gives "today" when the request does not."""
    listing = request.listing
    today = request.today or local_today(now, listing.timezone)
    subject = ListingPricingInput(
        listing_id=listing.listing_id,
        currency=listing.currency,
        base_price=listing.base_price,
        min_price=listing.min_price,
        max_price=listing.max_price,
        current_prices={p.date: p.price for p in request.current_prices},
        stays=[Stay(b.check_in, b.check_out, b.booked_at, b.nightly_rate) for b in request.bookings],
        market={m.date: MarketNight(m.median_price, m.occupancy, m.sample_size, m.local_event)
                for m in request.market},
        timezone=listing.timezone,
        min_stay=listing.min_stay,
        rules=DEFAULT_RULES.overridden(request.rules),
    )
    nights = price_listing(subject, today=today, horizon_days=request.horizon_days)
    return PreviewResponse(
        listing_id=listing.listing_id,
        currency=listing.currency,
        today=today,
        horizon_days=request.horizon_days,
        nights=[_night(n) for n in nights],
        max_abs_change_pct=max((abs(n.change_pct) for n in nights), default=0.0),
        min_confidence=min((n.confidence for n in nights), default=1.0),
    )


def _night(night: NightRecommendation) -> PreviewNight:
    """Built from the engine's own values, already valid: no second validation."""
    values = {**night.as_dict(), "date": night.date, "current_price": night.current_price,
              "recommended_price": night.recommended_price, "min_price": night.min_price,
              "max_price": night.max_price,
              "factors": [PreviewFactor.model_construct(**f.as_dict()) for f in night.factors]}
    return PreviewNight.model_construct(**values)
