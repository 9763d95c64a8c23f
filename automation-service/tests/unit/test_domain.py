"""Which assignments are automation's work, how a price update finishes, and what
makes each kind of automation fire."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from automation_service.domain import (
    ActionStatus,
    AutomatedAction,
    AwaitedRun,
    ConditionCheck,
    InvalidTrigger,
    RunStatus,
    automated_action,
    check_trigger,
    condition_fires,
    occupancy_metrics,
    runs_verdict,
    with_run_status,
)
from stayops_kit.expressions import ExpressionError
from stayops_schemas.events.automations import AutomationType, ExecutionOutcome
from stayops_schemas.events.org import UserType
from stayops_schemas.events.tasks import TaskAssigned, TaskType

AT = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)


def assigned(task_type: TaskType, assigned_to: str | None = "automation", *, created_by: str | None = None,
             workflow_run_id: str | None = "run-1", action: str = "publish_prices") -> TaskAssigned:
    return TaskAssigned(task_id="t-1", org_id="org-1", task_type=task_type, title="Publish prices",
                        data={"action": action, "listing_ids": ["l-1"]}, created_by=created_by,
                        workflow_run_id=workflow_run_id, workflow_step="publish",
                        assigned_to=assigned_to,
                        assignee_type=None if assigned_to in (None, "automation") else UserType.HUMAN,
                        rule="task type automated -> automation-service")


def test_an_automated_task_assigned_to_automation_becomes_its_action_with_run_and_step() -> None:
    assert automated_action(assigned(TaskType.AUTOMATED), AT, "run-1") == AutomatedAction(
        task_id="t-1", org_id="org-1", action="publish_prices",
        data={"action": "publish_prices", "listing_ids": ["l-1"]}, received_at=AT,
        workflow_run_id="run-1", workflow_step="publish", correlation_id="run-1",
    )


@pytest.mark.parametrize("task_type", [TaskType.MANUAL, TaskType.ANALYSIS, TaskType.DECISION])
def test_work_for_people_and_agents_is_not_automations(task_type: TaskType) -> None:
    assert automated_action(assigned(task_type), AT, None) is None


def test_an_automated_task_someone_else_took_is_not_automations() -> None:
    assert automated_action(assigned(TaskType.AUTOMATED, assigned_to="u-42"), AT, None) is None


def test_a_side_effect_is_done_only_for_a_task_a_workflow_run_requested() -> None:
    def refusal(**fields: Any) -> str | None:
        action = automated_action(assigned(TaskType.AUTOMATED, **fields), AT, None)
        assert action is not None
        return action.refusal

    assert refusal(created_by="workflow-service") is None
    assert refusal(created_by="owner-1") is not None
    assert "created by owner-1 outside any workflow run" in (refusal(created_by="owner-1") or "")
    assert refusal(created_by=None) is not None
    assert refusal(created_by="workflow-service", workflow_run_id=None) is not None
    assert refusal(created_by="workflow-service", action="request_sync", workflow_run_id=None) is not None
    assert refusal(created_by="owner-1", action="notify") is None


def publishing(*listings: str) -> AutomatedAction:
    return AutomatedAction(task_id="t-1", org_id="org-1", action="publish_prices", data={},
                           received_at=AT, awaiting=list(listings))


def test_a_price_update_finishes_only_when_every_listing_answered() -> None:
    action = publishing("l-1", "l-2").price_answered("l-1", None)
    assert action.prices_outcome() is None
    finish = action.price_answered("l-2", None).prices_outcome()
    assert finish is not None
    assert finish.outcome is ExecutionOutcome.SUCCESS
    assert finish.result == {"applied": ["l-1", "l-2"], "failed": {}}


def test_a_price_update_with_a_failed_listing_fails_naming_it() -> None:
    action = publishing("l-1", "l-2").price_answered("l-2", "listing is archived").price_answered("l-1", None)
    finish = action.prices_outcome()
    assert finish is not None and finish.outcome is ExecutionOutcome.FAILURE
    assert finish.error is not None and "l-2: listing is archived" in finish.error
    assert "l-1" not in finish.error
    assert action.finished(finish, AT).status is ActionStatus.FAILED


def test_a_listing_answering_twice_keeps_its_first_answer() -> None:
    action = publishing("l-1").price_answered("l-1", None).price_answered("l-1", "late failure")
    assert action.answers == {"l-1": None}


def test_a_schedule_in_a_known_time_zone_is_a_valid_trigger() -> None:
    check_trigger(AutomationType.SCHEDULED, cron="0 9 * * SUN", timezone="Europe/Lisbon",
                  event_type=None, condition=None)


@pytest.mark.parametrize(
    ("kind", "trigger", "says"),
    [
        (AutomationType.SCHEDULED, {"cron": None, "timezone": "UTC"}, "needs a cron expression"),
        (AutomationType.SCHEDULED, {"cron": "0 9 * * SUN", "timezone": "Mars/Olympus"}, "unknown time zone"),
        (AutomationType.SCHEDULED, {"cron": "0 25 * * *", "timezone": "UTC"}, "invalid cron expression"),
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


def test_a_condition_fires_once_per_transition_from_false_to_true() -> None:
    assert condition_fires(None, True) and condition_fires(False, True)
    assert not condition_fires(True, True) and not condition_fires(False, False) and not condition_fires(True, False)


def test_a_condition_outside_the_language_or_of_unknown_shape_is_refused() -> None:
    assert ConditionCheck.of({"expression": "occupancy < 0.5"}).window_days == 14
    with pytest.raises(ExpressionError):
        ConditionCheck.of({"expression": "__import__('os')"})
    for bad in ({"expr": "occupancy < 0.5"}, {"expression": "occupancy < 0.5", "every_s": 0}):
        with pytest.raises(InvalidTrigger):
            ConditionCheck.of(bad)
    assert occupancy_metrics(7, 1, 14)["occupancy"] == 0.5
    assert occupancy_metrics(0, 0, 14)["occupancy"] == 0.0


def test_a_runs_status_is_written_into_the_action_that_asked_for_it() -> None:
    outcomes = [{"action": "notify", "outcome": "notified"},
                {"action": "start_workflow", "outcome": "requested", "request_id": "q-1"}]
    failed = AwaitedRun("org-1", "q-1", "e-1", run_id="run-1", status=RunStatus.FAILED, reason="no prices")
    assert with_run_status(outcomes, failed) == [
        {"action": "notify", "outcome": "notified"},
        {"action": "start_workflow", "outcome": "failed", "request_id": "q-1", "run_id": "run-1",
         "detail": "no prices"}]


def test_an_execution_succeeds_only_when_every_run_it_started_completed() -> None:
    completed = AwaitedRun("org-1", "q-1", "e-1", run_id="run-1", status=RunStatus.COMPLETED)
    cancelled = AwaitedRun("org-1", "q-2", "e-1", run_id="run-2", status=RunStatus.CANCELLED,
                           reason="cancelled by u-1")
    assert runs_verdict([completed]) is None
    assert runs_verdict([completed, cancelled]) == "start_workflow: run run-2 cancelled: cancelled by u-1"
    assert completed.ended and not AwaitedRun("org-1", "q-3", "e-1", status=RunStatus.WAITING).ended
