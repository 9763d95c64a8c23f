"""What an analysis task's result must look like for each skill that produces one,
whoever completes it (the AI agent by event, a person over REST). The decision rule
of a workflow reads these results, so a summary must agree with its nights: a
made-up `max_abs_change_pct: 0` beside a 40 % change is refused, not trusted."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stayops_schemas.claims import RESULT_REF_KEY, ResultRef
from stayops_schemas.errors import SchemaError
from stayops_schemas.events.base import Amount, Currency, NonEmptyStr

# Percentages travel rounded to cents of a percent; allow that rounding, no more.
PCT_TOLERANCE = 0.011
# A summary is the max/min of its nights' values: they must match (float noise aside).
SUMMARY_TOLERANCE = 1e-6


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PricingFactor(_Result):
    """One factor that moved a night's price, in percent (reported even when 0)."""

    name: NonEmptyStr
    effect_pct: float
    detail: str


class PriceRecommendation(_Result):
    """A recommended price for one night of one listing, in that listing's currency
    and within its owner's bounds."""

    listing_id: NonEmptyStr
    date: dt.date
    current_price: Amount
    recommended_price: Amount
    change_pct: float
    confidence: float = Field(ge=0, le=1)
    factors: list[PricingFactor]
    currency: Currency
    min_price: Amount | None = None
    max_price: Amount | None = None
    min_stay: int | None = Field(default=None, ge=1, le=365)
    """The fewest nights a stay starting that night must book."""
    expected_occupancy: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _agrees_with_its_prices(self) -> Self:
        expected = _pct(self.recommended_price - self.current_price, self.current_price)
        if abs(self.change_pct - expected) > PCT_TOLERANCE:
            raise ValueError(f"change_pct {self.change_pct} does not match {self.current_price} -> "
                             f"{self.recommended_price} ({expected:+.2f} %)")
        if self.min_price is not None and self.recommended_price < self.min_price:
            raise ValueError(f"recommended_price {self.recommended_price} is below the listing's "
                             f"min_price {self.min_price}")
        if self.max_price is not None and self.recommended_price > self.max_price:
            raise ValueError(f"recommended_price {self.recommended_price} is above the listing's "
                             f"max_price {self.max_price}")
        return self


class PricingResult(_Result):
    """The result of the `pricing` skill. `currency` is the one currency of every
    recommendation, or null when the listings are priced in different currencies
    (each night carries its own)."""

    recommendations: list[PriceRecommendation]
    max_abs_change_pct: float = Field(ge=0)
    min_confidence: float = Field(ge=0, le=1)
    needs_review: bool
    currency: Currency | None = None

    @model_validator(mode="after")
    def _summary_agrees_with_the_nights(self) -> Self:
        nights = self.recommendations
        largest = max((abs(r.change_pct) for r in nights), default=0.0)
        if abs(self.max_abs_change_pct - largest) > SUMMARY_TOLERANCE:
            raise ValueError(f"max_abs_change_pct {self.max_abs_change_pct} is not the largest change "
                             f"of the recommendations ({largest})")
        lowest = min((r.confidence for r in nights), default=self.min_confidence)
        if abs(self.min_confidence - lowest) > SUMMARY_TOLERANCE:
            raise ValueError(f"min_confidence {self.min_confidence} is not the lowest confidence "
                             f"of the recommendations ({lowest})")
        currencies = {r.currency for r in nights}
        if len(currencies) == 1 and self.currency not in (None, *currencies):
            raise ValueError(f"currency {self.currency} is not the recommendations' currency "
                             f"{next(iter(currencies))}")
        if len(currencies) > 1 and self.currency is not None:
            raise ValueError(f"the recommendations are in {', '.join(sorted(currencies))}: "
                             "currency must be null, each night names its own")
        by_listing: dict[str, str] = {}
        for night in nights:
            if by_listing.setdefault(night.listing_id, night.currency) != night.currency:
                raise ValueError(f"listing {night.listing_id} is priced in both "
                                 f"{by_listing[night.listing_id]} and {night.currency}")
        return self


class PricingSummary(_Result):
    """A pricing result whose nights are stored by the agent's service (claim check,
    `stayops_schemas.claims`): the summary and the ref to the nights. The producer
    checked the whole result against `PricingResult` before storing it; whoever
    fetches the nights checks the digest and that this summary agrees with them."""

    max_abs_change_pct: float = Field(ge=0)
    min_confidence: float = Field(ge=0, le=1)
    needs_review: bool
    currency: Currency | None = None
    nights: int = Field(ge=0)
    listings: int = Field(ge=0)
    result_ref: ResultRef

    @model_validator(mode="after")
    def _ref_is_a_pricing_result(self) -> Self:
        if self.result_ref.kind != "pricing":
            raise ValueError(f"result_ref names a {self.result_ref.kind!r} result, not a pricing one")
        summary = self.model_dump(mode="json", exclude={"result_ref"})
        if {k: self.result_ref.summary.get(k) for k in summary} != summary:
            raise ValueError("the summary does not match the summary its result_ref carries")
        return self


def summary_disagrees(summary: Mapping[str, Any], detail: Mapping[str, Any]) -> list[str]:
    """Where a travelling pricing summary differs from the stored result it names
    (empty: it agrees). The detail is checked against `PricingResult` first."""
    check_result("pricing", detail)
    full = PricingResult.model_validate(dict(detail))
    problems = []
    for name in ("max_abs_change_pct", "min_confidence"):
        if abs(float(summary.get(name, -1)) - float(getattr(full, name))) > SUMMARY_TOLERANCE:
            problems.append(f"{name} {summary.get(name)} is not the stored result's {getattr(full, name)}")
    if bool(summary.get("needs_review")) != full.needs_review:
        problems.append(f"needs_review {summary.get('needs_review')} is not the stored result's {full.needs_review}")
    if summary.get("nights") != len(full.recommendations):
        problems.append(f"nights {summary.get('nights')} is not the stored result's {len(full.recommendations)}")
    return problems


class ScoredDecisions(_Result):
    """Realised against forecast over a set of pricing decisions (nights already past)."""

    weeks: int | None = Field(ge=0, description="The scorecard window in weeks; null for one run's decisions.")
    decisions: int = Field(ge=0)
    nights_sold: int = Field(ge=0)
    picked_up: int = Field(ge=0, description="Nights booked after the run that priced them.")
    realised_revenue: Amount
    forecast_revenue: Amount
    realised_occupancy: float = Field(ge=0, le=1)
    forecast_occupancy: float = Field(ge=0, le=1)
    revenue_vs_forecast_pct: float
    beat_forecast: int = Field(ge=0)


class ScoredDecision(_Result):
    """One night a run priced, against what it earned."""

    listing_id: NonEmptyStr
    date: dt.date
    recommended_price: Amount
    forecast_revenue: Amount
    realised_revenue: Amount
    sold: bool
    picked_up: bool
    score_pct: float


class PerformanceReviewResult(_Result):
    """The result of the `performance-review` skill: booked revenue of the repriced
    nights against their forecast, and the run's decisions scored."""

    booked_revenue: Amount
    forecast_revenue: Amount
    shortfall_pct: float
    fell_short: bool
    nights_reviewed: int = Field(ge=0)
    run_id: str | None = Field(default=None, description="The run whose decisions were reviewed.")
    decisions: ScoredDecisions | None = None
    worst_decisions: list[ScoredDecision] = Field(default_factory=list, max_length=20,
                                                  description="The worst-scored decisions first.")

    @model_validator(mode="after")
    def _shortfall_agrees_with_the_revenue(self) -> Self:
        expected = (_pct(self.forecast_revenue - self.booked_revenue, self.forecast_revenue)
                    if self.forecast_revenue > 0 else 0.0)
        if abs(self.shortfall_pct - expected) > PCT_TOLERANCE:
            raise ValueError(f"shortfall_pct {self.shortfall_pct} does not match booked "
                             f"{self.booked_revenue} against forecast {self.forecast_revenue} "
                             f"({expected:.2f} %)")
        if self.fell_short and expected <= 0:
            raise ValueError("fell_short is true, yet booked revenue is not below the forecast")
        return self


class GuestWelcomeResult(_Result):
    """The result of the `guest-welcome` skill: a welcome message drafted for a
    reservation's guests, for a person (or an automation) to send."""

    listing_id: NonEmptyStr
    reservation_id: str | None = None
    subject: NonEmptyStr
    message: NonEmptyStr


# The skills whose results are checked; a task of another skill (or none) takes any result.
SKILL_RESULTS: Mapping[str, type[_Result]] = {
    "pricing": PricingResult,
    "performance-review": PerformanceReviewResult,
    "guest-welcome": GuestWelcomeResult,
}


class ResultDoesNotFit(SchemaError):
    """A result that does not fit its skill's schema; `problems` name each field."""

    def __init__(self, skill: str, problems: list[str]) -> None:
        self.skill = skill
        self.problems = problems
        super().__init__(f"the result does not fit the {skill!r} skill: {'; '.join(problems)}")


def check_result(skill: str | None, result: Mapping[str, Any]) -> None:
    """Refuse a result that does not fit the schema of `skill` (no check for a skill
    without one)."""
    model = SKILL_RESULTS.get(skill or "")
    if model is None:
        return
    if skill == "pricing" and result.get(RESULT_REF_KEY) is not None:
        model = PricingSummary
    try:
        model.model_validate(dict(result))
    except ValidationError as exc:
        raise ResultDoesNotFit(skill or "", [_problem(e) for e in exc.errors()]) from exc


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "result"
    message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
    return f"{where}: {message}"


def _pct(part: Decimal, whole: Decimal) -> float:
    if whole == 0:
        return 0.0
    return float(part / whole * 100)
