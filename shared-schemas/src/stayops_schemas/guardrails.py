"""Price guardrails as org policy, pure: which prices may be published and which
changes need a person. One implementation, enforced at three places - when a
decision is taken (workflow-service), when an owner edits prices (task-service)
and before publishing (automation-service) - so they can never disagree.

A refused price is reported per night with the reason; nothing is clamped."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from stayops_schemas.events.org import OrgPolicyUpdated, PriceGuardrails

# An org that never announced a policy gets these: a person approves any change of
# 10 % or more, no night moves more than 50 % in one go, nothing is free.
DEFAULT_APPROVAL_THRESHOLD_PCT = 10.0
DEFAULT_MAX_CHANGE_PCT = 50.0
DEFAULT_FLOOR = Decimal("1.00")


@dataclass(frozen=True)
class Guardrails:
    """The guardrails of one listing, every field resolved."""

    approval_threshold_pct: float
    max_change_pct: float
    floor: Decimal
    ceiling: Decimal | None
    currency: str | None


def default_policy(org_id: str) -> OrgPolicyUpdated:
    return OrgPolicyUpdated(org_id=org_id, updated_at=dt.datetime(1970, 1, 1, tzinfo=dt.UTC))


def guardrails_for(policy: OrgPolicyUpdated, listing_id: str | None) -> Guardrails:
    """The listing's own guardrails over the org's over the defaults."""
    org = policy.pricing
    own = policy.listings.get(listing_id or "") or PriceGuardrails()

    def pick(name: str, default: Any) -> Any:
        for source in (own, org):
            value = getattr(source, name)
            if value is not None:
                return value
        return default

    return Guardrails(
        approval_threshold_pct=float(pick("approval_threshold_pct", DEFAULT_APPROVAL_THRESHOLD_PCT)),
        max_change_pct=float(pick("max_change_pct", DEFAULT_MAX_CHANGE_PCT)),
        floor=Decimal(pick("floor", DEFAULT_FLOOR)),
        ceiling=pick("ceiling", None),
        currency=own.currency,
    )


@dataclass(frozen=True)
class PriceRefusal:
    """One night that may not be published, and why."""

    listing_id: str
    date: str
    price: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"listing_id": self.listing_id, "date": self.date, "price": self.price, "reason": self.reason}


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def change_pct(price: Decimal, previous: Decimal | None) -> float | None:
    """The change against the previous price, in percent; None without a previous one."""
    if previous is None or previous <= 0:
        return None
    return float((price - previous) / previous * 100)


def check_price(guard: Guardrails, night: Mapping[str, Any]) -> str | None:
    """Why this night's price may not be published, or None. A night is a mapping
    with `price`, optional `previous_price` (or `current_price`), `currency`,
    `min_price` and `max_price` (the listing owner's bounds)."""
    price = _decimal(night.get("price"))
    if price is None:
        return f"price {night.get('price')!r} is not an amount"
    if price <= 0:
        return f"price {price} is not above zero"
    currency = night.get("currency")
    if guard.currency is not None and currency not in (None, guard.currency):
        return f"the listing is priced in {guard.currency}, not {currency}"
    if price < guard.floor:
        return f"price {price} is below the org's floor of {guard.floor}"
    if guard.ceiling is not None and price > guard.ceiling:
        return f"price {price} is above the org's ceiling of {guard.ceiling}"
    low, high = _decimal(night.get("min_price")), _decimal(night.get("max_price"))
    if low is not None and price < low:
        return f"price {price} is below the listing's minimum of {low}"
    if high is not None and price > high:
        return f"price {price} is above the listing's maximum of {high}"
    previous = _decimal(night.get("previous_price", night.get("current_price")))
    change = change_pct(price, previous)
    if change is not None and abs(change) > guard.max_change_pct + 1e-9:
        return (f"a change of {change:+.1f} % from {previous} is more than the "
                f"{guard.max_change_pct:g} % a night may move")
    return None


def check_prices(policy: OrgPolicyUpdated, nights: Iterable[Mapping[str, Any]]) -> list[PriceRefusal]:
    """Every night that breaks its listing's guardrails, with the reason."""
    refused = []
    for night in nights:
        listing_id = str(night.get("listing_id") or "")
        reason = check_price(guardrails_for(policy, listing_id), night)
        if reason is not None:
            refused.append(PriceRefusal(listing_id, str(night.get("date") or ""),
                                        str(night.get("price")), reason))
    return refused


def needs_person(policy: OrgPolicyUpdated, nights: Iterable[Mapping[str, Any]],
                 run_threshold_pct: float | None = None) -> str | None:
    """Why these prices need a person's approval, or None when a rule may approve
    them: a night at or above its approval threshold (a run's own threshold can only
    lower the org's, never raise it), or a night the guardrails refuse."""
    for night in nights:
        listing_id = str(night.get("listing_id") or "")
        guard = guardrails_for(policy, listing_id)
        threshold = guard.approval_threshold_pct
        if run_threshold_pct is not None:
            threshold = min(threshold, run_threshold_pct)
        reason = check_price(guard, night)
        if reason is not None:
            return f"{listing_id} {night.get('date')}: {reason}"
        price, previous = _decimal(night.get("price")), _decimal(night.get("previous_price",
                                                                          night.get("current_price")))
        change = change_pct(price, previous) if price is not None else None
        if change is not None and abs(change) >= threshold:
            return (f"{listing_id} {night.get('date')}: a change of {change:+.1f} % reaches the "
                    f"approval threshold of {threshold:g} %")
    return None
