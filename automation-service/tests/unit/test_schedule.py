"""When a schedule fires: wall-clock times in the automation's time zone across DST
changes, and one firing for a run of missed times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from automation_service.domain import (
    MAX_COUNTED_MISSED_RUNS,
    Automation,
    DueFiring,
    FiringDecision,
    OverlapPolicy,
    due_firing,
    missed_beyond_window,
    next_fire_time,
    overlap_decision,
)
from stayops_schemas.events.automations import AutomationType

SUNDAYS_9_PARIS = ("0 9 * * SUN", "Europe/Paris")


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def test_sunday_nine_in_paris_stays_nine_across_the_spring_dst_change() -> None:
    # Europe/Paris moves from UTC+1 to UTC+2 on Sunday 2025-03-30 at 02:00.
    clock = FixedClock(datetime(2025, 3, 24, 12, 0, tzinfo=UTC))
    before = next_fire_time(*SUNDAYS_9_PARIS, clock.now())
    after = next_fire_time(*SUNDAYS_9_PARIS, before)
    assert before == datetime(2025, 3, 30, 7, 0, tzinfo=UTC)  # 09:00 CEST, the day of the change
    assert after == datetime(2025, 4, 6, 7, 0, tzinfo=UTC)


def test_sunday_nine_in_paris_stays_nine_across_the_autumn_dst_change() -> None:
    # Back to UTC+1 on Sunday 2025-10-26.
    before = next_fire_time(*SUNDAYS_9_PARIS, datetime(2025, 10, 20, tzinfo=UTC))
    assert before == datetime(2025, 10, 26, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert next_fire_time(*SUNDAYS_9_PARIS, datetime(2025, 10, 19, 6, 59, tzinfo=UTC)) == datetime(
        2025, 10, 19, 7, 0, tzinfo=UTC)  # 09:00 CEST the week before


def test_the_next_time_is_strictly_after_the_one_just_fired() -> None:
    fired = datetime(2025, 3, 30, 7, 0, tzinfo=UTC)
    assert next_fire_time(*SUNDAYS_9_PARIS, fired) == datetime(2025, 4, 6, 7, 0, tzinfo=UTC)


def test_a_schedule_not_yet_due_does_not_fire() -> None:
    due = datetime(2025, 3, 30, 7, 0, tzinfo=UTC)
    assert due_firing(*SUNDAYS_9_PARIS, due, due - timedelta(seconds=1)) is None


def test_a_schedule_due_now_fires_for_its_time_and_moves_to_the_next() -> None:
    due = datetime(2025, 3, 30, 7, 0, tzinfo=UTC)
    assert due_firing(*SUNDAYS_9_PARIS, due, due + timedelta(seconds=3)) == DueFiring(
        scheduled_for=due, skipped_runs=0, next_fire_at=datetime(2025, 4, 6, 7, 0, tzinfo=UTC))


def test_missed_runs_fire_once_for_the_latest_and_count_the_skipped() -> None:
    # Down from before 2025-03-23 until Wednesday 2025-04-09: 23 Mar, 30 Mar and 6 Apr missed.
    clock = FixedClock(datetime(2025, 4, 9, 10, 0, tzinfo=UTC))
    firing = due_firing(*SUNDAYS_9_PARIS, datetime(2025, 3, 23, 8, 0, tzinfo=UTC), clock.now())
    assert firing == DueFiring(
        scheduled_for=datetime(2025, 4, 6, 7, 0, tzinfo=UTC),
        skipped_runs=2,
        next_fire_at=datetime(2025, 4, 13, 7, 0, tzinfo=UTC),
    )


def test_a_very_long_outage_still_fires_once_for_the_latest_time() -> None:
    now = datetime(2025, 4, 9, 10, 0, 30, tzinfo=UTC)
    firing = due_firing("* * * * *", "UTC", datetime(2025, 3, 1, tzinfo=UTC), now)
    assert firing is not None
    assert firing.scheduled_for == datetime(2025, 4, 9, 10, 0, tzinfo=UTC)
    assert firing.skipped_runs == MAX_COUNTED_MISSED_RUNS
    assert firing.next_fire_at == datetime(2025, 4, 9, 10, 1, tzinfo=UTC)


def weekly(next_fire_at: datetime | None, *, is_active: bool = True) -> Automation:
    at = datetime(2025, 3, 1, tzinfo=UTC)
    return Automation(id="a-1", org_id="org-1", name="Weekly pricing", kind=AutomationType.SCHEDULED,
                      is_active=is_active, created_by="u-1", created_at=at, updated_at=at,
                      cron=SUNDAYS_9_PARIS[0], timezone=SUNDAYS_9_PARIS[1], next_fire_at=next_fire_at,
                      action={"type": "start_workflow", "workflow_key": "dynamic-pricing"})


def test_a_paused_schedule_owes_nothing_for_the_time_it_was_paused() -> None:
    clock = FixedClock(datetime(2025, 3, 20, tzinfo=UTC))
    paused = weekly(datetime(2025, 3, 23, 8, 0, tzinfo=UTC)).paused(clock.now())
    assert (paused.is_active, paused.next_fire_at) == (False, None)
    clock.advance(timedelta(days=30))
    resumed = paused.resumed(clock.now(), clock.now())
    assert resumed.is_active
    assert resumed.next_fire_at == datetime(2025, 4, 20, 7, 0, tzinfo=UTC)


def firings_between(cron: str, timezone: str, start: datetime, end: datetime,
                    step: timedelta = timedelta(minutes=5)) -> list[datetime]:
    """What a scheduler fires when its clock ticks from `start` to `end`: the times
    `due_firing` hands it, the schedule advanced after each, as the scheduler does."""
    clock = FixedClock(start)
    next_fire_at = next_fire_time(cron, timezone, clock.now())
    fired = []
    while clock.now() < end:
        clock.advance(step)
        firing = due_firing(cron, timezone, next_fire_at, clock.now())
        if firing is not None:
            fired.append(firing.scheduled_for)
            next_fire_at = firing.next_fire_at
    return fired


def test_a_fixed_time_fires_once_on_the_day_new_york_goes_back() -> None:
    # 2025-11-02: 02:00 EDT becomes 01:00 EST, so 01:30 happens twice on the wall clock.
    fired = firings_between("30 1 * * *", "America/New_York", datetime(2025, 11, 1, 12, tzinfo=UTC),
                            datetime(2025, 11, 3, 12, tzinfo=UTC))
    assert fired == [datetime(2025, 11, 2, 5, 30, tzinfo=UTC), datetime(2025, 11, 3, 6, 30, tzinfo=UTC)]


def test_a_fixed_time_fires_once_on_the_days_lisbon_goes_back_and_forward() -> None:
    back = firings_between("30 1 * * *", "Europe/Lisbon", datetime(2025, 10, 25, 12, tzinfo=UTC),
                           datetime(2025, 10, 26, 12, tzinfo=UTC))
    assert back == [datetime(2025, 10, 26, 0, 30, tzinfo=UTC)]  # 01:30 WEST, not again at 01:30 WET
    # 2025-03-30: 01:00 WET becomes 02:00 WEST; 01:30 does not exist and fires once, just after the gap.
    forward = firings_between("30 1 * * *", "Europe/Lisbon", datetime(2025, 3, 29, 12, tzinfo=UTC),
                              datetime(2025, 3, 30, 12, tzinfo=UTC))
    assert forward == [datetime(2025, 3, 30, 1, 0, tzinfo=UTC)]


def test_the_weekly_pricing_fires_once_on_each_dst_sunday_in_lisbon_and_new_york() -> None:
    for timezone, sunday in (("Europe/Lisbon", datetime(2025, 3, 30, tzinfo=UTC)),
                             ("Europe/Lisbon", datetime(2025, 10, 26, tzinfo=UTC)),
                             ("America/New_York", datetime(2025, 3, 9, tzinfo=UTC)),
                             ("America/New_York", datetime(2025, 11, 2, tzinfo=UTC))):
        fired = firings_between("0 9 * * 0", timezone, sunday - timedelta(hours=12), sunday + timedelta(hours=36),
                                step=timedelta(minutes=15))
        assert len(fired) == 1, (timezone, fired)
        assert fired[0].astimezone(ZoneInfo(timezone)).hour == 9


def test_an_overlapping_time_is_skipped_buffered_once_or_allowed_by_policy() -> None:
    assert overlap_decision(OverlapPolicy.SKIP, open_runs=0, buffered=0) is FiringDecision.FIRE
    assert overlap_decision(OverlapPolicy.SKIP, open_runs=1, buffered=0) is FiringDecision.SKIP
    assert overlap_decision(OverlapPolicy.BUFFER_ONE, open_runs=1, buffered=0) is FiringDecision.BUFFER
    assert overlap_decision(OverlapPolicy.BUFFER_ONE, open_runs=1, buffered=1) is FiringDecision.SKIP
    assert overlap_decision(OverlapPolicy.ALLOW, open_runs=3, buffered=0) is FiringDecision.FIRE


def test_a_time_missed_longer_ago_than_the_catch_up_window_is_not_run() -> None:
    due = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)
    assert missed_beyond_window(due, due + timedelta(hours=2), 3600)
    assert not missed_beyond_window(due, due + timedelta(minutes=30), 3600)
    assert not missed_beyond_window(due, due + timedelta(days=30), None)
