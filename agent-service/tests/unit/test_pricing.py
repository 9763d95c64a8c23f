"""Pricing v2 on hand-built cases: each rule, the precedence of minimum stays and of
overrides, the owner's bounds and the maximum change (also as a property), time
zones and currencies, and the performance review."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_service.pricing import (
    DEFAULT_RULES,
    FACTOR_NAMES,
    ForecastNight,
    InvalidRules,
    ListingPricingInput,
    MarketNight,
    NightRecommendation,
    PricingRules,
    Stay,
    price_listing,
    recommend_prices,
    review_performance,
    score_decisions,
)
from agent_service.pricing.signals import booking_curve

TODAY = date(2025, 4, 1)  # a Tuesday
AT = datetime(2025, 3, 20, 9, 0, tzinfo=UTC)


def flat_market(first: date, nights: int, *, price: str = "120.00", occupancy: float = 0.6,
                events: dict[date, str] | None = None) -> dict[date, MarketNight]:
    return {first + timedelta(days=i): MarketNight(Decimal(price), occupancy, 30,
                                                   (events or {}).get(first + timedelta(days=i)))
            for i in range(nights)}


def listing(*, stays: tuple[Stay, ...] = (), market: dict[date, MarketNight] | None = None,
            base: str = "120.00", low: str | None = "60.00", high: str | None = "300.00",
            prices: dict[date, Decimal] | None = None, rules: PricingRules = DEFAULT_RULES,
            min_stay: int | None = 3, currency: str = "EUR", timezone: str = "UTC",
            listing_id: str = "l-1") -> ListingPricingInput:
    return ListingPricingInput(
        listing_id=listing_id, currency=currency, base_price=Decimal(base),
        min_price=Decimal(low) if low else None, max_price=Decimal(high) if high else None,
        current_prices=prices or {}, stays=stays,
        market=flat_market(TODAY - timedelta(days=60), 200) if market is None else market,
        timezone=timezone, min_stay=min_stay, rules=rules,
    )


def priced(subject: ListingPricingInput, *, today: date = TODAY, horizon: int = 120) -> dict[date, NightRecommendation]:
    return {r.date: r for r in price_listing(subject, today=today, horizon_days=horizon)}


def effect(night: NightRecommendation, name: str) -> float:
    return next(f.effect_pct for f in night.factors if f.name == name)


def stay(first: date, nights: int) -> Stay:
    return Stay(first, first + timedelta(days=nights), AT, Decimal("120.00"))


# --- the market -----------------------------------------------------------------------


def test_summer_is_priced_from_the_markets_own_summer_whatever_its_level() -> None:
    # Two markets whose summer is 50 % dearer than the rest of their year: one at 180, one at 50.
    def seasonal(level: str) -> dict[date, MarketNight]:
        found = flat_market(TODAY - timedelta(days=300), 500, price=level)
        for d in list(found):
            if 6 <= d.month <= 8:
                found[d] = MarketNight(Decimal(level) * Decimal("1.5"), 0.6, 30)
        return found

    august = date(2025, 8, 12)
    for level in ("180.00", "50.00"):
        night = priced(listing(market=seasonal(level)), horizon=160)[august]
        assert effect(night, "season") > 20
        assert night.recommended_price > Decimal("140.00")


def test_bookings_sold_above_the_owners_position_raise_the_base() -> None:
    # The owner's base is 100 % of a market at 120; guests paid 150 on nights the market sold at 120.
    sold = tuple(Stay(TODAY - timedelta(days=d), TODAY - timedelta(days=d - 3),
                      datetime.combine(TODAY - timedelta(days=d + 30), datetime.min.time(), UTC), Decimal("150.00"))
                 for d in range(10, 58, 4))

    night = priced(listing(stays=sold))[TODAY + timedelta(days=30)]
    unknown = priced(listing())[TODAY + timedelta(days=30)]

    assert effect(night, "market_position") > 0
    assert "sold at 125% of the market's median" in night.factors[0].detail
    assert night.recommended_price > unknown.recommended_price


def test_a_southern_market_peaks_in_january_from_its_own_data() -> None:
    market = flat_market(date(2024, 10, 1), 200)
    for d in list(market):
        if d.month in (12, 1, 2):
            market[d] = MarketNight(Decimal("180.00"), 0.6, 30)

    nights = priced(listing(market=market), today=date(2024, 12, 1), horizon=90)

    assert effect(nights[date(2025, 1, 14)], "season") > 10
    assert nights[date(2025, 1, 14)].recommended_price > nights[date(2024, 12, 3)].recommended_price * Decimal("0.9")


def test_weekday_pattern_and_a_night_premium_come_from_market_prices() -> None:
    market = flat_market(TODAY - timedelta(days=60), 200)
    for d in list(market):
        if d.weekday() == 5:
            market[d] = MarketNight(Decimal("150.00"), 0.6, 30)
    wednesday = date(2025, 5, 14)
    market[wednesday] = MarketNight(Decimal("200.00"), 0.6, 30, "Champions League final")

    nights = priced(listing(market=market))

    assert effect(nights[date(2025, 5, 17)], "day_of_week") > 10  # Saturday
    assert effect(nights[date(2025, 5, 15)], "day_of_week") < 0
    assert effect(nights[wednesday], "market_night") > 30
    # The event premium adds only what the market's price does not show already.
    assert effect(nights[wednesday], "local_event") == 0
    assert "Champions League final" in next(f.detail for f in nights[wednesday].factors if f.name == "local_event")


def test_an_announced_event_the_market_has_not_priced_gets_the_event_premium() -> None:
    night = date(2025, 5, 14)
    market = flat_market(TODAY - timedelta(days=60), 200, events={night: "marathon"})

    assert effect(priced(listing(market=market))[night], "local_event") == DEFAULT_RULES.premiums.event_pct


def test_a_night_booking_faster_than_usual_at_its_lead_time_rises() -> None:
    market = flat_market(TODAY - timedelta(days=60), 200, occupancy=0.3)
    hot = date(2025, 5, 20)
    market[hot] = MarketNight(Decimal("120.00"), 0.8, 30)

    nights = priced(listing(market=market))

    assert effect(nights[hot], "demand") > 10
    assert nights[hot].recommended_price > nights[hot - timedelta(days=7)].recommended_price


def test_the_usual_pace_is_unbiased_at_both_edges_of_the_window() -> None:
    # Nights fill as their date nears: booked 80 % when past, 0.4 points less per day
    # of lead. Every night ahead is exactly on the usual pace for its lead time.
    market = flat_market(TODAY - timedelta(days=60), 60, occupancy=0.8)
    market |= {TODAY + timedelta(days=lead): MarketNight(Decimal("120.00"), 0.8 - 0.004 * lead, 30)
               for lead in range(120)}

    curve = booking_curve(market, TODAY)
    nights = priced(listing(market=market))

    assert curve == pytest.approx([(0.8 - 0.004 * lead) / 0.8 for lead in range(120)])
    assert all(effect(nights[TODAY + timedelta(days=lead)], "demand") == 0 for lead in (0, 1, 60, 118, 119))


def a_year_of_market(*, peak: tuple[int, int], peak_occupancy: float, occupancy: float = 0.6
                     ) -> dict[date, MarketNight]:
    """A market with 400 nights of history, one flat price all year, and final
    occupancies of `peak_occupancy` on the nights [peak) days after TODAY - 364 (a
    season that filled it a year before), `occupancy` otherwise; nights ahead 30 %
    booked everywhere (today's pace says nothing about the season)."""
    market = flat_market(TODAY - timedelta(days=400), 520, occupancy=occupancy)
    year_before = TODAY - timedelta(days=364)
    for d in range(*peak):
        market[year_before + timedelta(days=d)] = MarketNight(Decimal("120.00"), peak_occupancy, 30)
    for d in range(120):
        market[TODAY + timedelta(days=d)] = MarketNight(Decimal("120.00"), 0.3, 30)
    return market


def test_a_season_that_filled_the_market_a_year_before_is_priced_up() -> None:
    nights = priced(listing(market=a_year_of_market(peak=(40, 80), peak_occupancy=0.9)))

    in_season, off_season = nights[TODAY + timedelta(days=60)], nights[TODAY + timedelta(days=100)]
    # 0.9 against a typical occupancy of about 0.63 over the year's history.
    assert effect(in_season, "season_demand") > 20
    assert effect(off_season, "season_demand") == 0
    assert in_season.recommended_price > off_season.recommended_price
    assert "a year before" in next(f.detail for f in in_season.factors if f.name == "season_demand")


def test_a_season_that_left_the_market_empty_is_not_discounted_by_it() -> None:
    nights = priced(listing(market=a_year_of_market(peak=(40, 80), peak_occupancy=0.3)))

    assert effect(nights[TODAY + timedelta(days=60)], "season_demand") == 0


def test_season_demand_is_silent_without_a_year_of_history_and_capped_and_tunable() -> None:
    short = priced(listing(market=flat_market(TODAY - timedelta(days=60), 200)))
    full = a_year_of_market(peak=(40, 80), peak_occupancy=1.0, occupancy=0.3)
    capped = priced(listing(market=full))
    off = priced(listing(market=full, rules=DEFAULT_RULES.overridden(
        {"market": {"season_demand_weight_pct": 0}})))

    assert all(effect(n, "season_demand") == 0 for n in short.values())
    assert effect(capped[TODAY + timedelta(days=60)], "season_demand") == DEFAULT_RULES.market.season_demand_cap_pct
    assert all(effect(n, "season_demand") == 0 for n in off.values())


def test_a_listing_booking_ahead_of_the_market_is_cheap_and_rises() -> None:
    stays = tuple(stay(TODAY + timedelta(days=d), 1) for d in range(0, 30) if d % 5)  # 24 of 30 nights

    nights = priced(listing(stays=stays, market=flat_market(TODAY - timedelta(days=60), 200, occupancy=0.4)))

    assert all(effect(n, "occupancy") > 0 for n in nights.values())


# --- the owner's rules ----------------------------------------------------------------


def test_the_last_minute_discount_grows_over_the_last_fifteen_days_up_to_thirty_percent() -> None:
    market = flat_market(TODAY - timedelta(days=60), 200, occupancy=0.0)  # nobody books: the full discount
    nights = priced(listing(market=market, min_stay=1))

    discounts = [effect(nights[TODAY + timedelta(days=lead)], "lead_time") for lead in range(16)]

    assert discounts[0] == -30.0
    assert all(a < b for a, b in itertools.pairwise(discounts[:15]))  # graduated
    assert discounts[14] < 0 and discounts[15] == 0


def test_the_last_minute_discount_is_smaller_when_the_market_books_that_night_fast() -> None:
    slow = priced(listing(market=flat_market(TODAY - timedelta(days=60), 200, occupancy=0.0)))
    market = flat_market(TODAY - timedelta(days=60), 200, occupancy=0.6)
    market[TODAY + timedelta(days=2)] = MarketNight(Decimal("120.00"), 0.95, 30)
    busy = priced(listing(market=market))

    assert effect(busy[TODAY + timedelta(days=2)], "lead_time") > effect(slow[TODAY + timedelta(days=2)], "lead_time")


def test_the_last_minute_discount_is_smaller_where_the_market_books_late() -> None:
    # Both markets end 60 % booked and every night is on its market's usual pace; in
    # the early market nights are as booked as they will be a month ahead, in the late
    # one a night a week ahead still has most of its guests to come.
    history = flat_market(TODAY - timedelta(days=60), 60, occupancy=0.6)
    early = history | flat_market(TODAY, 130, occupancy=0.6)
    late = history | {TODAY + timedelta(days=lead): MarketNight(Decimal("120.00"), 0.6 * max(0.0, 1 - lead / 20), 30)
                      for lead in range(130)}

    in_early, in_late = priced(listing(market=early, min_stay=1)), priced(listing(market=late, min_stay=1))

    week = TODAY + timedelta(days=7)
    assert effect(in_early[week], "lead_time") < effect(in_late[week], "lead_time") < 0
    assert effect(in_late[week], "lead_time") > effect(in_early[week], "lead_time") / 2
    assert effect(in_late[TODAY], "lead_time") == effect(in_early[TODAY], "lead_time") == -30.0


def test_far_out_nights_get_the_far_out_premium() -> None:
    nights = priced(listing(), horizon=120)

    assert effect(nights[TODAY + timedelta(days=100)], "lead_time") == DEFAULT_RULES.far_out.premium_pct
    assert effect(nights[TODAY + timedelta(days=50)], "lead_time") == 0


def test_orphan_gaps_are_discounted_and_their_minimum_stay_lowered_to_fit() -> None:
    # Booked 10-12 and 14-17 April: the 13th is a one-night gap; 18-19 then 20+ booked: a two-night gap.
    stays = (stay(date(2025, 4, 20), 5), stay(date(2025, 4, 10), 3), stay(date(2025, 4, 14), 4))

    nights = priced(listing(stays=stays, min_stay=3))

    one, two_a, two_b = nights[date(2025, 4, 13)], nights[date(2025, 4, 18)], nights[date(2025, 4, 19)]
    assert effect(one, "orphan_gap") == -DEFAULT_RULES.orphan_gap.discount_pct
    assert (one.min_stay, two_a.min_stay, two_b.min_stay) == (1, 2, 1)
    open_night = nights[date(2025, 4, 28)]
    assert effect(open_night, "orphan_gap") == 0 and open_night.min_stay == 3
    assert one.recommended_price < open_night.recommended_price


def test_minimum_stay_precedence_gap_then_last_minute_then_far_out_then_default() -> None:
    rules = DEFAULT_RULES.overridden({"min_stay": {"far_out": 5, "last_minute": 2, "last_minute_days": 7}})
    stays = (stay(TODAY + timedelta(days=3), 2), stay(TODAY + timedelta(days=6), 3))  # gap on day 5

    nights = priced(listing(stays=stays, rules=rules, min_stay=4), horizon=120)

    assert nights[TODAY + timedelta(days=5)].min_stay == 1  # gap (inside the last-minute window)
    assert nights[TODAY + timedelta(days=1)].min_stay == 2  # last minute
    assert nights[TODAY + timedelta(days=100)].min_stay == 5  # far out
    assert nights[TODAY + timedelta(days=30)].min_stay == 4  # the listing's own


def test_a_weekend_premium_rule_applies_to_friday_and_saturday_nights() -> None:
    rules = DEFAULT_RULES.overridden({"premiums": {"weekend_pct": 12}})
    nights = priced(listing(rules=rules))

    assert effect(nights[date(2025, 4, 25)], "weekend") == 12  # Friday
    assert effect(nights[date(2025, 4, 23)], "weekend") == 0


def test_no_night_moves_more_than_the_maximum_change_per_run() -> None:
    rules = DEFAULT_RULES.overridden({"max_change": {"pct": 5}})
    current = {TODAY + timedelta(days=i): Decimal("200.00") for i in range(120)}

    nights = priced(listing(prices=current, rules=rules, market=flat_market(TODAY - timedelta(days=60), 200,
                                                                            occupancy=0.0)))

    tomorrow = nights[TODAY + timedelta(days=1)]
    assert tomorrow.recommended_price == Decimal("190.00")
    assert effect(tomorrow, "max_change") > 0
    assert all(abs(n.change_pct) <= 5 for n in nights.values())


def test_the_owners_bounds_win_over_everything_and_say_so() -> None:
    market = flat_market(TODAY - timedelta(days=60), 200, occupancy=0.0)
    nights = priced(listing(low="110.00", market=market))

    tomorrow = nights[TODAY + timedelta(days=1)]
    assert tomorrow.recommended_price == Decimal("110.00")
    assert effect(tomorrow, "bounds") > 0 and "minimum 110.00" in tomorrow.factors[-1].detail


def test_listing_overrides_beat_org_overrides_which_beat_defaults() -> None:
    org = DEFAULT_RULES.overridden({"last_minute": {"days": 10, "max_discount_pct": 20}})
    mine = org.overridden({"last_minute": {"max_discount_pct": 10}})

    assert (org.last_minute.days, org.last_minute.max_discount_pct) == (10, 20)
    assert (mine.last_minute.days, mine.last_minute.max_discount_pct) == (10, 10)
    assert DEFAULT_RULES.last_minute.max_discount_pct == 30


@pytest.mark.parametrize("overrides", [{"surge": {}}, {"last_minute": {"hours": 3}},
                                       {"last_minute": {"days": "ten"}}, {"max_change": {"pct": 0}},
                                       {"min_stay": {"default": 1.5}}])
def test_a_bad_override_is_refused_naming_what_is_wrong(overrides: dict[str, dict[str, object]]) -> None:
    with pytest.raises(InvalidRules):
        DEFAULT_RULES.overridden(overrides)


# --- every night, every listing ---------------------------------------------------------


def test_every_factor_is_reported_on_every_open_night() -> None:
    result = priced(listing(stays=(stay(TODAY + timedelta(days=5), 3),)), horizon=90)

    assert len(result) == 87
    for night in result.values():
        assert tuple(f.name for f in night.factors) == FACTOR_NAMES
        assert all(f.detail for f in night.factors)


def test_the_listings_time_zone_defines_its_today() -> None:
    # 23:30 UTC on 31 March is already 1 April in Tokyo, still 31 March in New York.
    at = datetime(2025, 3, 31, 23, 30, tzinfo=UTC)
    tokyo = listing(timezone="Asia/Tokyo", listing_id="tokyo", currency="JPY", base="15000.00",
                    low="8000.00", high="40000.00")
    lisbon = listing(timezone="America/New_York", listing_id="new-york")

    result = recommend_prices([tokyo, lisbon], as_of=at, horizon_days=3, confidence_threshold=0.7)

    first = {r.listing_id: min(n.date for n in result.recommendations if n.listing_id == r.listing_id)
             for r in result.recommendations}
    assert first == {"tokyo": date(2025, 4, 1), "new-york": date(2025, 3, 31)}
    # A multi-currency result prices each listing in its own currency.
    assert {(r.listing_id, r.currency) for r in result.recommendations} == {("tokyo", "JPY"), ("new-york", "EUR")}
    assert result.currency is None


def test_the_recommendation_keeps_the_contracts_shape() -> None:
    result = recommend_prices([listing()], as_of=datetime(2025, 4, 1, 9, tzinfo=UTC), horizon_days=3,
                              confidence_threshold=0.7).as_result()

    assert {"recommendations", "max_abs_change_pct", "min_confidence", "needs_review", "currency"} <= set(result)
    assert {"listing_id", "date", "current_price", "recommended_price", "change_pct", "confidence", "factors",
            "currency", "min_price", "max_price", "min_stay"} <= set(result["recommendations"][0])
    assert result["currency"] == "EUR"


# --- the property: bounds and maximum change hold for any input ----------------------------

prices = st.decimals(min_value=Decimal("20"), max_value=Decimal("900"), places=2)


@st.composite
def pricing_cases(draw: st.DrawFn) -> tuple[ListingPricingInput, date, float]:
    base = draw(prices)
    low = (base * Decimal(draw(st.floats(0.3, 1.0)))).quantize(Decimal("0.01"))
    high = (base * Decimal(draw(st.floats(1.0, 3.0)))).quantize(Decimal("0.01"))
    today = TODAY + timedelta(days=draw(st.integers(0, 365)))
    max_change = draw(st.floats(1, 60))
    current = {today + timedelta(days=i): draw(st.decimals(min_value=low, max_value=high, places=2))
               for i in range(0, 40, draw(st.integers(1, 7)))}
    stays = tuple(Stay(today + timedelta(days=s), today + timedelta(days=s + n), AT, draw(prices))
                  for s, n in draw(st.lists(st.tuples(st.integers(-30, 40), st.integers(1, 6)), max_size=6)))
    market = {today + timedelta(days=i): MarketNight(draw(prices), draw(st.floats(0, 1)),
                                                     draw(st.sampled_from([None, 2, 40])),
                                                     draw(st.sampled_from([None, "festival"])))
              for i in (*range(-380, -320, 3), *range(-20, 40, draw(st.integers(1, 4))))}
    rules = DEFAULT_RULES.overridden({"max_change": {"pct": max_change},
                                      "premiums": {"weekend_pct": draw(st.floats(0, 40))},
                                      "last_minute": {"max_discount_pct": draw(st.floats(0, 90))}})
    return (ListingPricingInput("l-p", "EUR", base, low, high, current, stays, market,
                                min_stay=draw(st.integers(1, 7)), rules=rules), today, max_change)


@settings(max_examples=150, deadline=None)
@given(pricing_cases())
def test_prices_stay_within_bounds_and_change_at_most_the_maximum(
    case: tuple[ListingPricingInput, date, float],
) -> None:
    subject, today, max_change = case

    for night in price_listing(subject, today=today, horizon_days=40):
        assert subject.min_price is not None and subject.max_price is not None
        assert subject.min_price <= night.recommended_price <= subject.max_price
        # The reference is inside the bounds here, so the maximum change always holds
        # (to the cent of rounding).
        assert abs(night.recommended_price - night.current_price) <= night.current_price * Decimal(
            str(max_change)) / 100 + Decimal("0.01")
        assert night.min_stay >= 1


# --- the review ---------------------------------------------------------------------------


def test_revenue_below_the_forecast_falls_short() -> None:
    nights = [ForecastNight("l-1", date(2025, 4, d), Decimal("100.00"), 0.5) for d in (1, 2, 3, 4)]
    booked = {("l-1", date(2025, 4, 1)): Decimal("100.00")}

    review = review_performance(nights, booked)

    assert (review.booked_revenue, review.forecast_revenue) == (Decimal("100.00"), Decimal("200.00"))
    assert (review.shortfall_pct, review.fell_short) == (50.0, True)


def test_each_decision_is_scored_on_what_it_earned() -> None:
    run_at = datetime(2025, 3, 25, tzinfo=UTC)
    nights = [ForecastNight("l-1", date(2025, 4, d), Decimal("100.00"), 0.5, "t-1", run_at) for d in (1, 2)]
    booked = {("l-1", date(2025, 4, 1)): (Decimal("100.00"), datetime(2025, 3, 27, tzinfo=UTC))}

    sold, unsold = score_decisions(nights, booked)

    assert (sold.sold, sold.picked_up, sold.score_pct) == (True, True, 100.0)
    assert (unsold.sold, unsold.realised_revenue, unsold.score_pct) == (False, Decimal("0.00"), -100.0)


def test_absurd_premiums_still_give_prices_within_the_owners_bounds() -> None:
    # A what-if may send any rules: a premium of 1e300 % must price (clamped by the
    # owner's bounds), not overflow the money arithmetic into a server error.
    absurd = DEFAULT_RULES.overridden({"premiums": {"weekend_pct": 1e300, "weekend_nights": [0, 1, 2, 3, 4, 5, 6]}})
    unbounded = priced(listing(base="9999999999.00", low=None, high=None, rules=absurd))
    assert unbounded and all(n.recommended_price > 0 for n in unbounded.values())
    bounded = priced(listing(rules=absurd))
    assert all(Decimal("60.00") <= n.recommended_price <= Decimal("300.00") for n in bounded.values())
