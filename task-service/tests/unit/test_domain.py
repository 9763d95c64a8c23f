"""The task state machine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stayops_schemas.events.tasks import Priority, TaskStatus, TaskType
from task_service.domain import ALLOWED_TRANSITIONS, Task, TransitionNotAllowed

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
