"""The backtest on a small market (seconds): every strategy earns, pricing v2 keeps
to the owner's bounds, the baseline is the baseline, and a seed is a market."""

from __future__ import annotations

import dataclasses

import pytest

from stayops_infra.backtest import baseline
from stayops_infra.backtest.market import Market, MarketParameters
from stayops_infra.backtest.run import in_process_pricer, preview_body, run_backtest, scaled_pricer, simulate


def small(seed: int) -> MarketParameters:
    return dataclasses.replace(MarketParameters.draw(seed), competitors=20, ours=2, year_days=60, warm_up_days=60)


def test_every_strategy_earns_and_pricing_v2_never_crosses_the_owners_bounds() -> None:
    params = small(3)
    pricer = in_process_pricer()

    outcomes = {s: simulate(params, s, pricer) for s in ("static", "rules", "v2")}

    for outcome in outcomes.values():
        assert outcome.revenue > 0 and 0 < outcome.occupancy <= 1
        assert outcome.nights_available == 2 * 60
    assert outcomes["v2"].bounds_breached == 0
    assert outcomes["v2"].revenue != outcomes["static"].revenue  # it did price


def test_a_seed_is_one_market_and_seeds_draw_different_markets() -> None:
    first, again, other = MarketParameters.draw(1), MarketParameters.draw(1), MarketParameters.draw(2)

    assert first == again
    assert first != other
    pricer = in_process_pricer()
    assert simulate(small(1), "v2", pricer) == simulate(small(1), "v2", pricer)


def test_markets_vary_widely_across_seeds() -> None:
    drawn = [MarketParameters.draw(seed) for seed in range(1, 41)]

    assert {p.season_peaks[0] for p in drawn} == {196, 15}  # both hemispheres
    assert max(p.sensitivity for p in drawn) - min(p.sensitivity for p in drawn) > 3
    assert max(p.last_minute_share for p in drawn) > 3 * min(p.last_minute_share for p in drawn)
    assert max(p.competitors for p in drawn) > 3 * min(p.competitors for p in drawn)


def test_the_weekly_run_sends_the_preview_contract() -> None:
    market = Market(small(2))
    listing = next(entry for entry in market.listings if entry.ours)
    medians = [100.0] * len(listing.prices)

    body = preview_body(market, listing, 70, 30, medians, None)

    assert set(body) == {"listing", "bookings", "current_prices", "market", "today", "horizon_days", "rules"}
    assert len(body["current_prices"]) == 30 and len(body["market"]) == 70 + 30  # history and horizon


def test_the_baseline_is_labelled_as_the_baseline() -> None:
    assert (baseline.__doc__ or "").startswith("BASELINE, not pricing v2")
    assert run_backtest([], in_process_pricer()) == []


def test_the_level_diagnostic_scales_pricing_v2_within_the_owners_bounds() -> None:
    market = Market(small(2))
    listing = next(entry for entry in market.listings if entry.ours)
    medians = [100.0] * len(listing.prices)
    body = preview_body(market, listing, 70, 30, medians, None)
    pricer = in_process_pricer()

    plain = {n["date"]: float(n["recommended_price"]) for n in pricer(body)["nights"]}
    raised = {n["date"]: float(n["recommended_price"]) for n in scaled_pricer(pricer, 1.2)(body)["nights"]}
    capped = {n["date"]: float(n["recommended_price"]) for n in scaled_pricer(pricer, 4)(body)["nights"]}

    assert raised.keys() == plain.keys() == capped.keys() and plain
    for date, price in plain.items():
        assert raised[date] == pytest.approx(min(listing.max_price, price * 1.2), abs=0.01)
    assert any(raised[d] > plain[d] for d in plain)  # it did raise
    assert set(capped.values()) == {round(listing.max_price, 2)}  # never beyond the owner's maximum
    with pytest.raises(ValueError):
        scaled_pricer(pricer, 0)
