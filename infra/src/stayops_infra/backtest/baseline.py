"""BASELINE, not pricing v2: the default rules of a typical popular dynamic-pricing
tool, as its published defaults describe them, so that pricing v2 is compared with
what an owner would get by switching such a tool on and changing nothing.

The rules, applied to the owner's base price, multiplied:
- seasonality: the market's median price of the night's month against its median
  over the year known (capped at +-25 %);
- weekend premium: Friday and Saturday nights +10 %;
- last-minute discount: open nights within 14 days, linearly up to -25 % on the day;
- far-out premium: nights 90 days ahead or more +10 %;
- orphan nights: 1-2 open nights between bookings -20 %, minimum stay lowered to fit;
- occupancy-based adjustment: the listing's occupancy over the next 30 nights
  against the market's; 10 points or more below: -10 %, above: +10 %;
- then clamped into the owner's [min, max]; the minimum stay otherwise stays the
  owner's."""

from __future__ import annotations

import statistics
from collections.abc import Mapping

from stayops_infra.backtest.market import Listing

WEEKEND_PCT = 10.0
LAST_MINUTE_DAYS = 14
LAST_MINUTE_PCT = 25.0
FAR_OUT_DAYS = 90
FAR_OUT_PCT = 10.0
ORPHAN_NIGHTS = 2
ORPHAN_PCT = 20.0
OCCUPANCY_WINDOW = 30
OCCUPANCY_GAP = 0.10
OCCUPANCY_PCT = 10.0
SEASON_CAP_PCT = 25.0


def baseline_prices(
    listing: Listing, *, day: int, horizon: int, month_of: Mapping[int, int],
    medians: Mapping[int, float], occupancy: Mapping[int, float], weekday_of: Mapping[int, int],
) -> tuple[list[float], list[int]]:
    """Prices and minimum stays for nights [day, day + horizon) (indices)."""
    by_month: dict[int, list[float]] = {}
    for night, median in medians.items():
        by_month.setdefault(month_of[night], []).append(median)
    typical = statistics.median(medians.values()) if medians else None
    month_level = {m: statistics.median(v) for m, v in by_month.items()}
    window = [n for n in range(day, day + OCCUPANCY_WINDOW) if n in occupancy]
    own = sum(1 for n in window if listing.booked >> n & 1) / len(window) if window else 0.0
    market = statistics.fmean(occupancy[n] for n in window) if window else 0.0
    occupancy_pct = (OCCUPANCY_PCT if own >= market + OCCUPANCY_GAP
                     else -OCCUPANCY_PCT if own <= market - OCCUPANCY_GAP else 0.0)
    prices, min_stays = [], []
    for night in range(day, day + horizon):
        lead = night - day
        pct = [occupancy_pct]
        if typical and month_of[night] in month_level:
            pct.append(max(-SEASON_CAP_PCT, min(SEASON_CAP_PCT, (month_level[month_of[night]] / typical - 1) * 100)))
        if weekday_of[night] in (4, 5):
            pct.append(WEEKEND_PCT)
        if lead < LAST_MINUTE_DAYS:
            pct.append(-LAST_MINUTE_PCT * (LAST_MINUTE_DAYS - lead) / LAST_MINUTE_DAYS)
        elif lead >= FAR_OUT_DAYS:
            pct.append(FAR_OUT_PCT)
        gap = _orphan_left(listing, night, day)
        if gap:
            pct.append(-ORPHAN_PCT)
        price = listing.base_price
        for p in pct:
            price *= 1 + p / 100
        prices.append(round(max(listing.min_price, min(listing.max_price, price)), 2))
        min_stays.append(min(listing.min_stay, gap) if gap else listing.min_stay)
    return prices, min_stays


def _orphan_left(listing: Listing, night: int, today: int) -> int:
    """Nights left in the orphan gap from `night` (0 when it is not in one)."""
    if listing.booked >> night & 1:
        return 0
    start = night
    while start > today and not listing.booked >> (start - 1) & 1:
        start -= 1
        if night - start >= ORPHAN_NIGHTS:
            return 0
    end = night
    while not listing.booked >> end & 1:
        end += 1
        if end - start > ORPHAN_NIGHTS:
            return 0
    return end - night
