"""The result schemas of the skills: what an analysis task may be completed with,
and summaries that must agree with their nights."""

from __future__ import annotations

from typing import Any

import pytest

from stayops_schemas.results import ResultDoesNotFit, check_result


def night(listing: str = "L1", current: str = "100.00", recommended: str = "108.00", change: float = 8.0,
          currency: str = "EUR", **extra: Any) -> dict[str, Any]:
    return {"listing_id": listing, "date": "2026-12-01", "current_price": current, "recommended_price": recommended,
            "change_pct": change, "confidence": 0.8, "currency": currency, "min_price": "50.00",
            "max_price": "200.00", "factors": [{"name": "season", "effect_pct": change, "detail": "December"}],
            **extra}


def pricing(*nights: dict[str, Any], **summary: Any) -> dict[str, Any]:
    changes = [abs(n["change_pct"]) for n in nights]
    return {"recommendations": list(nights), "max_abs_change_pct": max(changes, default=0.0),
            "min_confidence": min((n["confidence"] for n in nights), default=1.0), "needs_review": False,
            "currency": "EUR", **summary}


def test_an_honest_pricing_result_fits() -> None:
    check_result("pricing", pricing(night(), night("L2", recommended="95.00", change=-5.0)))
    check_result("pricing", pricing(night(), night("L2", currency="USD"), currency=None))
    check_result("pricing", pricing())


@pytest.mark.parametrize(
    ("result", "says"),
    [
        (pricing(night(change=40.0, recommended="140.00"), max_abs_change_pct=0),
         "result: max_abs_change_pct 0.0 is not the largest change of the recommendations (40.0)"),
        (pricing(night(change=1.0)), "recommendations.0: change_pct 1.0 does not match 100.00 -> 108.00"),
        (pricing(night(recommended="250.00", change=150.0)), "above the listing's max_price 200.00"),
        (pricing(night(), min_confidence=0.99), "min_confidence 0.99 is not the lowest confidence"),
        (pricing(night(), night("L2", currency="USD")), "currency must be null"),
        (pricing(night(), currency="USD"), "currency USD is not the recommendations' currency EUR"),
        (pricing(night(), night(currency="USD"), currency=None), "listing L1 is priced in both EUR and USD"),
        (pricing(night(listing_id=None)), "recommendations.0.listing_id"),
        ({"recommendations": []}, "max_abs_change_pct: Field required"),
        (pricing(night(surprise=1)), "recommendations.0.surprise: Extra inputs are not permitted"),
    ],
)
def test_a_pricing_result_that_does_not_add_up_is_refused_naming_the_field(
    result: dict[str, Any], says: str
) -> None:
    with pytest.raises(ResultDoesNotFit) as refused:
        check_result("pricing", result)
    assert any(says in problem for problem in refused.value.problems), refused.value.problems


def test_a_review_must_agree_with_its_revenue() -> None:
    review = {"booked_revenue": "100.00", "forecast_revenue": "200.00", "shortfall_pct": 50.0,
              "fell_short": True, "nights_reviewed": 4}
    check_result("performance-review", review)
    with pytest.raises(ResultDoesNotFit, match=r"shortfall_pct 0\.0 does not match"):
        check_result("performance-review", {**review, "shortfall_pct": 0.0})
    with pytest.raises(ResultDoesNotFit, match="fell_short is true"):
        check_result("performance-review", {**review, "booked_revenue": "250.00", "shortfall_pct": -25.0})


def test_a_skill_without_a_schema_takes_any_result() -> None:
    check_result(None, {"anything": True})
    check_result("cleaning", {"rooms": 3})
