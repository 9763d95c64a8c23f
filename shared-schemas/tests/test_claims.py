"""The claim check: which results travel inline, what a ref says about the stored
detail, and that a summary travelling with a ref must agree with its nights."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from stayops_schemas.claims import (
    RESULT_REF_KEY,
    DetailMismatch,
    ResultRef,
    apply_price_edits,
    by_reference,
    canonical_json,
    digest_of,
    fits_inline,
    make_ref,
    pricing_summary,
    ref_of,
    unknown_edits,
)
from stayops_schemas.results import ResultDoesNotFit, check_result, summary_disagrees


def night(listing: str, day: int, change: float = 8.0) -> dict[str, Any]:
    recommended = f"{100 + change:.2f}"
    return {"listing_id": listing, "date": (dt.date(2026, 12, 1) + dt.timedelta(days=day)).isoformat(),
            "current_price": "100.00", "recommended_price": recommended, "change_pct": change, "confidence": 0.8,
            "currency": "EUR", "factors": [{"name": "season", "effect_pct": change, "detail": "December"}]}


def pricing(listings: int, nights: int = 90) -> dict[str, Any]:
    recommendations = [night(f"L{i}", d, change=float(d % 9)) for i in range(listings) for d in range(nights)]
    return {"recommendations": recommendations, "max_abs_change_pct": 8.0, "min_confidence": 0.8,
            "needs_review": False, "currency": "EUR"}


def stored(result: dict[str, Any]) -> tuple[ResultRef, dict[str, Any]]:
    ref = make_ref(result, service="agent-service", kind="pricing", id="r-1", org_id="org-1",
                   summary=pricing_summary(result))
    return ref, by_reference(ref)


def test_small_results_travel_inline_and_a_fifty_listing_one_does_not() -> None:
    assert fits_inline(pricing(2))
    assert not fits_inline(pricing(50))
    assert fits_inline(pricing(50), limit_bytes=10 * 1024 * 1024)


def test_the_digest_is_of_the_canonical_json_whatever_the_key_order() -> None:
    assert digest_of({"b": 1, "a": [1.5, "x"]}) == digest_of({"a": [1.5, "x"], "b": 1})
    assert digest_of({"a": 1}) != digest_of({"a": 2})
    assert canonical_json({"b": 1, "a": 2}) == b'{"a":2,"b":1}'


def test_a_ref_carries_size_digest_and_a_summary_and_refuses_other_detail() -> None:
    result = pricing(50)
    ref, travelling = stored(result)
    assert ref.size == len(canonical_json(result)) and ref.size > 64 * 1024
    assert ref.summary == {"max_abs_change_pct": 8.0, "min_confidence": 0.8, "needs_review": False,
                           "currency": "EUR", "nights": 4500, "listings": 50}
    assert len(canonical_json(travelling)) < 2048
    assert ref_of(travelling) == ref and ref_of(result) is None
    ref.verify(result)
    tampered = {**result, "recommendations": result["recommendations"][1:]}
    with pytest.raises(DetailMismatch):
        ref.verify(tampered)


def test_a_summary_is_bounded() -> None:
    with pytest.raises(ValueError, match="summary"):
        ResultRef(service="s", kind="k", id="i", org_id="o", size=1, digest="sha256:" + "0" * 64,
                  summary={"nights": ["x" * 100] * 100})


def test_a_result_by_reference_fits_the_pricing_skill_only_with_its_own_summary() -> None:
    _, travelling = stored(pricing(50))
    check_result("pricing", travelling)
    with pytest.raises(ResultDoesNotFit, match="summary"):
        check_result("pricing", {**travelling, "max_abs_change_pct": 0.0})
    with pytest.raises(ResultDoesNotFit):
        check_result("pricing", {**travelling, RESULT_REF_KEY: {"id": "r-1"}})


def test_a_summary_that_disagrees_with_the_stored_nights_is_found_out() -> None:
    result = pricing(3)
    assert summary_disagrees(pricing_summary(result), result) == []
    lying = {**pricing_summary(result), "max_abs_change_pct": 0.0, "nights": 1}
    assert [p.split(" ")[0] for p in summary_disagrees(lying, result)] == ["max_abs_change_pct", "nights"]


def test_edits_change_their_nights_and_unknown_ones_are_named() -> None:
    proposal = [night("L1", 0), night("L1", 1)]
    edits = [{"listing_id": "L1", "date": proposal[1]["date"], "price": "99.00"},
             {"listing_id": "L9", "date": "2026-12-01", "price": "1.00"}]
    prices = apply_price_edits(proposal, edits)
    assert [p["price"] for p in prices] == ["108.00", "99.00"]
    assert prices[0]["previous_price"] == "100.00" and prices[0]["currency"] == "EUR"
    assert unknown_edits(proposal, edits) == ["L9 2026-12-01"]
