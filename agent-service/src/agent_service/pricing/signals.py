"""What the market data says, read once per listing: the market's typical price,
its seasonal level and weekday pattern, each night's own premium (an event), how
fast nights are booking against the usual pace at their lead time, and how full
the market got around each night a year before."""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent_service.pricing.model import MarketNight

SEASON_WINDOW_DAYS = 14  # either side: a month-long moving average is a season
MIN_PAST_NIGHTS = 14  # past nights needed to trust the market's typical occupancy
CURVE_WINDOW_DAYS = 10  # either side, in lead time: nights booked about as far ahead
LAST_YEAR_DAYS = 364  # 52 weeks back: the same weekday a year before
LAST_YEAR_WINDOW_DAYS = 7  # either side of that night
MIN_LAST_YEAR_NIGHTS = 7  # past nights around it needed to read its season


@dataclass(frozen=True)
class MarketSignals:
    typical_price: float | None
    season: Mapping[dt.date, float]  # the moving-average level against the typical price
    weekday: Mapping[int, float]  # the weekday's usual price against its season's level
    typical_occupancy: float | None
    # Share of a night's bookings usually made at least `lead` days ahead (index = lead).
    booking_curve: Sequence[float]
    # The market's final occupancy a year before each night (around it), as a ratio
    # to its typical occupancy; missing where the history does not reach back.
    season_occupancy: Mapping[dt.date, float] = field(default_factory=dict)

    def usual_occupancy(self, lead: int) -> float | None:
        """The market's usual occupancy, as of today, of a night `lead` days ahead."""
        if self.typical_occupancy is None:
            return None
        curve = self.booking_curve
        return self.typical_occupancy * curve[min(lead, len(curve) - 1)]

    def sell_chance(self, lead: int) -> float | None:
        """How likely a night still open `lead` days ahead is to sell, against a night
        whose bookings are all still to come: the bookings the market usually still
        makes on it from now, over the share of it still free. Near 1 where most
        bookings come late; near 0 where the nights are usually full by then."""
        if not self.typical_occupancy:
            return None
        curve = self.booking_curve
        booked = min(1.0, curve[min(lead, len(curve) - 1)])
        free = 1 - self.typical_occupancy * booked
        return min(1.0, (1 - booked) / free) if free > 0 else 0.0

    def night_premium(self, night: dt.date, market: MarketNight) -> float:
        """How much dearer the market is on this night than its season and weekday
        explain (an event, known or not), as a ratio."""
        if self.typical_price is None or night not in self.season:
            return 1.0
        explained = self.typical_price * self.season[night] * self.weekday.get(night.weekday(), 1.0)
        return float(market.median_price) / explained if explained > 0 else 1.0


def read_market(market: Mapping[dt.date, MarketNight], today: dt.date) -> MarketSignals:
    curve = booking_curve(market, today)
    if not market:
        return MarketSignals(None, {}, {}, None, curve)
    dates = sorted(market)
    prices = [float(market[d].median_price) for d in dates]
    typical = statistics.median(prices)
    if typical <= 0:
        return MarketSignals(None, {}, {}, None, curve)
    level = _moving_average(dates, prices, SEASON_WINDOW_DAYS)
    season = {d: level[d] / typical for d in dates}
    by_weekday: dict[int, list[float]] = {}
    for d, price in zip(dates, prices, strict=True):
        by_weekday.setdefault(d.weekday(), []).append(price / level[d])
    raw = {wd: statistics.median(values) for wd, values in by_weekday.items()}
    mean = statistics.fmean(raw.values())
    weekday = {wd: value / mean for wd, value in raw.items()}
    past = [market[d].occupancy for d in dates if d < today]
    soon = [market[d].occupancy for d in dates if today <= d < today + dt.timedelta(days=7)]
    typical_occupancy = (statistics.fmean(past) if len(past) >= MIN_PAST_NIGHTS
                         else statistics.fmean(soon) if soon else None)
    return MarketSignals(typical, season, weekday, typical_occupancy, curve,
                         last_year_occupancy(market, today, typical_occupancy))


def last_year_occupancy(market: Mapping[dt.date, MarketNight], today: dt.date,
                        typical: float | None) -> dict[dt.date, float]:
    """For each night from today: the market's final occupancy on the nights around
    the same night a year before (52 weeks, so the weekdays match), against its
    typical occupancy. A season that filled the market last year fills it again:
    where the market's history reaches back that far, this reads how full a night's
    season gets, which today's bookings a long way ahead do not show yet."""
    if not typical or typical <= 0:
        return {}
    past = {d: m.occupancy for d, m in market.items() if d < today}
    if not past:
        return {}
    first = min(past)
    days = (today - first).days
    # Prefix sums over the past days: the count and total of nights known.
    count, total = [0], [0.0]
    for i in range(days):
        value = past.get(first + dt.timedelta(days=i))
        count.append(count[-1] + (value is not None))
        total.append(total[-1] + (value or 0.0))
    found: dict[dt.date, float] = {}
    for night in (d for d in market if d >= today):
        centre = (night - first).days - LAST_YEAR_DAYS
        low, high = max(0, centre - LAST_YEAR_WINDOW_DAYS), min(days, centre + LAST_YEAR_WINDOW_DAYS + 1)
        if high - low <= 0 or count[high] - count[low] < MIN_LAST_YEAR_NIGHTS:
            continue
        found[night] = (total[high] - total[low]) / (count[high] - count[low]) / typical
    return found


def booking_curve(market: Mapping[dt.date, MarketNight], today: dt.date) -> list[float]:
    """The market's occupancy, as of today, of the nights about `lead` days ahead
    (a moving average over the lead time), against its typical final occupancy, for
    each lead: how booked a night that far ahead usually is by now. Read from the
    market rather than the listing's own bookings, whose pace follows its own prices."""
    ahead = sorted(d for d in market if d >= today)
    past = [market[d].occupancy for d in market if d < today]
    if not ahead:
        return [1.0]
    pace = _centred_mean(ahead, [market[d].occupancy for d in ahead], CURVE_WINDOW_DAYS)
    typical = statistics.fmean(past) if len(past) >= MIN_PAST_NIGHTS else max(pace.values())
    by_lead = {(d - today).days: pace[d] for d in ahead}
    curve, level = [], 1.0
    for lead in range(max(by_lead) + 1):
        if lead in by_lead and typical > 0:
            level = by_lead[lead] / typical
        curve.append(level)
    return curve


def _moving_average(dates: list[dt.date], values: list[float], half_window: int) -> dict[dt.date, float]:
    """The mean of the values dated within `half_window` days of each date (dates sorted)."""
    found: dict[dt.date, float] = {}
    low = high = 0
    total = 0.0
    for d in dates:
        while high < len(dates) and (dates[high] - d).days <= half_window:
            total += values[high]
            high += 1
        while (d - dates[low]).days > half_window:
            total -= values[low]
            low += 1
        found[d] = total / (high - low)
    return found


def _centred_mean(dates: list[dt.date], values: list[float], half_window: int) -> dict[dt.date, float]:
    """The mean of the values dated within `half` days of each date, where `half` is
    `half_window` shrunk to the days there are on both sides (dates sorted): the
    window stays centred at the edges. A one-sided window there would average a
    trend (occupancy falls with lead time) into a level that is not the date's: too
    low on the first nights, too high on the last."""
    if not dates:
        return {}
    first, last = dates[0], dates[-1]
    found: dict[dt.date, float] = {}
    for i, d in enumerate(dates):
        half = min(half_window, (d - first).days, (last - d).days)
        low = high = i
        while low > 0 and (d - dates[low - 1]).days <= half:
            low -= 1
        while high + 1 < len(dates) and (dates[high + 1] - d).days <= half:
            high += 1
        found[d] = statistics.fmean(values[low:high + 1])
    return found
