"""Event automations, pure: which events wake an automation, what its filter and
keys say, and when its tasks are due in each listing's local time — across time
zones and DST changes."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from automation_service import reactions
from automation_service.domain import InvalidAction
from automation_service.reactions import CancelPlan, NotPlanned, TaskPlan, local_instant, plan_actions
from stayops_kit.expressions import ExpressionError
from stayops_schemas.canonical import canonical_of
from stayops_schemas.envelope import Envelope

LISBON, NEW_YORK = ZoneInfo("Europe/Lisbon"), ZoneInfo("America/New_York")
T0 = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)


def event(type_: str, **data: Any) -> dict[str, Any]:
    envelope = Envelope(id="e-1", type=type_, source="/sync-airbnb", orgid="org-1", partitionkey="l-1",
                        data={"org_id": "org-1", "listing_id": "l-1", **data}, time=T0)
    return reactions.names_of(canonical_of(envelope), {"listing_id": "l-1", "title": "Seaside loft"})


CLEANING = {"type": "create_task", "key": "cleaning", "link": "${data.reservation_id}",
            "title": "Clean ${listing.title} after ${data.reservation_id}", "role_id": "operations",
            "due": {"date": "data.check_out", "at": "11:00"}, "when": "type != 'reservation.cancelled'",
            "data": {"reservation_id": "${data.reservation_id}", "guests": "${data.guests}"}}
CANCEL = {"type": "cancel_tasks", "link": "${data.reservation_id}", "reason": "reservation cancelled",
          "when": "type == 'reservation.cancelled'"}


def test_on_matches_the_canonical_type_a_pattern_or_the_platforms_own_type() -> None:
    created = canonical_of(Envelope(id="e", type="hostaway.reservation.created", source="/sync-hostaway",
                                    orgid="o", partitionkey="k", data={}, time=T0))
    assert reactions.matches("reservation.created", created)
    assert reactions.matches("reservation.*", created)
    assert reactions.matches("hostaway.reservation.created", created)
    assert not reactions.matches("airbnb.reservation.created", created)
    assert not reactions.matches("review.created", created)


def test_a_filter_is_true_or_false_over_the_events_data() -> None:
    assert reactions.filter_value("data.rating <= 3", event("review.created", rating=2))
    assert not reactions.filter_value("data.rating <= 3", event("review.created", rating=5))
    assert reactions.filter_value(None, event("review.created", rating=5))
    with pytest.raises(ExpressionError):
        reactions.filter_value("data.__class__", event("review.created", rating=5))


def test_the_dedupe_key_defaults_to_the_event_id_and_renders_a_template() -> None:
    names = event("reservation.created", reservation_id="r-1")
    assert reactions.key_of(None, reactions.DEFAULT_DEDUPE_KEY, names, "fallback") == "e-1"
    assert reactions.key_of("${data.reservation_id}", reactions.DEFAULT_DEDUPE_KEY, names, "x") == "r-1"
    assert reactions.key_of("${data.missing}", reactions.DEFAULT_DEDUPE_KEY, names, "e-1") == "e-1"


def test_cleaning_is_due_at_eleven_on_check_out_day_in_the_listings_zone() -> None:
    [plan] = plan_actions(reactions.parse_actions([CLEANING, CANCEL])[:1],
                          event("reservation.created", reservation_id="r-1", check_out="2025-07-10", guests=2),
                          LISBON)
    assert isinstance(plan, TaskPlan)
    assert plan.due_at == dt.datetime(2025, 7, 10, 10, 0, tzinfo=dt.UTC)  # 11:00 WEST = 10:00 UTC
    assert (plan.title, plan.role_id, plan.link) == ("Clean Seaside loft after r-1", "operations", "r-1")
    assert plan.data == {"reservation_id": "r-1", "guests": 2}


def test_a_cancelled_reservation_plans_the_cancel_and_skips_the_task() -> None:
    plans = plan_actions(reactions.parse_actions([CLEANING, CANCEL]),
                         event("reservation.cancelled", reservation_id="r-1", check_out="2025-07-10"), LISBON)
    assert isinstance(plans[0], NotPlanned) and not plans[0].failed
    assert plans[1] == CancelPlan(link="r-1", keys=None, reason="reservation cancelled")


@pytest.mark.parametrize(("zone", "day", "at", "offset", "expected_utc"), [
    # 2 hours after a 15:00 check-in, the day Lisbon goes to summer time (30 March 2025).
    (LISBON, "2025-03-30", dt.time(15), dt.timedelta(hours=2), dt.datetime(2025, 3, 30, 16, 0)),
    # the day before, still winter time (UTC+0)
    (LISBON, "2025-03-29", dt.time(15), dt.timedelta(hours=2), dt.datetime(2025, 3, 29, 17, 0)),
    # 11:00 on the day New York goes back to standard time (2 November 2025): EST, UTC-5
    (NEW_YORK, "2025-11-02", dt.time(11), dt.timedelta(0), dt.datetime(2025, 11, 2, 16, 0)),
    (NEW_YORK, "2025-11-01", dt.time(11), dt.timedelta(0), dt.datetime(2025, 11, 1, 15, 0)),
    # 09:00 three days before arrival stays 09:00 local across the change
    (NEW_YORK, "2025-11-04", dt.time(9), -dt.timedelta(days=3), dt.datetime(2025, 11, 1, 13, 0)),
    # 02:30 does not exist in New York on 9 March 2025: it lands just after the gap, 03:30 EDT
    (NEW_YORK, "2025-03-09", dt.time(2, 30), dt.timedelta(0), dt.datetime(2025, 3, 9, 7, 30)),
])
def test_local_times_are_planned_in_the_zone_across_dst(zone: ZoneInfo, day: str, at: dt.time,
                                                        offset: dt.timedelta, expected_utc: dt.datetime) -> None:
    assert local_instant(day, at, offset, zone) == expected_utc.replace(tzinfo=dt.UTC)


def test_an_action_that_cannot_be_planned_fails_alone() -> None:
    broken = {**CLEANING, "due": {"date": "data.check_out.day", "at": "11:00"}}
    plans = plan_actions(reactions.parse_actions([broken, {**CLEANING, "key": "other"}]),
                         event("reservation.created", reservation_id="r-1", check_out="2025-07-10"), LISBON)
    assert isinstance(plans[0], NotPlanned) and plans[0].failed
    assert isinstance(plans[1], TaskPlan)


def test_an_automation_without_actions_or_with_a_forbidden_expression_is_refused() -> None:
    with pytest.raises(InvalidAction):
        reactions.check_event_automation("review.created", None, None, None, [])
    with pytest.raises(ExpressionError):
        reactions.check_event_automation("review.created", "__import__('os')", None, None, [CANCEL])
    with pytest.raises(ExpressionError):
        reactions.check_event_automation("review.created", None, None, None,
                                         [{**CLEANING, "title": "${data.f()}"}])
