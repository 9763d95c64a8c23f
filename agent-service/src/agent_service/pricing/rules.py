"""The pricing customisations an owner can tune, per org and per listing: each rule
with its parameters and defaults, and how overrides are merged.

Precedence of overrides: a listing's override beats its org's, which beats the
defaults below. Precedence of minimum stays on one night: an orphan gap's length,
then the last-minute minimum, then the far-out minimum, then the default (the
listing's own minimum stay, else `MinStay.default`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stayops_kit.errors import InvalidRequest


class InvalidRules(InvalidRequest):
    """A rule override names an unknown rule or parameter, or a value out of range."""


@dataclass(frozen=True)
class LastMinute:
    """An open night close to its date is unlikely to sell at full price: the
    discount grows linearly from 0 at `days` ahead to `max_discount_pct` on the day,
    scaled down where the market's booking curve still expects guests for the night
    and where the market books that night faster than usual."""

    days: int = 15
    max_discount_pct: float = 30.0


@dataclass(frozen=True)
class FarOut:
    """A night far ahead can wait for a guest who pays more."""

    from_days: int = 90
    premium_pct: float = 5.0


@dataclass(frozen=True)
class OrphanGap:
    """1..`max_nights` open nights between two bookings (or a booking and today)
    rarely sell to a normal stay: discount them and let a stay of the gap's length in."""

    max_nights: int = 2
    discount_pct: float = 15.0


@dataclass(frozen=True)
class MinStay:
    """Minimum stay in nights for a stay that starts on a night. `far_out` applies
    from `far_out_days` ahead and `last_minute` within `last_minute_days`; None
    means "the default"."""

    default: int = 2
    far_out_days: int = 90
    far_out: int | None = None
    last_minute_days: int = 7
    last_minute: int | None = 1


@dataclass(frozen=True)
class Premiums:
    """Fixed premiums on top of what the market shows. The weekend premium is 0 by
    default because the market's own day-of-week pattern is already followed; an
    event premium only adds what the market's price for that night does not show yet."""

    weekend_pct: float = 0.0
    weekend_nights: tuple[int, ...] = (4, 5)  # Friday and Saturday nights
    event_pct: float = 10.0


@dataclass(frozen=True)
class Market:
    """How strongly the market's signals move the price: `follow` is the share of the
    market's seasonal and weekday price swing the listing follows; `demand_weight`
    the percent of price per unit of booking pace above or below the usual pace at
    that lead time; `position_weight` how much of the position learned from the
    listing's bookings replaces the owner's base (per booked night, see `position_nights`);
    `season_demand_weight` the percent of price per unit of the market's final
    occupancy a year before (around the night) above its typical occupancy, up to
    `season_demand_cap`: a season that fills the market is one whose guests have
    little choice, so its nights bear more. Upward only: a season that left the
    market empty is met by the last-minute discount and the demand pace already."""

    follow: float = 1.0
    season_cap_pct: float = 45.0
    day_of_week_cap_pct: float = 30.0
    night_cap_pct: float = 40.0
    demand_weight_pct: float = 40.0
    demand_cap_pct: float = 25.0
    season_demand_weight_pct: float = 200.0
    season_demand_cap_pct: float = 40.0
    position_nights: int = 100
    position_cap_pct: float = 10.0


@dataclass(frozen=True)
class Occupancy:
    """The listing's own occupancy over the next `window_days` against the market's
    on the same nights: ahead of the market means it is cheap, behind means dear."""

    window_days: int = 30
    weight_pct: float = 30.0
    cap_pct: float = 15.0


@dataclass(frozen=True)
class MaxChange:
    """No night moves more than `pct` percent from its current price in one run
    (the owner's minimum and maximum still win)."""

    pct: float = 35.0


@dataclass(frozen=True)
class PricingRules:
    last_minute: LastMinute = field(default_factory=LastMinute)
    far_out: FarOut = field(default_factory=FarOut)
    orphan_gap: OrphanGap = field(default_factory=OrphanGap)
    min_stay: MinStay = field(default_factory=MinStay)
    premiums: Premiums = field(default_factory=Premiums)
    market: Market = field(default_factory=Market)
    occupancy: Occupancy = field(default_factory=Occupancy)
    max_change: MaxChange = field(default_factory=MaxChange)

    def overridden(self, overrides: Mapping[str, Any] | None) -> PricingRules:
        """These rules with `overrides` (`{"last_minute": {"days": 10}}`) applied;
        raises `InvalidRules` naming what is wrong."""
        if not overrides:
            return self
        changes: dict[str, Any] = {}
        for rule, params in overrides.items():
            current = getattr(self, rule, None) if rule in _RULES else None
            if current is None:
                raise InvalidRules(f"unknown pricing rule {rule!r}; known rules: {', '.join(_RULES)}")
            if not isinstance(params, Mapping):
                raise InvalidRules(f"rule {rule!r} takes an object of parameters")
            changes[rule] = _override(rule, current, params)
        return dataclasses.replace(self, **changes)


_RULES = tuple(f.name for f in dataclasses.fields(PricingRules))
DEFAULT_RULES = PricingRules()


def _override(rule: str, current: Any, params: Mapping[str, Any]) -> Any:
    known = {f.name: f for f in dataclasses.fields(current)}
    values: dict[str, Any] = {}
    for name, value in params.items():
        if name not in known:
            raise InvalidRules(f"unknown parameter {name!r} of rule {rule!r}; known: {', '.join(known)}")
        if value is None and name not in ("far_out", "last_minute"):
            continue
        if name == "weekend_nights":
            if not isinstance(value, list | tuple) or not all(isinstance(d, int) and 0 <= d <= 6 for d in value):
                raise InvalidRules("premiums.weekend_nights is a list of weekdays, 0 (Monday) to 6 (Sunday)")
            value = tuple(value)
        elif value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRules(f"{rule}.{name} must be a number")
            if value < 0:
                raise InvalidRules(f"{rule}.{name} must not be negative")
            if isinstance(getattr(current, name), int) and not isinstance(value, int):
                raise InvalidRules(f"{rule}.{name} must be a whole number")
        values[name] = value
    merged = dataclasses.replace(current, **values)
    _check(rule, merged)
    return merged


def _check(rule: str, merged: Any) -> None:
    if isinstance(merged, LastMinute) and merged.max_discount_pct >= 100:
        raise InvalidRules("last_minute.max_discount_pct must be below 100")
    if isinstance(merged, OrphanGap) and merged.discount_pct >= 100:
        raise InvalidRules("orphan_gap.discount_pct must be below 100")
    if isinstance(merged, MinStay) and (merged.default < 1 or (merged.far_out or 1) < 1
                                        or (merged.last_minute or 1) < 1):
        raise InvalidRules("min_stay values are at least 1 night")
    if isinstance(merged, MaxChange) and merged.pct <= 0:
        raise InvalidRules("max_change.pct must be above 0")
