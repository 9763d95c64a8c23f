"""The profile an AI agent starts with, and how sync events become the read model."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from agent_service.domain import (
    Autonomy,
    SkillNotAvailable,
    analysis_activity,
    default_profile,
    failed_outcome,
    joined_activity,
    market_scope,
    platform_of,
    reservation_from,
)
from stayops_schemas.events.sync import (
    MarketRate,
    MarketRatesSynced,
    Platform,
    ReservationCancelled,
    ReservationChanged,
    ReservationStatus,
)

AT = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)


def test_a_revenue_manager_agent_starts_with_pricing_skills_and_only_suggests() -> None:
    profile = default_profile(org_id="org-1", user_id="u-ai", display_name="AI Revenue Manager",
                              role_id="revenue-manager", created_at=AT)

    assert profile.skills == ("pricing", "performance-review")
    assert profile.autonomy is Autonomy.SUGGEST
    assert profile.confidence_threshold == Decimal("0.7")


def test_a_guest_relations_agent_starts_with_the_guest_welcome_skill() -> None:
    profile = default_profile(org_id="org-1", user_id="u-ai-2", display_name="AI Guest Assistant",
                              role_id="guest-relations", created_at=AT)

    assert profile.skills == ("guest-welcome",)
    assert profile.autonomy is Autonomy.SUGGEST


def test_an_agent_in_a_role_without_defaults_starts_with_no_skill() -> None:
    profile = default_profile(org_id="org-1", user_id="u-ai", display_name="AI Concierge",
                              role_id="guest-communication", created_at=AT)

    assert profile.skills == ()
    assert profile.autonomy is Autonomy.SUGGEST


def test_joining_is_the_first_line_of_the_agents_activity() -> None:
    profile = default_profile(org_id="org-1", user_id="u-ai", display_name="AI Revenue Manager",
                              role_id="revenue-manager", created_at=AT)

    entry = joined_activity(profile, "Revenue Manager", id="a-1")

    assert (entry.agent_user_id, entry.at, entry.kind) == ("u-ai", AT, "profile.created")
    assert entry.summary == "joined as Revenue Manager; skills: pricing, performance-review; autonomy: suggest"


@pytest.mark.parametrize(("event_type", "platform"), [
    ("airbnb.reservation.created", Platform.AIRBNB),
    ("hostaway.listing.synced", Platform.HOSTAWAY),
])
def test_the_platform_is_the_event_types_prefix(event_type: str, platform: Platform) -> None:
    assert platform_of(event_type) is platform


BOOKING = {"reservation_id": "r-1", "listing_id": "l-1", "org_id": "org-1", "check_in": date(2025, 4, 10),
           "check_out": date(2025, 4, 13), "guests": 2, "nightly_rate": Decimal("129.50"),
           "total": Decimal("388.50"), "currency": "EUR", "booked_at": AT}


def test_a_cancellation_is_cancelled_whatever_status_it_repeats() -> None:
    event = ReservationCancelled(**BOOKING, status=ReservationStatus.CONFIRMED, cancelled_at=AT)

    reservation = reservation_from(event, Platform.AIRBNB, as_of=AT)

    assert (reservation.status, reservation.cancelled_at) == ("cancelled", AT)


def test_a_change_keeps_its_status_and_exact_amounts() -> None:
    event = ReservationChanged(**BOOKING, status=ReservationStatus.PENDING)

    reservation = reservation_from(event, Platform.AIRBNB, as_of=AT)

    assert (reservation.status, reservation.total, reservation.cancelled_at) == (
        "pending", Decimal("388.50"), None)


def test_market_data_is_kept_per_listing_or_per_area_whatever_its_case() -> None:
    rate = MarketRate(date=date(2025, 4, 10), median_price=Decimal("120.00"), occupancy=0.6)
    of_listing = MarketRatesSynced(org_id="org-1", listing_id="l-1", currency="EUR", rates=[rate], synced_at=AT)
    of_area = MarketRatesSynced(org_id="org-1", area=" Lisbon", currency="EUR", rates=[rate], synced_at=AT)

    assert (market_scope(of_listing), market_scope(of_area)) == ("listing:l-1", "area:lisbon")


def test_a_skill_the_agent_lacks_is_an_answer_that_says_why_in_its_log() -> None:
    profile = default_profile(org_id="org-1", user_id="u-ai", display_name="AI Revenue Manager",
                              role_id="revenue-manager", created_at=AT)

    outcome = failed_outcome("astrology", SkillNotAvailable("astrology", profile.skills))
    entry = analysis_activity(profile, outcome, task_id="t-1", at=AT, id="a-2")

    assert (outcome.confidence, outcome.result["error_type"]) == (0.0, "SkillNotAvailable")
    assert "pricing, performance-review" in outcome.summary
    assert (entry.kind, entry.task_id, entry.details["explanation"]) == ("skill.astrology", "t-1", outcome.explanation)
