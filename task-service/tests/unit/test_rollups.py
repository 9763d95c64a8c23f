"""The expected finish of a project's open work, and its roll-ups per milestone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from task_service.projects import Rollup, expected_finish, rollups

NOW = datetime(2030, 1, 1, tzinfo=UTC)
DUE = datetime(2030, 1, 20, tzinfo=UTC)
DAY = 86_400.0


def test_the_later_of_the_latest_due_and_the_open_work_at_the_median_pace() -> None:
    assert expected_finish(0, DUE, DAY, NOW) is None
    assert expected_finish(3, None, None, NOW) is None
    assert expected_finish(3, DUE, None, NOW) == DUE
    assert expected_finish(3, None, DAY, NOW) == NOW + timedelta(days=3)
    assert expected_finish(3, DUE, DAY, NOW) == DUE
    assert expected_finish(30, DUE, DAY, NOW) == NOW + timedelta(days=30)


def test_a_project_rolls_its_milestones_up_with_one_median() -> None:
    rows = {
        "m1": {"done": 2, "total": 2, "open": 0, "latest_due": None, "median_s": DAY, "durations": [DAY, DAY]},
        None: {"done": 0, "total": 2, "open": 2, "latest_due": DUE, "median_s": None, "durations": None},
        "m2": {"done": 1, "total": 3, "open": 2, "latest_due": None, "median_s": 10 * DAY,
               "durations": [10 * DAY]},
    }
    project, per = rollups(rows, NOW)
    assert per["m1"] == Rollup(2, 2, 0, None)
    assert per[None] == Rollup(0, 2, 2, DUE)
    assert per["m2"] == Rollup(1, 3, 2, NOW + timedelta(days=20))
    # Median of 1, 1 and 10 days: 1 day; four open tasks: four days, before the latest due.
    assert project == Rollup(3, 7, 4, DUE)
