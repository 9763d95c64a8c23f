"""The task state machine, decisions, who may act on a task, what a member may ask
for, and the checks on results and on a decider's edited prices."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from stayops_schemas.events.org import OrgPolicyUpdated, PriceGuardrails, UserType
from stayops_schemas.events.tasks import DecisionOutcome, Priority, TaskStatus, TaskType
from stayops_schemas.guardrails import default_policy
from task_service.domain import (
    ALLOWED_TRANSITIONS,
    BatchDecisionInvalid,
    ClaimFirst,
    Decision,
    DecisionRequired,
    NotADecision,
    NotInQueue,
    NotYourTask,
    PriceEditsRefused,
    ResultInvalid,
    SideEffectNeedsWorkflow,
    Task,
    TransitionNotAllowed,
    check_side_effects,
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


POLICY = default_policy("o1")


def decision_task(*proposal: dict[str, str]) -> Task:
    return replace(task(TaskStatus.PENDING), task_type=TaskType.DECISION, assigned_to="owner-1",
                   data={"proposal": list(proposal)})


NIGHT = {"listing_id": "L1", "date": "2026-12-01", "current_price": "100.00", "recommended_price": "108.00",
         "currency": "EUR", "min_price": "80.00", "max_price": "140.00"}


def test_a_decision_task_completes_only_with_a_decision() -> None:
    decision = decision_task(NIGHT)
    with pytest.raises(DecisionRequired):
        decision.complete({}, "owner-1", NOW)
    edit = {"listing_id": "L1", "date": "2026-12-01", "price": "120.00"}
    done = decision.decide(Decision.of(DecisionOutcome.APPROVED, "ok", [edit]), "owner-1", NOW, POLICY)
    assert (done.status, done.completed_by) == (TaskStatus.COMPLETED, "owner-1")
    assert done.result == {"outcome": "approved", "comment": "ok", "changes": {"prices": [edit]}}


def test_only_a_decision_task_takes_a_decision() -> None:
    with pytest.raises(NotADecision):
        task(TaskStatus.PENDING).decide(Decision(DecisionOutcome.REJECTED), "u1", NOW, POLICY)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ({"listing_id": "L1", "date": "2026-12-01", "price": "0.00"}, "not above zero"),
        ({"listing_id": "L1", "date": "2026-12-01", "price": "150.00"}, "above the listing's maximum of 140.00"),
        ({"listing_id": "L1", "date": "2026-12-01", "price": "79.99"}, "below the listing's minimum of 80.00"),
        ({"listing_id": "L1", "date": "2026-12-02", "price": "100.00"}, "no such night in the proposal"),
        ({"listing_id": "L9", "date": "2026-12-01", "price": "100.00"}, "no such night in the proposal"),
        ({"listing_id": "L1", "price": "100.00"}, "is not a {listing_id, date, price} edit"),
        ({"listing_id": "L1", "date": "2026-12-01", "price": "a lot"}, "is not an amount"),
    ],
)
def test_an_approved_edit_must_name_a_proposed_night_and_pass_the_guardrails(
    edit: dict[str, str], says: str
) -> None:
    decision = Decision.of(DecisionOutcome.APPROVED, None, [edit])
    with pytest.raises(PriceEditsRefused, match=says):
        decision_task(NIGHT).decide(decision, "owner-1", NOW, POLICY)


def test_the_orgs_max_change_refuses_an_edit_and_a_rejection_is_not_checked() -> None:
    policy = OrgPolicyUpdated(org_id="o1", updated_at=NOW, pricing=PriceGuardrails(max_change_pct=20))
    edit = {"prices": [{"listing_id": "L1", "date": "2026-12-01", "price": "125.00"}]}
    with pytest.raises(PriceEditsRefused, match=r"\+25.0 % from 100.00 is more than the 20 %"):
        decision_task(NIGHT).decide(Decision.of(DecisionOutcome.APPROVED, None, edit), "o", NOW, policy)
    rejected = decision_task(NIGHT).decide(Decision.of(DecisionOutcome.REJECTED, None, edit), "o", NOW, policy)
    assert rejected.status is TaskStatus.COMPLETED


def test_an_edit_of_a_proposal_by_reference_is_checked_on_its_own_and_its_night_later() -> None:
    by_reference = replace(decision_task(), data={"proposal_ref": {"id": "r-1", "service": "agent-service"}})
    unknown_here = {"listing_id": "L9", "date": "2026-12-01", "price": "100.00"}
    done = by_reference.decide(Decision.of(DecisionOutcome.APPROVED, None, [unknown_here]), "owner-1", NOW, POLICY)
    assert done.result is not None and done.result["changes"] == {"prices": [unknown_here]}
    with pytest.raises(PriceEditsRefused, match="not above zero"):
        by_reference.decide(Decision.of(DecisionOutcome.APPROVED, None, [{**unknown_here, "price": "0.00"}]),
                            "owner-1", NOW, POLICY)


def batch_task() -> Task:
    """A batch review: two segments, by reference."""
    batch = [{"segment": "luxury", "listing_ids": ["L1", "L2"], "proposal_ref": {"id": "r-lux"}},
             {"segment": "budget", "listing_ids": ["B1"], "proposal_ref": {"id": "r-bud"}}]
    return replace(decision_task(), data={"batch": batch, "currency": "EUR"})


EDIT = {"listing_id": "B1", "date": "2026-12-01", "price": "90.00"}


@pytest.mark.parametrize(
    ("outcome", "changes", "says"),
    [
        (DecisionOutcome.APPROVED, {"segments": ["villas"]}, "'villas', not in the batch"),
        (DecisionOutcome.APPROVED, {"segments": []}, "approve at least one segment"),
        (DecisionOutcome.APPROVED, {"segments": "luxury"}, "must be a list of segment names"),
        (DecisionOutcome.APPROVED, {"segments": ["luxury", "luxury"]}, "names a segment twice"),
        (DecisionOutcome.APPROVED, {"segments": ["luxury"], "prices": [EDIT]},
         "listing B1 is in segment 'budget', which this decision does not approve"),
        (DecisionOutcome.APPROVED, {"prices": [{**EDIT, "listing_id": "X9"}]}, "X9 is in no segment"),
        (DecisionOutcome.APPROVED, {"prices": [{**EDIT, "date": "soon"}]}, "'soon' is not a date"),
        (DecisionOutcome.APPROVED, {"prices": [{**EDIT, "price": "-1"}]}, "is not a positive amount"),
        (DecisionOutcome.APPROVED, {"prices": [{**EDIT, "price": "NaN"}]}, "is not a positive amount"),
        (DecisionOutcome.APPROVED, {"prices": [EDIT, EDIT]}, "edited twice"),
        (DecisionOutcome.APPROVED, {"prices": [{**EDIT, "note": "x"}]}, "fields besides"),
        (DecisionOutcome.APPROVED, {"prices": {"B1": "90"}}, "must be a list of"),
        (DecisionOutcome.APPROVED, {"listings": ["L1"]}, "changes.listings is not a batch decision's field"),
        (DecisionOutcome.REJECTED, {"segments": ["luxury"]}, "takes no segments or price edits"),
    ],
)
def test_a_batch_decision_body_that_does_not_fit_its_batch_is_refused_naming_the_problem(
    outcome: DecisionOutcome, changes: dict[str, object], says: str
) -> None:
    with pytest.raises(BatchDecisionInvalid, match=says):
        batch_task().decide(Decision.of(outcome, None, changes), "owner-1", NOW, POLICY)


def test_a_batch_decision_approves_all_or_some_segments_with_edits_or_rejects() -> None:
    for changes in (None, {"segments": ["budget"], "prices": [EDIT]}, [EDIT]):
        done = batch_task().decide(Decision.of(DecisionOutcome.APPROVED, "ok", changes), "owner-1", NOW, POLICY)
        assert done.status is TaskStatus.COMPLETED
    rejected = batch_task().decide(Decision.of(DecisionOutcome.REJECTED, "no", None), "owner-1", NOW, POLICY)
    assert rejected.result == {"outcome": "rejected", "comment": "no", "changes": {}}


def test_failing_and_blocking_keep_the_reason() -> None:
    assert task(TaskStatus.IN_PROGRESS).block("waiting for keys", NOW).status_reason == "waiting for keys"
    failed = task(TaskStatus.BLOCKED).fail("no keys", "u-7", NOW)
    assert (failed.status, failed.completed_by) == (TaskStatus.FAILED, "u-7")


def test_only_the_assignee_may_act() -> None:
    assigned = replace(task(TaskStatus.PENDING), assigned_to="u-7", role_id="revenue-manager")
    assigned.check_actor("u-7")
    with pytest.raises(NotYourTask):
        assigned.check_actor("u-8")  # a member of the task's role, but not its assignee
    with pytest.raises(NotYourTask):
        assigned.claim("u-8", UserType.HUMAN, "revenue-manager", None)
    assert assigned.claim("u-7", UserType.HUMAN, "revenue-manager", None) is None


def test_a_reviewer_an_escalation_added_may_decide_but_not_otherwise_act_and_the_assignee_stays() -> None:
    assigned = replace(task(TaskStatus.PENDING), assigned_to="u-7").with_reviewer("u-boss", NOW)
    assert (assigned.assigned_to, assigned.reviewers) == ("u-7", ("u-boss",))
    assigned.check_actor("u-boss", deciding=True)
    assigned.check_actor("u-7", deciding=True)
    with pytest.raises(NotYourTask):
        assigned.check_actor("u-boss")  # completing, failing or blocking stays the assignee's
    with pytest.raises(NotYourTask):
        assigned.check_actor("u-8", deciding=True)
    queued = replace(task(TaskStatus.PENDING), role_id="cleaner").with_reviewer("u-boss", NOW)
    queued.check_actor("u-boss", deciding=True)  # no claim needed: they were asked by name


def test_a_queued_task_is_claimed_by_a_member_of_its_queue_only() -> None:
    queued = replace(task(TaskStatus.PENDING), role_id="cleaner", department_id="ops")
    with pytest.raises(ClaimFirst, match="claims it with POST /v1/tasks/t1/start"):
        queued.check_actor("u-8")
    claim = queued.claim("u-8", UserType.HUMAN, "cleaner", None)
    assert claim is not None
    assert (claim.assigned_to, claim.rule) == ("u-8", "claimed by u-8 from the queue of role cleaner")
    with pytest.raises(NotInQueue):
        queued.claim("u-9", UserType.HUMAN, "owner", "ops")  # the department does not do a role's task
    department_task = replace(queued, role_id=None)
    assert department_task.claim("u-9", UserType.HUMAN, "owner", "ops") is not None
    with pytest.raises(NotInQueue):
        department_task.claim("u-9", UserType.HUMAN, "owner", "sales")


@pytest.mark.parametrize("action", ["publish_prices", "request_sync"])
def test_a_member_may_not_create_a_side_effecting_automated_task(action: str) -> None:
    with pytest.raises(SideEffectNeedsWorkflow, match=f"action '{action}'"):
        check_side_effects(TaskType.AUTOMATED, {"action": action, "approved_by": "owner"})
    check_side_effects(TaskType.AUTOMATED, {"action": "notify"})
    check_side_effects(TaskType.MANUAL, {"action": action})  # nobody executes a manual task's data


def test_a_result_must_fit_the_tasks_skill() -> None:
    pricing = replace(task(TaskStatus.IN_PROGRESS), data={"skill": "pricing"})
    made_up = {"recommendations": [{**NIGHT, "change_pct": 8.0, "confidence": 0.9, "factors": []}],
               "max_abs_change_pct": 0, "min_confidence": 0.9, "needs_review": False, "currency": "EUR"}
    with pytest.raises(ResultInvalid, match=r"max_abs_change_pct 0\.0 is not the largest change"):
        pricing.complete(made_up, "u-7", NOW)
    done = pricing.complete({**made_up, "max_abs_change_pct": 8.0}, "u-7", NOW)
    assert done.completed_by == "u-7"
    assert replace(pricing, data={}).complete({"anything": 1}, "u-7", NOW).status is TaskStatus.COMPLETED




def test_an_open_task_can_be_cancelled_once_and_a_finished_one_cannot() -> None:
    for status in (TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.BLOCKED):
        cancelled = task(status).cancel("reservation cancelled", NOW)
        assert (cancelled.status, cancelled.status_reason) == (TaskStatus.CANCELLED, "reservation cancelled")
        with pytest.raises(TransitionNotAllowed):
            cancelled.cancel("again", NOW)
    with pytest.raises(TransitionNotAllowed):
        task(TaskStatus.COMPLETED).cancel("too late", NOW)
