"""What a task's outcome adds to its run's log."""

from __future__ import annotations

from datetime import UTC, datetime

from stayops_schemas.events.tasks import DecisionOutcome, TaskCompleted, TaskFailed, TaskType
from stayops_schemas.events.workflows import RunStatus
from workflow_service.domain import (
    TASK_SERVICE_ACTOR,
    RunLogEntry,
    WorkflowRun,
    task_completed_entry,
    task_failed_entry,
)

AT = datetime(2025, 3, 2, 9, 30, tzinfo=UTC)
RUN = WorkflowRun(id="run-1", org_id="org-1", workflow_key="dynamic-pricing", workflow_version=1,
                  status=RunStatus.WAITING, started_at=AT, updated_at=AT)


def test_a_completed_decision_is_logged_with_its_decider_outcome_and_comment() -> None:
    event = TaskCompleted(task_id="t-1", org_id="org-1", workflow_run_id="run-1", workflow_step="decide",
                          task_type=TaskType.DECISION, completed_by="u-rm",
                          outcome=DecisionOutcome.APPROVED, comment="weekend too high, edited")

    assert task_completed_entry(RUN, event, AT) == RunLogEntry(
        run_id="run-1", org_id="org-1", at=AT, actor="u-rm",
        message="task t-1 (step decide) completed: approved (weekend too high, edited)",
    )


def test_a_failure_names_its_reason_and_who_failed_it() -> None:
    event = TaskFailed(task_id="t-2", org_id="org-1", workflow_run_id="run-1", reason="sync timed out",
                       failed_by="automation")

    entry = task_failed_entry(RUN, event, AT)

    assert (entry.actor, entry.message) == ("automation", "task t-2 failed: sync timed out")


def test_a_failure_without_an_actor_is_attributed_to_task_service() -> None:
    event = TaskFailed(task_id="t-3", org_id="org-1", reason="deadline passed")

    assert task_failed_entry(RUN, event, AT).actor == TASK_SERVICE_ACTOR
