"""`stayops policy set` as the org-service simulator applies it: a change is merged
into the org's whole policy, per listing when one is named, and a policy
org-service could not announce is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from stayops_infra.orgsim import Org, PolicyChange, change_policy


def org(policy: dict[str, object] | None = None) -> Org:
    return Org(org_id="o-1", name="Solo host", kind="solo", listing_ids=["l-1"], policy=policy or {})


def test_org_limits_merge_into_the_policy_and_listing_limits_into_its_override() -> None:
    first = change_policy(org(), PolicyChange(approval_threshold_pct=5, floor=Decimal("30.00")))
    second = change_policy(org(first), PolicyChange(listing="l-1", currency="USD", max_change_pct=15,
                                                    ai_agents_may_decide=True))

    assert second == {"pricing": {"approval_threshold_pct": 5.0, "floor": "30.00"},
                      "listings": {"l-1": {"currency": "USD", "max_change_pct": 15.0}},
                      "ai_agents_may_decide": True}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (PolicyChange(currency="EUR"), "a currency is set per listing"),
        (PolicyChange(listing="l-1", currency="euro"), "currency"),
        (PolicyChange(max_change_pct=-1), "max_change_pct"),
        (PolicyChange(floor=Decimal("-5")), "floor"),
    ],
)
def test_a_policy_org_service_could_not_announce_is_refused(change: PolicyChange, says: str) -> None:
    with pytest.raises((ValueError, ValidationError), match=says):
        change_policy(org(), change)
