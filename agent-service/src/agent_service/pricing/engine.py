"""Pricing v2: a nightly price and minimum stay for every open night, each with the
factors that made it.

price = base (the owner's base, moved toward the position the listing's bookings
show against the market's median) x season x day of week x the night's own market
premium (all read from the market's median prices against their typical level)
x demand (the market's booking pace against the usual pace at that lead time)
x season demand (how full the market got around the night a year before)
x occupancy (the listing's own against the market's) -> customisations (last
minute, far out, orphan gaps, weekend and event premiums) -> at most the maximum
change per run -> clamped into the owner's [min_price, max_price]. The owner's
bounds always win. Factors multiply; each is reported on every night, 0 when it
did nothing. Starting from the base rather than the current price keeps weekly
runs from compounding one effect week after week."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent_service.pricing.model import (
    Factor,
    ListingPricingInput,
    MarketNight,
    NightRecommendation,
    PricingResult,
    cap,
    money,
    pct,
)
from agent_service.pricing.rules import PricingRules
from agent_service.pricing.signals import MarketSignals, read_market
from stayops_kit.errors import InvalidRequest

FACTOR_NAMES = ("market_position", "season", "day_of_week", "market_night", "demand", "season_demand",
                "occupancy", "lead_time", "orphan_gap", "weekend", "local_event", "max_change", "bounds")

# Confidence: what lowers it, from a start that is never certainty.
BASE_CONFIDENCE = 0.9
NO_MARKET_RATE_PENALTY = 0.3
SMALL_SAMPLE_SIZE = 5
SMALL_SAMPLE_PENALTY = 0.1
FAR_OUT_DAYS = 60
FAR_OUT_PENALTY = 0.1
NO_CURRENT_PRICE_PENALTY = 0.05
# Expected occupancy of a night the market says nothing about.
DEFAULT_EXPECTED_OCCUPANCY = 0.6
# Occupancy below this is too thin to compare paces by ratio; a pace far ahead says
# demand is high, not how high.
PACE_FLOOR = 0.1
MAX_PACE = 2.0
# The part of the last-minute discount kept however fast the market books.
LAST_MINUTE_MIN_SHARE = 0.25


class UnknownTimezone(InvalidRequest):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown time zone {name!r}; use an IANA name such as Europe/Lisbon")


def local_today(at: dt.datetime, timezone: str) -> dt.date:
    """The date it is at the listing at `at`: a listing's "today" is its own."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimezone(timezone) from exc
    return at.astimezone(zone).date()


def recommend_prices(
    listings: Sequence[ListingPricingInput],
    *,
    as_of: dt.datetime,
    horizon_days: int,
    confidence_threshold: float,
) -> PricingResult:
    """A recommendation for every open night of every listing, from the listing's
    own today (at `as_of` in its time zone) for `horizon_days` nights; booked nights
    keep their price."""
    if horizon_days < 1:
        raise ValueError("horizon_days must be at least 1")
    recommendations = tuple(
        night for listing in listings
        for night in price_listing(listing, today=local_today(as_of, listing.timezone), horizon_days=horizon_days)
    )
    min_confidence = min((r.confidence for r in recommendations), default=1.0)
    currencies = {listing.currency for listing in listings}
    return PricingResult(
        recommendations=recommendations,
        max_abs_change_pct=max((abs(r.change_pct) for r in recommendations), default=0.0),
        min_confidence=min_confidence,
        # Below the threshold a person looks, however small the change.
        needs_review=min_confidence < confidence_threshold,
        currency=currencies.pop() if len(currencies) == 1 else None,
    )


@dataclass(frozen=True)
class _Context:
    listing: ListingPricingInput
    rules: PricingRules
    today: dt.date
    booked: frozenset[dt.date]
    signals: MarketSignals
    gaps: dict[dt.date, int]  # open night of an orphan gap -> nights left in the gap from it
    position: Factor
    occupancy: Factor
    default_min_stay: int


def price_listing(listing: ListingPricingInput, *, today: dt.date, horizon_days: int) -> list[NightRecommendation]:
    """The recommendations of one listing's open nights from `today`."""
    rules = listing.rules
    nights = [today + dt.timedelta(days=i) for i in range(horizon_days)]
    booked = frozenset(night for stay in listing.stays for night in stay.nights())
    signals = read_market(listing.market, today)
    context = _Context(
        listing=listing, rules=rules, today=today, booked=booked, signals=signals,
        gaps=orphan_gaps(nights, booked, rules.orphan_gap.max_nights),
        position=_market_position(listing, signals, rules),
        occupancy=_occupancy(listing, today, booked, rules),
        default_min_stay=listing.min_stay or rules.min_stay.default,
    )
    return [_price_night(context, night) for night in nights if night not in booked]


# However extreme the inputs (a what-if may send any market), the factors together
# never take a night below 1 % or above 100x its base before the owner's bounds:
# beyond that the arithmetic, not the market, would be speaking.
MIN_MULTIPLIER, MAX_MULTIPLIER = 0.01, 100.0


def _bounded(multiplier: float) -> float:
    if math.isnan(multiplier):
        return 1.0
    return min(max(multiplier, MIN_MULTIPLIER), MAX_MULTIPLIER)


def orphan_gaps(nights: Sequence[dt.date], booked: frozenset[dt.date], max_nights: int) -> dict[dt.date, int]:
    """Runs of at most `max_nights` open nights with a booking right after them and a
    booking (or today: nobody checks in yesterday) right before; each open night
    maps to the nights left in its gap from it."""
    found: dict[dt.date, int] = {}
    if not nights:
        return found
    run: list[dt.date] = []
    for night in nights:
        if night not in booked:
            run.append(night)
            continue
        if run and len(run) <= max_nights:
            for i, gap_night in enumerate(run):
                found[gap_night] = len(run) - i
        run = []
    return found


def _price_night(context: _Context, night: dt.date) -> NightRecommendation:
    listing, rules, signals = context.listing, context.rules, context.signals
    market = listing.market.get(night)
    lead = (night - context.today).days
    night_premium = signals.night_premium(night, market) if market else 1.0
    factors = [
        context.position,
        _season(signals, night, rules),
        _day_of_week(signals, night, rules),
        _market_night(night_premium, market, rules),
        _demand(signals, lead, market, rules),
        _season_demand(signals, night, rules),
        context.occupancy,
        _lead_time(lead, demand_ratio(signals, lead, market), signals.sell_chance(lead), rules),
        _orphan_gap(context.gaps.get(night), rules),
        _weekend(night, rules),
        _local_event(market, night_premium, rules),
    ]
    multiplier = 1.0
    for factor in factors:
        multiplier *= 1 + factor.effect_pct / 100
    raw = money(listing.base_price * Decimal(str(round(_bounded(multiplier), 6))))
    current = listing.current_prices.get(night)
    reference = current if current is not None else listing.base_price
    limited, max_change = _max_change(raw, reference, rules)
    recommended, bounds = _clamp(limited, listing.min_price, listing.max_price)
    factors += [max_change, bounds]
    return NightRecommendation(
        listing_id=listing.listing_id,
        date=night,
        current_price=reference,
        recommended_price=recommended,
        change_pct=pct(recommended - reference, reference),
        confidence=_confidence(market, lead, has_current=current is not None),
        factors=tuple(factors),
        expected_occupancy=_expected_occupancy(signals, market),
        currency=listing.currency,
        min_price=listing.min_price,
        max_price=listing.max_price,
        min_stay=min_stay(context.default_min_stay, lead, context.gaps.get(night), rules),
    )


def min_stay(default: int, lead: int, gap_left: int | None, rules: PricingRules) -> int:
    """The minimum stay of a stay starting on a night, by precedence: an orphan
    gap's nights left (so a stay that fits the gap can book it), then the
    last-minute minimum, then the far-out minimum, then the default."""
    rule = rules.min_stay
    if gap_left is not None:
        return max(1, min(default, gap_left))
    if lead < rule.last_minute_days and rule.last_minute is not None:
        return max(1, min(default, rule.last_minute))
    if lead >= rule.far_out_days and rule.far_out is not None:
        return max(1, rule.far_out)
    return max(1, default)


def _market_position(listing: ListingPricingInput, signals: MarketSignals, rules: PricingRules) -> Factor:
    """The owner's base against the market's typical price, moved toward the
    position the listing's own bookings show (their rate against the market's
    median on the same nights), more so the more nights it has booked."""
    typical = signals.typical_price
    if typical is None:
        return Factor("market_position", 0.0, "no market prices: the owner's base price as it is")
    # Only bookings made before any last-minute discount: discounted ones would teach
    # the listing it is worth less, and the next base would sink with them.
    full_price_lead = rules.last_minute.days
    ratios = [float(stay.nightly_rate) / float(listing.market[night].median_price)
              for stay in listing.stays if stay.nightly_rate is not None
              for night in stay.nights()
              if night in listing.market and (night - stay.booked_at.date()).days >= full_price_lead]
    owner = float(listing.base_price) / typical
    if not ratios:
        return Factor("market_position", 0.0,
                      f"base {listing.base_price} is {owner:.0%} of the market's typical {typical:.2f}; "
                      "no booking yet to learn the listing's position from")
    learned = statistics.median(ratios)
    weight = len(ratios) / (len(ratios) + rules.market.position_nights)
    # Upward only: guests pick the nights a listing is cheap on, so its booked rates
    # understate its worth; selling above the owner's position is real evidence.
    effect = cap(max(0.0, learned / owner - 1) * weight * 100, rules.market.position_cap_pct)
    return Factor("market_position", effect,
                  f"base {listing.base_price} is {owner:.0%} of the market's typical {typical:.2f}; "
                  f"{len(ratios)} booked nights sold at {learned:.0%} of the market's median")


def _season(signals: MarketSignals, night: dt.date, rules: PricingRules) -> Factor:
    level = signals.season.get(night)
    if level is None or signals.typical_price is None:
        return Factor("season", 0.0, "no market prices around this night")
    effect = cap((level - 1) * rules.market.follow * 100, rules.market.season_cap_pct)
    return Factor("season", effect, f"the market around this night is at {level:.0%} of its typical "
                                    f"{signals.typical_price:.2f}")


def _day_of_week(signals: MarketSignals, night: dt.date, rules: PricingRules) -> Factor:
    name = night.strftime("%A")
    index = signals.weekday.get(night.weekday())
    if index is None:
        return Factor("day_of_week", 0.0, f"{name} night; no market prices to compare weekdays")
    effect = cap((index - 1) * rules.market.follow * 100, rules.market.day_of_week_cap_pct)
    return Factor("day_of_week", effect, f"{name} nights are at {index:.0%} of the market's week")


def _market_night(premium: float, market: MarketNight | None, rules: PricingRules) -> Factor:
    if market is None:
        return Factor("market_night", 0.0, "no market price for this night")
    effect = cap((premium - 1) * rules.market.follow * 100, rules.market.night_cap_pct)
    return Factor("market_night", effect,
                  f"the market's median {market.median_price} is {premium:.0%} of what season and weekday explain")


def _demand(signals: MarketSignals, lead: int, market: MarketNight | None, rules: PricingRules) -> Factor:
    usual = signals.usual_occupancy(lead)
    if market is None or usual is None:
        return Factor("demand", 0.0, "no market occupancy for this night")
    effect = cap(demand_ratio(signals, lead, market) * rules.market.demand_weight_pct,
                 rules.market.demand_cap_pct)
    return Factor("demand", effect, f"market {market.occupancy:.0%} booked vs {usual:.0%} usual "
                                    f"{lead} days ahead")


def _season_demand(signals: MarketSignals, night: dt.date, rules: PricingRules) -> Factor:
    """How full the market got around this night a year before, against its typical
    occupancy: a season that fills the market leaves its guests little choice (a
    night one passes over, a later one takes), so its nights bear a higher price."""
    ratio = signals.season_occupancy.get(night)
    if ratio is None:
        return Factor("season_demand", 0.0, "no market history a year back around this night")
    rule = rules.market
    effect = cap(max(0.0, ratio - 1) * rule.season_demand_weight_pct, rule.season_demand_cap_pct)
    return Factor("season_demand", effect, f"a year before, the market around this night was {ratio:.0%} "
                                           "as full as it typically is")


def demand_ratio(signals: MarketSignals, lead: int, market: MarketNight | None) -> float:
    """How far the market's booking pace on a night is ahead of (> 0) or behind (< 0)
    the usual pace at that lead time, relative to it."""
    usual = signals.usual_occupancy(lead)
    if market is None or usual is None:
        return 0.0
    return min(MAX_PACE, (market.occupancy - usual) / max(usual, PACE_FLOOR))


def _occupancy(listing: ListingPricingInput, today: dt.date, booked: frozenset[dt.date],
               rules: PricingRules) -> Factor:
    rule = rules.occupancy
    # Both sides over the same nights: those of the window the market reports on.
    window = [n for n in (today + dt.timedelta(days=i) for i in range(rule.window_days)) if n in listing.market]
    if not window:
        return Factor("occupancy", 0.0, f"no market occupancy over the next {rule.window_days} nights to compare")
    own = sum(1 for n in window if n in booked) / len(window)
    market = statistics.fmean(listing.market[n].occupancy for n in window)
    effect = cap((own - market) * rule.weight_pct, rule.cap_pct)
    return Factor("occupancy", effect, f"listing {own:.0%} booked over {len(window)} nights of the next "
                                       f"{rule.window_days} vs market {market:.0%}")


def _lead_time(lead: int, pace: float, sell_chance: float | None, rules: PricingRules) -> Factor:
    """The last-minute discount grows over the last days, as far as the market's own
    booking curve says an open night is unlikely to sell by now (in a market that
    books late, a night open a week ahead still has most of its guests to come);
    the faster the market books that night, the less of it is needed (all of it
    when the market is behind)."""
    last, far = rules.last_minute, rules.far_out
    if lead < last.days:
        share = max(LAST_MINUTE_MIN_SHARE, min(1.0, 1 - pace))
        unsold = 1.0 if sell_chance is None else 1 - sell_chance
        effect = -round(last.max_discount_pct * (last.days - lead) / last.days * share * unsold, 2)
        return Factor("lead_time", effect, f"open {lead} days ahead: last-minute discount "
                                           f"(up to {last.max_discount_pct:g}% over the last {last.days} days; "
                                           f"{share:.0%} of it at this night's booking pace, "
                                           f"{unsold:.0%} of that as the market's remaining bookings "
                                           "are unlikely to fill it)")
    if lead >= far.from_days:
        return Factor("lead_time", far.premium_pct, f"{lead} days ahead: far-out premium")
    return Factor("lead_time", 0.0, f"{lead} days ahead")


def _orphan_gap(gap_left: int | None, rules: PricingRules) -> Factor:
    if gap_left is None:
        return Factor("orphan_gap", 0.0, "not an orphan gap")
    return Factor("orphan_gap", -rules.orphan_gap.discount_pct,
                  f"open gap between bookings, {gap_left} night(s) left: discounted, minimum stay lowered to fit")


def _weekend(night: dt.date, rules: PricingRules) -> Factor:
    premium = rules.premiums
    if premium.weekend_pct and night.weekday() in premium.weekend_nights:
        return Factor("weekend", premium.weekend_pct, f"{night.strftime('%A')} night: weekend premium")
    return Factor("weekend", 0.0, "no weekend premium")


def _local_event(market: MarketNight | None, night_premium: float, rules: PricingRules) -> Factor:
    if market is None or not market.local_event:
        return Factor("local_event", 0.0, "no local event known")
    shown = max(0.0, (night_premium - 1) * 100)
    effect = round(max(0.0, rules.premiums.event_pct - shown), 2)
    return Factor("local_event", effect, f"local event: {market.local_event} (the market already shows +{shown:.0f}%)")


def _max_change(raw: Decimal, reference: Decimal, rules: PricingRules) -> tuple[Decimal, Factor]:
    limit = Decimal(str(rules.max_change.pct)) / 100
    low, high = money(reference * (1 - limit)), money(reference * (1 + limit))
    if raw > high:
        return high, Factor("max_change", pct(high - raw, raw), f"{raw} held to +{rules.max_change.pct:g}% this run")
    if raw < low:
        return low, Factor("max_change", pct(low - raw, raw), f"{raw} held to -{rules.max_change.pct:g}% this run")
    return raw, Factor("max_change", 0.0, f"within {rules.max_change.pct:g}% of {reference}")


def _clamp(raw: Decimal, low: Decimal | None, high: Decimal | None) -> tuple[Decimal, Factor]:
    if low is not None and raw < low:
        return low, Factor("bounds", pct(low - raw, raw), f"{raw} raised to the owner's minimum {low}")
    if high is not None and raw > high:
        return high, Factor("bounds", pct(high - raw, raw), f"{raw} capped at the owner's maximum {high}")
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


def _expected_occupancy(signals: MarketSignals, market: MarketNight | None) -> float:
    """The chance the night sells: what the market has booked already, or its
    typical occupancy when more bookings are still to come."""
    if market is None:
        return signals.typical_occupancy or DEFAULT_EXPECTED_OCCUPANCY
    return round(min(0.98, max(market.occupancy, signals.typical_occupancy or 0.0)), 3)
