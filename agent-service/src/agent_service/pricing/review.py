"""The performance review: how the nights a pricing run changed did against what
it expected of them. Pure: no I/O, no clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agent_service.pricing.model import money as _money
from agent_service.pricing.model import pct as _pct


@dataclass(frozen=True)
class ForecastNight:
    """A night whose price the pricing skill changed, and what it expected of it."""

    listing_id: str
    date: dt.date
    recommended_price: Decimal
    expected_occupancy: float
    task_id: str | None = None
    produced_at: dt.datetime | None = None

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


# --- each decision, and the scorecard ----------------------------------------------


@dataclass(frozen=True)
class DecisionScore:
    """One repriced night: what it was expected to earn and what it earned. Its
    score is realised revenue against the forecast, in percent (0 = as forecast)."""

    listing_id: str
    date: dt.date
    recommended_price: Decimal
    forecast_revenue: Decimal
    realised_revenue: Decimal
    sold: bool
    picked_up: bool  # booked after the run that priced it
    score_pct: float

    def as_dict(self) -> dict[str, Any]:
        return {"listing_id": self.listing_id, "date": self.date.isoformat(),
                "recommended_price": str(self.recommended_price), "forecast_revenue": str(self.forecast_revenue),
                "realised_revenue": str(self.realised_revenue), "sold": self.sold, "picked_up": self.picked_up,
                "score_pct": self.score_pct}


def score_decisions(
    forecast: Sequence[ForecastNight], booked: Mapping[tuple[str, dt.date], tuple[Decimal, dt.datetime]]
) -> list[DecisionScore]:
    scores = []
    for night in forecast:
        rate, booked_at = booked.get((night.listing_id, night.date), (Decimal(0), None))
        expected = _money(night.forecast_revenue)
        picked_up = booked_at is not None and (night.produced_at is None or booked_at >= night.produced_at)
        scores.append(DecisionScore(
            listing_id=night.listing_id, date=night.date, recommended_price=night.recommended_price,
            forecast_revenue=expected, realised_revenue=_money(rate), sold=booked_at is not None,
            picked_up=picked_up, score_pct=_pct(rate - expected, expected) if expected > 0 else 0.0,
        ))
    return scores


@dataclass(frozen=True)
class ScorecardWindow:
    weeks: int
    decisions: int
    nights_sold: int
    picked_up: int
    realised_revenue: Decimal
    forecast_revenue: Decimal
    realised_occupancy: float
    forecast_occupancy: float
    revenue_vs_forecast_pct: float
    beat_forecast: int  # decisions that earned at least their forecast

    def as_dict(self) -> dict[str, Any]:
        return {"weeks": self.weeks, "decisions": self.decisions, "nights_sold": self.nights_sold,
                "picked_up": self.picked_up, "realised_revenue": str(self.realised_revenue),
                "forecast_revenue": str(self.forecast_revenue), "realised_occupancy": self.realised_occupancy,
                "forecast_occupancy": self.forecast_occupancy,
                "revenue_vs_forecast_pct": self.revenue_vs_forecast_pct, "beat_forecast": self.beat_forecast}


def scorecard_window(scores: Sequence[DecisionScore], forecast: Sequence[ForecastNight], weeks: int) -> ScorecardWindow:
    """Realised against forecast over the decisions of one window (nights already past)."""
    realised = _money(sum((s.realised_revenue for s in scores), Decimal(0)))
    expected = _money(sum((s.forecast_revenue for s in scores), Decimal(0)))
    count = len(scores)
    return ScorecardWindow(
        weeks=weeks,
        decisions=count,
        nights_sold=sum(1 for s in scores if s.sold),
        picked_up=sum(1 for s in scores if s.picked_up),
        realised_revenue=realised,
        forecast_revenue=expected,
        realised_occupancy=round(sum(1 for s in scores if s.sold) / count, 3) if count else 0.0,
        forecast_occupancy=round(sum(n.expected_occupancy for n in forecast) / count, 3) if count else 0.0,
        revenue_vs_forecast_pct=_pct(realised - expected, expected) if expected > 0 else 0.0,
        beat_forecast=sum(1 for s in scores if s.realised_revenue >= s.forecast_revenue and s.sold),
    )
