"""Which assignments are automation's work, and what makes each kind of automation fire."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from automation_service.domain import InvalidTrigger, QueuedTask, check_trigger, queued_task
from stayops_schemas.events.automations import AutomationType
from stayops_schemas.events.tasks import TaskAssigned, TaskType

AT = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)


def assigned(task_type: TaskType) -> TaskAssigned:
    return TaskAssigned(task_id="t-1", org_id="org-1", task_type=task_type, title="Publish prices",
                        data={"listing_ids": ["l-1"]}, workflow_run_id="run-1", workflow_step="publish",
                        rule="task type automated -> automation-service")


def test_an_automated_task_becomes_queued_work_with_its_run_and_step() -> None:
    assert queued_task(assigned(TaskType.AUTOMATED), AT) == QueuedTask(
        task_id="t-1", org_id="org-1", title="Publish prices", data={"listing_ids": ["l-1"]},
        received_at=AT, workflow_run_id="run-1", workflow_step="publish",
    )


@pytest.mark.parametrize("task_type", [TaskType.MANUAL, TaskType.ANALYSIS, TaskType.DECISION])
def test_work_for_people_and_agents_is_not_queued(task_type: TaskType) -> None:
    assert queued_task(assigned(task_type), AT) is None


def test_a_schedule_in_a_known_time_zone_is_a_valid_trigger() -> None:
    check_trigger(AutomationType.SCHEDULED, cron="0 9 * * SUN", timezone="Europe/Lisbon",
                  event_type=None, condition=None)


@pytest.mark.parametrize(
    ("kind", "trigger", "says"),
    [
        (AutomationType.SCHEDULED, {"cron": None, "timezone": "UTC"}, "needs a cron expression"),
        (AutomationType.SCHEDULED, {"cron": "0 9 * * SUN", "timezone": "Mars/Olympus"}, "unknown time zone"),
        (AutomationType.EVENT, {"event_type": None}, "needs the event type"),
        (AutomationType.EVENT, {"event_type": "airbnb.reservation.created", "cron": "* * * * *"},
         "has no schedule"),
        (AutomationType.CONDITIONAL, {"event_type": "airbnb.review.created"}, "needs the condition"),
    ],
)
def test_a_trigger_that_cannot_fire_is_refused_with_the_reason(
    kind: AutomationType, trigger: dict[str, str | None], says: str
) -> None:
    arguments = {"cron": None, "timezone": None, "event_type": None, "condition": None, **trigger}
    with pytest.raises(InvalidTrigger, match=says):
        check_trigger(kind, **arguments)  # type: ignore[arg-type]
