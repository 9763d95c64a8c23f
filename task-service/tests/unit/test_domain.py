"""The task state machine, decisions and who may act on a task."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from stayops_schemas.events.tasks import DecisionOutcome, Priority, TaskStatus, TaskType
from task_service.domain import (
    ALLOWED_TRANSITIONS,
    Decision,
    DecisionRequired,
    NotADecision,
    NotYourTask,
    Task,
    TransitionNotAllowed,
)

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def task(status: TaskStatus) -> Task:
    return Task(id="t1", org_id="o1", title="Analyse pricing", task_type=TaskType.ANALYSIS,
                status=status, priority=Priority.HIGH, created_by="u1", created_at=NOW, updated_at=NOW)


def test_a_pending_task_can_be_started_then_completed() -> None:
    done = task(TaskStatus.PENDING).transition(TaskStatus.IN_PROGRESS, NOW).transition(
        TaskStatus.COMPLETED, NOW
    )
    assert done.status is TaskStatus.COMPLETED


@pytest.mark.parametrize("final", [TaskStatus.COMPLETED, TaskStatus.FAILED])
@pytest.mark.parametrize("wanted", list(TaskStatus))
def test_completed_and_failed_tasks_are_final(final: TaskStatus, wanted: TaskStatus) -> None:
    with pytest.raises(TransitionNotAllowed, match=f"is {final.value}"):
        task(final).transition(wanted, NOW)


def test_a_blocked_task_can_be_resumed() -> None:
    assert task(TaskStatus.BLOCKED).transition(TaskStatus.IN_PROGRESS, NOW).status is TaskStatus.IN_PROGRESS


def test_every_status_has_a_rule() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(TaskStatus)


def test_a_decision_task_completes_only_with_a_decision() -> None:
    decision_task = replace(task(TaskStatus.PENDING), task_type=TaskType.DECISION)
    with pytest.raises(DecisionRequired):
        decision_task.complete({}, NOW)
    done = decision_task.decide(
        Decision.of(DecisionOutcome.APPROVED, "ok", [{"listing_id": "L1", "price": "120.00"}]), NOW
    )
    assert done.status is TaskStatus.COMPLETED
    assert done.result == {"outcome": "approved", "comment": "ok",
                           "changes": {"prices": [{"listing_id": "L1", "price": "120.00"}]}}


def test_only_a_decision_task_takes_a_decision() -> None:
    with pytest.raises(NotADecision):
        task(TaskStatus.PENDING).decide(Decision(DecisionOutcome.REJECTED), NOW)


def test_failing_and_blocking_keep_the_reason() -> None:
    assert task(TaskStatus.IN_PROGRESS).block("waiting for keys", NOW).status_reason == "waiting for keys"
    assert task(TaskStatus.BLOCKED).fail("no keys", NOW).status is TaskStatus.FAILED


def test_only_the_assignee_or_a_role_member_may_act() -> None:
    assigned = replace(task(TaskStatus.PENDING), assigned_to="u-7", role_id="revenue-manager")
    assigned.check_actor("u-7", "owner")
    assigned.check_actor("u-8", "revenue-manager")
    with pytest.raises(NotYourTask):
        assigned.check_actor("u-9", "owner")
    with pytest.raises(NotYourTask):
        replace(assigned, role_id=None).check_actor("u-9", None)



def test_an_open_task_can_be_cancelled_once_and_a_finished_one_cannot() -> None:
    for status in (TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.BLOCKED):
        cancelled = task(status).cancel("reservation cancelled", NOW)
        assert (cancelled.status, cancelled.status_reason) == (TaskStatus.CANCELLED, "reservation cancelled")
        with pytest.raises(TransitionNotAllowed):
            cancelled.cancel("again", NOW)
    with pytest.raises(TransitionNotAllowed):
        task(TaskStatus.COMPLETED).cancel("too late", NOW)
