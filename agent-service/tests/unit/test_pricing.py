"""The pricing and performance-review skills on hand-built cases: what moves a
night's price, the owner's bounds, confidence and review, determinism."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from agent_service.pricing import (
    FACTOR_NAMES,
    ForecastNight,
    ListingPricingInput,
    MarketNight,
    NightRecommendation,
    Stay,
    recommend_prices,
    review_performance,
)
from stayops_schemas.results import check_result

TODAY = date(2025, 4, 1)  # a Tuesday in April, whose season factor is 0
AT = datetime(2025, 3, 20, 9, 0, tzinfo=UTC)


def market(first: date, nights: int, *, price: str = "120.00", occupancy: float = 0.6,
           sample_size: int | None = 30, event_on: date | None = None) -> dict[date, MarketNight]:
    return {
        first + timedelta(days=i): MarketNight(
            Decimal(price), occupancy, sample_size,
            "Lisbon marathon" if first + timedelta(days=i) == event_on else None)
        for i in range(nights)
    }


def listing(*, stays: tuple[Stay, ...] = (), rates: dict[date, MarketNight] | None = None,
            base: str = "120.00", low: str | None = "80.00", high: str | None = "250.00",
            prices: dict[date, Decimal] | None = None, listing_id: str = "l-1",
            currency: str = "EUR") -> ListingPricingInput:
    return ListingPricingInput(
        listing_id=listing_id, currency=currency, base_price=Decimal(base),
        min_price=Decimal(low) if low else None, max_price=Decimal(high) if high else None,
        current_prices=prices if prices is not None else {},
        stays=stays, market=market(TODAY, 90) if rates is None else rates,
    )


def by_date(recommendations: tuple[NightRecommendation, ...]) -> dict[date, NightRecommendation]:
    return {r.date: r for r in recommendations}


def factor(night: NightRecommendation, name: str) -> float:
    return next(f.effect_pct for f in night.factors if f.name == name)


def test_the_open_nights_of_a_nearly_full_week_rise_above_the_market() -> None:
    # Market at 60% and the listing at the market price; the week of 14-20 April is
    # booked except Wednesday 16.
    week = date(2025, 4, 14)
    stays = (Stay(week, week + timedelta(days=2), AT), Stay(week + timedelta(days=3), week + timedelta(days=7), AT))
    current = {TODAY + timedelta(days=i): Decimal("120.00") for i in range(90)}

    booked = by_date(recommend_prices([listing(stays=stays, prices=current)], today=TODAY, horizon_days=30,
                                      confidence_threshold=0.7).recommendations)
    empty = by_date(recommend_prices([listing(prices=current)], today=TODAY, horizon_days=30,
                                     confidence_threshold=0.7).recommendations)

    open_night = booked[week + timedelta(days=2)]
    assert open_night.recommended_price > open_night.current_price
    assert open_night.recommended_price > empty[open_night.date].recommended_price
    assert factor(open_night, "occupancy") > 0
    assert all(week + timedelta(days=d) not in booked for d in (0, 1, 3, 4, 5, 6))  # booked: not repriced


def test_an_empty_night_tomorrow_is_discounted() -> None:
    tomorrow = TODAY + timedelta(days=1)  # a Wednesday

    night = by_date(recommend_prices([listing()], today=TODAY, horizon_days=10,
                                     confidence_threshold=0.7).recommendations)[tomorrow]

    assert night.recommended_price < night.current_price
    assert factor(night, "lead_time") < 0
    assert "last-minute" in next(f.detail for f in night.factors if f.name == "lead_time")


def test_weekend_nights_and_local_events_raise_the_price() -> None:
    friday, tuesday = date(2025, 4, 18), date(2025, 4, 15)
    rates = market(TODAY, 90, event_on=tuesday)

    nights = by_date(recommend_prices([listing(rates=rates)], today=TODAY, horizon_days=30,
                                      confidence_threshold=0.7).recommendations)

    assert factor(nights[friday], "day_of_week") > 0
    assert factor(nights[tuesday], "local_event") > 0
    assert "Lisbon marathon" in next(f.detail for f in nights[tuesday].factors if f.name == "local_event")


def test_min_and_max_are_never_crossed_and_the_clamp_is_reported() -> None:
    rng = random.Random(20250401)
    for _ in range(200):
        base = Decimal(rng.randint(40, 400))
        low = (base * Decimal(rng.uniform(0.5, 1.0))).quantize(Decimal("0.01"))
        high = (base * Decimal(rng.uniform(1.0, 1.5))).quantize(Decimal("0.01"))
        today = TODAY + timedelta(days=rng.randint(0, 365))
        stays = tuple(
            Stay(start, start + timedelta(days=rng.randint(1, 7)), datetime.combine(
                today - timedelta(days=rng.randint(0, 40)), datetime.min.time(), UTC))
            for start in (today + timedelta(days=rng.randint(0, 80)) for _ in range(rng.randint(0, 6)))
        )
        rates = {today + timedelta(days=i): MarketNight(
            Decimal(rng.randint(40, 400)), rng.random(), rng.choice([None, 2, 50]),
            rng.choice([None, None, "festival"])) for i in range(90) if rng.random() < 0.8}
        subject = ListingPricingInput("l-r", "EUR", base, low, high, {}, stays, rates)

        result = recommend_prices([subject], today=today, horizon_days=90, confidence_threshold=0.7)

        for night in result.recommendations:
            assert low <= night.recommended_price <= high, (night, low, high)
            clamp = next(f for f in night.factors if f.name == "bounds")
            if clamp.effect_pct:
                assert night.recommended_price in (low, high)
                assert "minimum" in clamp.detail or "maximum" in clamp.detail


def test_a_price_pushed_past_the_maximum_is_capped_and_says_so() -> None:
    august_friday = date(2025, 8, 1)
    rates = market(TODAY, 150, event_on=august_friday)

    night = by_date(recommend_prices([listing(rates=rates, high="130.00")], today=TODAY, horizon_days=150,
                                     confidence_threshold=0.7).recommendations)[august_friday]

    bounds = next(f for f in night.factors if f.name == "bounds")
    assert night.recommended_price == Decimal("130.00")
    assert bounds.effect_pct < 0
    assert "maximum 130.00" in bounds.detail


def test_every_factor_is_reported_on_every_recommendation() -> None:
    stays = (Stay(TODAY + timedelta(days=5), TODAY + timedelta(days=8), AT),)

    result = recommend_prices([listing(stays=stays, rates=market(TODAY, 20))], today=TODAY, horizon_days=90,
                              confidence_threshold=0.7)

    assert len(result.recommendations) == 87
    for night in result.recommendations:
        assert tuple(f.name for f in night.factors) == FACTOR_NAMES
        assert all(f.detail for f in night.factors)


def test_thin_data_asks_for_review_even_when_the_change_is_small() -> None:
    # No market rate at all: confidence falls below the threshold.
    result = recommend_prices([listing(rates={})], today=TODAY + timedelta(days=10), horizon_days=5,
                              confidence_threshold=0.7)

    assert result.max_abs_change_pct <= 10
    assert result.min_confidence < 0.7
    assert result.needs_review is True
    confident = recommend_prices([listing()], today=TODAY + timedelta(days=10), horizon_days=5,
                                 confidence_threshold=0.7)
    assert confident.needs_review is False


def test_the_result_has_the_contracts_shape() -> None:
    result = recommend_prices([listing()], today=TODAY, horizon_days=3, confidence_threshold=0.7).as_result()

    assert set(result) == {"recommendations", "max_abs_change_pct", "min_confidence", "needs_review", "currency"}
    assert set(result["recommendations"][0]) == {"listing_id", "date", "current_price", "recommended_price",
                                                 "change_pct", "confidence", "factors", "currency",
                                                 "min_price", "max_price"}
    assert set(result["recommendations"][0]["factors"][0]) == {"name", "effect_pct", "detail"}
    assert result["currency"] == "EUR"
    assert 0 <= result["min_confidence"] <= 1
    check_result("pricing", result)  # what task-service accepts from the agent


def test_each_listing_is_priced_in_its_own_currency_and_bounds() -> None:
    eur = listing(listing_id="l-eur", currency="EUR", low="80.00", high="250.00")
    usd = listing(listing_id="l-usd", currency="USD", base="300.00", low="280.00", high="320.00")
    result = recommend_prices([eur, usd], today=TODAY, horizon_days=30, confidence_threshold=0.7).as_result()

    nights = {(n["listing_id"], n["currency"], n["min_price"], n["max_price"]) for n in result["recommendations"]}
    assert nights == {("l-eur", "EUR", "80.00", "250.00"), ("l-usd", "USD", "280.00", "320.00")}
    assert all(Decimal("280.00") <= Decimal(n["recommended_price"]) <= Decimal("320.00")
               for n in result["recommendations"] if n["listing_id"] == "l-usd")
    assert result["currency"] is None, "no one currency for the whole result"
    check_result("pricing", result)


def test_a_review_has_the_contracts_shape() -> None:
    nights = [ForecastNight("l-1", date(2025, 4, d), Decimal("100.00"), 0.5) for d in (1, 2, 3)]
    check_result("performance-review", review_performance(nights, {("l-1", date(2025, 4, 1)): Decimal("90")})
                 .as_result())
    check_result("performance-review", review_performance([], {}).as_result())


def test_the_same_input_gives_the_same_output() -> None:
    stays = (Stay(TODAY + timedelta(days=3), TODAY + timedelta(days=6), AT),)
    subject = [listing(stays=stays, rates=market(TODAY, 40, event_on=TODAY + timedelta(days=12)))]

    first = recommend_prices(subject, today=TODAY, horizon_days=90, confidence_threshold=0.7).as_result()
    second = recommend_prices(subject, today=TODAY, horizon_days=90, confidence_threshold=0.7).as_result()

    assert first == second


def test_revenue_below_the_forecast_falls_short() -> None:
    nights = [ForecastNight("l-1", date(2025, 4, d), Decimal("100.00"), 0.5) for d in (1, 2, 3, 4)]
    booked = {("l-1", date(2025, 4, 1)): Decimal("100.00")}

    review = review_performance(nights, booked)

    assert (review.booked_revenue, review.forecast_revenue) == (Decimal("100.00"), Decimal("200.00"))
    assert (review.shortfall_pct, review.fell_short) == (50.0, True)
    met = review_performance(nights, {**booked, ("l-1", date(2025, 4, 2)): Decimal("110.00")})
    assert met.fell_short is False


def test_no_changed_night_means_nothing_fell_short() -> None:
    review = review_performance([], {})

    assert (review.forecast_revenue, review.shortfall_pct, review.fell_short) == (Decimal("0.00"), 0.0, False)
