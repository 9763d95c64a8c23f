"""The saga's step-advancing rules on the built-in dynamic-pricing definition and
small hand-built ones: which task comes next, which branch is taken, how the org's
price policy bounds a decision, how a failure is retried, compensated or left
behind after the pivot — state in, transition out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from stayops_schemas.claims import by_reference, make_ref, pricing_summary
from stayops_schemas.events.org import OrgPolicyUpdated, PriceGuardrails
from stayops_schemas.events.workflows import RunStatus, WaitKind
from workflow_service.definitions import (
    Definition,
    DefinitionInvalid,
    builtin_documents,
    concurrency_key,
    parse,
    resolve_parameters,
)
from workflow_service.domain import ATTENTION_STEP, FAILED_STEP, RULE_ACTOR, DetailNeeded, Saga, Transition

PRICING = parse(builtin_documents()["dynamic-pricing"])
RUN = "run-1"
ORG = "org-1"
RULE = PRICING.step("decision").raw["rule"]


def recommendation(listing: str, change_pct: float, **extra: Any) -> dict[str, Any]:
    return {"listing_id": listing, "date": "2025-03-10", "current_price": 100.0,
            "recommended_price": 100.0 + change_pct, "change_pct": change_pct, "confidence": 0.9, "factors": [],
            **extra}


def analysis(max_change: float, needs_review: bool = False, **extra: Any) -> dict[str, Any]:
    return {"recommendations": [recommendation("l-1", max_change, **extra)], "max_abs_change_pct": max_change,
            "min_confidence": 0.9, "needs_review": needs_review, "currency": "EUR"}


def policy(**pricing: Any) -> OrgPolicyUpdated:
    return OrgPolicyUpdated(org_id=ORG, pricing=PriceGuardrails(**pricing), updated_at=dt.datetime.now(dt.UTC))


@dataclass
class Run:
    """A run driven the way the handlers drive it: each happening applied to the
    state the last one left, answering the request the run waits for."""

    definition: Definition = PRICING
    parameters: dict[str, Any] = field(default_factory=dict)
    policy: OrgPolicyUpdated | None = None
    t: Transition | None = None
    history: list[Transition] = field(default_factory=list)

    def saga(self) -> Saga:
        if self.t is None:
            return Saga(self.definition, RUN, self.parameters, org_id=ORG, policy=self.policy)
        return Saga(self.definition, RUN, self.parameters, self.t.state, self.t.status, self.t.current_step,
                    org_id=ORG, policy=self.policy)

    def _keep(self, transition: Transition) -> Transition:
        if transition.applied:
            self.t = transition
            self.history.append(transition)
        return transition

    def start(self) -> Transition:
        return self._keep(self.saga().start())

    @property
    def request_id(self) -> str:
        assert self.t is not None and self.t.waiting is not None
        request_id: str = self.t.waiting["request_id"]
        return request_id

    @property
    def waiting_step(self) -> str:
        assert self.t is not None and self.t.waiting is not None
        step: str = self.t.waiting["step"]
        return step

    def complete(self, step: str, result: dict[str, Any] | None = None, *, actor: str = "x",
                 request_id: str | None = None, **decision: Any) -> Transition:
        return self._keep(self.saga().task_completed(step, request_id=request_id or self.request_id, actor=actor,
                                                     result=result or {}, **decision))

    def fail(self, step: str, reason: str, *, request_id: str | None = None) -> Transition:
        return self._keep(self.saga().task_failed(step, request_id=request_id or self.request_id,
                                                  actor="automation", reason=reason))

    def fire(self, timer_step: str | None = None) -> Transition:
        """The timer of the wait (a wait, a retry), or the one named `<step>@<purpose>`."""
        return self._keep(self.saga().timer_fired(timer_step or self.waiting_step))

    def log(self) -> list[tuple[str, str]]:
        return [(line.actor, line.message) for t in self.history for line in t.log]

    def requested(self) -> list[str]:
        return [task.request_id for t in self.history for task in t.tasks]


def pricing_run(policy: OrgPolicyUpdated | None = None, **params: Any) -> Run:
    run = Run(PRICING, resolve_parameters(PRICING, {"listing_ids": ["l-1"], **params}), policy)
    run.start()
    return run


def up_to_publish(run: Run, change: float = 2.0, **extra: Any) -> Transition:
    run.complete("sync")
    return run.complete("analysis", analysis(change, **extra), actor="u-agent")


def test_a_run_starts_by_asking_automation_to_sync_the_listings() -> None:
    run = pricing_run()
    started = run.t
    assert started is not None

    assert started.status is RunStatus.WAITING
    assert started.wait_kind is WaitKind.TASK
    [task] = started.tasks
    assert (task.request_id, task.task_type, task.assigned_to, task.role_id) == (
        "run-1:sync:1", "automated", "automation", None)
    assert task.data == {"action": "request_sync", "platform": "airbnb", "listing_ids": ["l-1"]}


def test_a_small_change_is_approved_by_rule_and_the_engine_writes_the_prices_and_approver() -> None:
    run = pricing_run(threshold_pct=10)
    t = run.complete("sync")
    assert [task.data["skill"] for task in t.tasks] == ["pricing"]
    assert t.tasks[0].role_id == "revenue-manager" and t.tasks[0].data["horizon_days"] == 90

    t = run.complete("analysis", analysis(4.0), actor="u-agent")

    assert (RULE_ACTOR, f"step decision: approved by rule: {RULE}") in run.log()
    [publish] = t.tasks
    assert publish.workflow_step == "publish"
    assert publish.data["prices"] == [{"listing_id": "l-1", "date": "2025-03-10", "price": 104.0,
                                       "currency": "EUR", "previous_price": 100.0}]
    assert (publish.data["approved_by"], publish.data["approval_step"]) == (f"rule:{RULE}", "decision")


def test_a_big_change_asks_the_owner_whose_changes_are_published_as_approved_by_them() -> None:
    run = pricing_run(threshold_pct=10)
    t = up_to_publish(run, 25.0)
    [decision] = t.tasks
    assert (decision.task_type, decision.role_id) == ("decision", "owner")
    assert decision.data["proposal"] == [recommendation("l-1", 25.0)]

    t = run.complete("decision", actor="u-owner", outcome="approved",
                     changes={"prices": [{"listing_id": "l-1", "date": "2025-03-10", "price": 110.0}]})

    assert t.tasks[0].data["prices"][0]["price"] == 110.0
    assert t.tasks[0].data["approved_by"] == "u-owner"


def test_the_listing_bounds_travel_with_the_approved_prices() -> None:
    run = pricing_run()
    t = up_to_publish(run, 4.0, min_price="80.00", max_price="200.00")

    [night] = t.tasks[0].data["prices"]
    assert (night["min_price"], night["max_price"]) == ("80.00", "200.00")


def test_a_huge_run_threshold_still_asks_a_person_for_a_change_the_org_policy_bounds() -> None:
    run = pricing_run(threshold_pct=1000)
    t = up_to_publish(run, 25.0)

    [decision] = t.tasks
    assert decision.task_type == "decision"
    [(actor, why)] = [(a, m) for a, m in run.log() if "price policy wants a person" in m]
    assert actor == RULE_ACTOR and "approval threshold of 10 %" in why


def pricing_with_rule(rule: str) -> Definition:
    document = builtin_documents()["dynamic-pricing"]
    document["steps"] = [{**s, "rule": rule} if s["name"] == "decision" else s for s in document["steps"]]
    return parse(document)


def test_the_org_policy_lets_a_rule_approve_more_and_a_run_threshold_only_lowers_it() -> None:
    generous = policy(approval_threshold_pct=30)
    by_rule = pricing_run(generous, threshold_pct=1000)
    assert up_to_publish(by_rule, 25.0).tasks[0].workflow_step == "publish"

    lowered = Run(pricing_with_rule("true"), {"listing_ids": ["l-1"], "platform": "airbnb", "threshold_pct": 20},
                  generous)
    lowered.start()
    t = up_to_publish(lowered, 25.0)

    assert t.tasks[0].task_type == "decision"
    assert any("approval threshold of 20 %" in message for _, message in lowered.log())


def test_an_org_definition_whose_rule_is_true_cannot_approve_a_big_change() -> None:
    run = Run(pricing_with_rule("true"), {"listing_ids": ["l-1"], "platform": "airbnb", "monitor_days": 0})
    run.start()

    t = up_to_publish(run, 40.0)

    assert t.tasks[0].task_type == "decision"


def test_prices_a_person_approves_are_checked_and_refused_nights_fail_the_decision() -> None:
    run = pricing_run(policy(max_change_pct=30))
    up_to_publish(run, 25.0)

    t = run.complete("decision", actor="u-owner", outcome="approved",
                     changes={"prices": [{"listing_id": "l-1", "date": "2025-03-10", "price": 180.0}]})

    assert t.status is RunStatus.FAILED
    assert not [task for task in t.tasks if task.workflow_step == "publish"], "nothing is published"
    assert t.failure_reason is not None
    assert "l-1 2025-03-10: a change of +80.0 % from 100.0 is more than the 30 % a night may move" in t.failure_reason
    assert t.state["steps"]["decision"]["refused"][0]["listing_id"] == "l-1"


def test_needs_review_asks_the_owner_even_for_a_small_change() -> None:
    run = pricing_run()
    t = up_to_publish(run, 1.0, needs_review=True)
    assert t.tasks[0].task_type == "decision"


def test_a_rejection_skips_to_the_summary_and_completes_with_the_decision() -> None:
    run = pricing_run(owner_user_id="u-owner")
    up_to_publish(run, 30.0)
    t = run.complete("decision", actor="u-owner", outcome="rejected")
    [summary] = t.tasks
    assert summary.workflow_step == "summary"
    assert summary.data["user_id"] == "u-owner" and summary.data["action"] == "notify"

    t = run.complete("summary")

    assert t.status is RunStatus.COMPLETED
    assert t.result == {"decision": "rejected"}


def test_without_an_owner_the_summary_goes_to_the_owner_role() -> None:
    run = pricing_run()
    up_to_publish(run, 30.0)
    t = run.complete("decision", actor="u-owner", outcome="rejected")

    assert (t.tasks[0].data["user_id"], t.tasks[0].data["role_id"]) == (None, "owner")


def test_the_monitor_waits_on_a_timer_then_reviews_and_summarises() -> None:
    run = pricing_run(monitor_days=7)
    up_to_publish(run)
    t = run.complete("publish")
    assert t.wait_kind is WaitKind.TIMER
    assert [(timer.step, timer.delay) for timer in t.timers] == [("monitor", timedelta(days=7))]

    t = run.fire()
    assert [(task.workflow_step, task.data["skill"]) for task in t.tasks] == [("review", "performance-review")]
    run.complete("review", actor="u-agent")
    t = run.complete("summary")

    assert (t.status, t.result) == (RunStatus.COMPLETED, {"decision": "approved"})


def test_a_failed_publish_compensates_one_task_at_a_time_then_fails_compensated() -> None:
    run = pricing_run()
    up_to_publish(run)
    t = run.fail("publish", "l-1 rejected the price")

    [notify] = t.tasks
    assert (notify.workflow_step, notify.data["action"]) == ("publish.compensation.1", "notify")
    assert "l-1 rejected the price" in notify.data["body"]
    assert t.status is RunStatus.WAITING
    t = run.complete("publish.compensation.1")
    [sync] = t.tasks
    assert (sync.workflow_step, sync.data["action"]) == ("publish.compensation.2", "request_sync")
    t = run.complete("publish.compensation.2")

    assert (t.status, t.compensated) == (RunStatus.FAILED, True)


UNDOABLE = {"key": "k", "name": "Three undoable steps", "steps": [
    {"name": name, "type": "task", "task_type": "manual", "title": name.title(), "role_id": "ops",
     "compensation": [{"task_type": "manual", "title": f"Undo {name}", "role_id": "ops"}]}
    for name in ("book", "pay", "confirm")]}


def test_compensations_run_in_reverse_order_and_a_failing_one_is_retried_then_needs_attention() -> None:
    run = Run(parse(UNDOABLE))
    run.start()
    run.complete("book")
    run.complete("pay")
    t = run.fail("confirm", "the guest cancelled")
    assert [task.workflow_step for task in t.tasks] == ["confirm.compensation.1"]
    t = run.complete("confirm.compensation.1")
    assert [task.workflow_step for task in t.tasks] == ["pay.compensation.1"]

    for attempt, delay in ((1, timedelta(seconds=1)), (2, timedelta(seconds=2))):
        t = run.fail("pay.compensation.1", "the bank is down")
        assert (t.status, t.wait_kind, [timer.delay for timer in t.timers]) == (
            RunStatus.WAITING, WaitKind.TIMER, [delay])
        t = run.fire()
        assert [task.request_id for task in t.tasks] == [f"run-1:pay.compensation.1:{attempt + 1}"]
    t = run.fail("pay.compensation.1", "the bank is down")

    assert (t.status, t.compensated) == (RunStatus.NEEDS_ATTENTION, False)
    assert t.failure_reason is not None and "needs attention" in t.failure_reason
    assert "not compensated: book.compensation.1" in t.failure_reason
    [attention] = t.tasks
    assert (attention.workflow_step, attention.assigned_to) == (ATTENTION_STEP, "automation")
    assert (attention.data["action"], attention.data["role_id"], attention.data["user_id"]) == (
        "notify", "owner", None)
    assert "run-1" in attention.data["body"]
    assert "book.compensation.1" not in run.requested()


def test_a_late_answer_to_an_earlier_compensation_attempt_changes_nothing() -> None:
    run = Run(parse(UNDOABLE))
    run.start()
    run.complete("book")
    run.fail("pay", "declined")
    run.fail("pay.compensation.1", "bank down")
    run.fire()

    late = run.saga().task_completed("pay.compensation.1", request_id="run-1:pay.compensation.1:1",
                                     actor="u", result={})

    assert not late.applied


def test_a_retriable_step_that_succeeds_on_the_third_attempt_completes_the_run() -> None:
    run = pricing_run(monitor_days=0)
    up_to_publish(run)
    run.complete("publish")
    run.fire()
    run.complete("review", actor="u-agent")

    delays = []
    for _ in range(2):
        t = run.fail("summary", "the mail server is down")
        delays += [timer.delay for timer in t.timers]
        run.fire()
    t = run.complete("summary")

    assert delays == [timedelta(seconds=1), timedelta(seconds=2)]
    assert [r for r in run.requested() if ":summary:" in r] == [f"run-1:summary:{n}" for n in (1, 2, 3)]
    assert (t.status, t.compensated) == (RunStatus.COMPLETED, None)
    assert ("workflow-service", "run completed") in run.log()


def test_a_late_completion_of_attempt_one_never_advances_attempt_two() -> None:
    run = pricing_run(monitor_days=0)
    up_to_publish(run)
    run.complete("publish")
    run.fire()
    run.fail("review", "no bookings data yet")
    run.fire()
    assert run.request_id == "run-1:review:2"

    late = run.saga().task_completed("review", request_id="run-1:review:1", actor="u-agent", result={})

    assert not late.applied and late.tasks == []
    assert run.complete("review").tasks[0].workflow_step == "summary"


def test_a_failure_after_the_pivot_never_compensates_the_run_goes_on_with_a_warning() -> None:
    run = pricing_run(monitor_days=0)
    up_to_publish(run)
    run.complete("publish")
    run.fire()
    for _ in range(2):
        run.fail("review", "no bookings data")
        run.fire()
    t = run.fail("review", "no bookings data")

    assert [task.workflow_step for task in t.tasks] == ["summary"]
    assert not [r for r in run.requested() if ".compensation." in r], "the published prices stay"
    for _ in range(2):
        run.fail("summary", "notify: user_id: Input should be a valid string")
        run.fire()
    t = run.fail("summary", "notify: user_id: Input should be a valid string")

    assert (t.status, t.compensated) == (RunStatus.COMPLETED, None)
    [(_, completed)] = [(a, m) for a, m in run.log() if m.startswith("run completed")]
    assert "2 warning(s)" in completed and "step review failed after 3 attempt(s)" in completed
    assert t.state["steps"]["publish"]["status"] == "completed"


def test_non_retryable_failures_are_not_tried_again() -> None:
    definition = parse({"key": "k", "name": "n", "steps": [
        {"name": "go", "type": "task", "task_type": "manual", "title": "Go", "role_id": "ops", "kind": "pivot"},
        {"name": "tell", "type": "task", "task_type": "manual", "title": "Tell", "role_id": "ops",
         "retry": {"max_attempts": 5, "initial_interval": "PT10S", "non_retryable": ["no such user"]}}]})
    run = Run(definition)
    run.start()
    run.complete("go")
    t = run.fail("tell", "the mailbox is full")
    assert t.timers[0].delay == timedelta(seconds=10)
    run.fire()

    t = run.fail("tell", "no such user u-9")

    assert t.status is RunStatus.COMPLETED and t.timers == []


@pytest.mark.parametrize("step", ["analysis", "sync"])
def test_stale_and_duplicate_completions_change_nothing(step: str) -> None:
    run = pricing_run()
    run.complete("sync")

    outcome = run.saga().task_completed("sync", request_id="run-1:sync:1", actor="automation", result={}) \
        if step == "sync" else run.saga().task_completed("decision", request_id="run-1:decision:1", actor="u",
                                                         result={}, outcome="approved")

    assert not outcome.applied and outcome.tasks == []


def test_a_completion_without_the_request_id_of_the_attempt_is_ignored() -> None:
    run = pricing_run()

    forged = run.saga().task_completed("sync", request_id=None, actor="u-member", result={})

    assert not forged.applied


def test_when_skips_a_step_and_next_rules_branch() -> None:
    definition = parse({"key": "k", "name": "n", "steps": [
        {"name": "a", "type": "task", "task_type": "manual", "title": "A",
         "next": [{"when": "steps.a.result.n > 2", "goto": "c"}]},
        {"name": "b", "type": "task", "task_type": "manual", "title": "B"},
        {"name": "c", "type": "task", "task_type": "manual", "title": "C ${steps.a.result.n}",
         "when": "params.go"},
        {"name": "d", "type": "wait", "duration": "PT5S"},
    ]})
    run = Run(definition, {"go": False})
    run.start()
    t = run.complete("a", {"n": 3})

    assert [line.message for line in t.log if line.actor == RULE_ACTOR] == [
        "after a: steps.a.result.n > 2 -> c", "step c skipped: params.go is false"]
    assert t.timers[0].delay == timedelta(seconds=5)


def test_a_rule_that_cannot_be_evaluated_fails_the_step() -> None:
    definition = parse({"key": "k", "name": "n", "steps": [
        {"name": "d", "type": "decision", "rule": "params.x < 'a'", "role_id": "owner", "title": "D",
         "proposal": []}]})

    t = Saga(definition, RUN, {"x": 1}).start()

    assert (t.status, t.compensated) == (RunStatus.FAILED, True)
    assert t.failure_reason is not None and "cannot be evaluated" in t.failure_reason


def test_data_that_exceeds_the_expression_limits_fails_the_step_and_requests_nothing() -> None:
    definition = parse({"key": "k", "name": "n", "steps": [
        {"name": "a", "type": "task", "task_type": "manual", "title": "A", "role_id": "ops",
         "data": {"note": "${params.s + params.s + params.s + params.s}"}}]})

    t = Saga(definition, RUN, {"s": "x" * 4000}).start()

    assert t.status is RunStatus.FAILED and [x.workflow_step for x in t.tasks] == [FAILED_STEP]  # owners told
    assert t.failure_reason is not None and "exceeds the expression limits" in t.failure_reason


def test_the_summary_tells_the_owner_what_was_decided() -> None:
    run = pricing_run(owner_user_id="u-owner")
    up_to_publish(run, 30.0)
    t = run.complete("decision", actor="u-owner", outcome="rejected")

    assert t.tasks[0].data["subject"] == "Weekly pricing: rejected"
    assert t.tasks[0].data["body"] == "The recommended prices were rejected (by u-owner). No price was changed."


def test_a_timer_of_an_earlier_wait_does_not_end_the_current_one() -> None:
    run = pricing_run(monitor_days=7)
    up_to_publish(run)
    t = run.complete("publish")
    assert t.waiting is not None
    t.waiting["timer_id"] = "timer-2"

    assert not run.saga().timer_fired("monitor", "timer-1").applied
    assert run.saga().timer_fired("monitor", "timer-2").applied


ASK = {"name": "ask", "type": "emit_and_await", "event_type": "stayops.sync.requested",
       "reply_type": "airbnb.sync.completed", "failure_type": "airbnb.sync.failed", "timeout": "PT1M",
       "data": {"platform": "airbnb", "requested_by": "workflow-service"}}


def test_emit_and_await_sends_the_event_and_waits_for_the_reply_with_its_request_id() -> None:
    definition = parse({"key": "k", "name": "n", "steps": [ASK]})
    t = Saga(definition, RUN, {}, org_id="org-1").start()
    [emit] = t.emits
    assert emit.data == {"request_id": "run-1:ask:1", "org_id": "org-1", "platform": "airbnb",
                         "requested_by": "workflow-service"}
    assert (t.wait_kind, t.timers[0].delay) == (WaitKind.EVENT, timedelta(minutes=1))

    resumed = Saga(definition, RUN, {}, t.state, t.status, t.current_step, org_id="org-1")
    assert not resumed.reply_received("airbnb.sync.completed", "run-1:ask:0", {}, actor="/sync").applied
    done = resumed.reply_received("airbnb.sync.completed", "run-1:ask:1", {"counts": {}}, actor="/sync")
    assert done.status is RunStatus.COMPLETED


def test_an_event_a_step_cannot_emit_fails_the_step() -> None:
    definition = parse({"key": "k", "name": "n", "steps": [{**ASK, "data": {"platform": "myspace"}}]})

    t = Saga(definition, RUN, {}, org_id="org-1").start()

    assert t.status is RunStatus.FAILED and t.emits == []
    assert t.failure_reason is not None and "stayops.sync.requested it emits is not valid" in t.failure_reason


def test_nothing_to_publish_skips_publishing_and_monitoring() -> None:
    run = pricing_run()
    run.complete("sync")
    empty = {**analysis(0.0), "recommendations": [], "max_abs_change_pct": 0.0}
    t = run.complete("analysis", empty)

    assert [task.workflow_step for task in t.tasks] == ["summary"]
    assert [t.state["steps"][s]["status"] for s in ("publish", "monitor", "review")] == ["skipped"] * 3


def test_a_publish_step_whose_decision_did_not_approve_publishes_nothing() -> None:
    definition = parse({"key": "k", "name": "n", "steps": [
        {"name": "d", "type": "decision", "role_id": "owner", "title": "D", "proposal": "${params.p}"},
        {"name": "publish", "type": "task", "task_type": "automated", "assigned_to": "automation",
         "title": "Publish", "approval": "d", "kind": "pivot",
         "data": {"action": "publish_prices", "platform": "airbnb"}}]})
    run = Run(definition, {"p": [recommendation("l-1", 5.0)]})
    run.start()

    t = run.complete("d", actor="u-owner", outcome="rejected")

    assert t.status is RunStatus.FAILED and [x.workflow_step for x in t.tasks] == [FAILED_STEP]  # owners told
    assert t.failure_reason is not None and "decision d did not approve any price" in t.failure_reason


def test_a_rejected_decision_approves_no_price_and_one_without_outcome_fails() -> None:
    definition = parse({"key": "k", "name": "n", "steps": [
        {"name": "d", "type": "decision", "role_id": "owner", "title": "D", "proposal": "${params.p}"},
        {"name": "after", "type": "wait", "duration": "PT1S"}]})
    proposal = [{"listing_id": "l-1", "date": "2025-03-10", "recommended_price": 90, "current_price": 100}]
    run = Run(definition, {"p": proposal})
    run.start()

    rejected = run.saga().task_completed("d", request_id=run.request_id, actor="u", result={}, outcome="rejected")
    assert rejected.state["steps"]["d"]["result"]["prices"] == []
    no_outcome = run.saga().task_completed("d", request_id=run.request_id, actor="u", result={})
    assert no_outcome.status is RunStatus.FAILED


def test_next_rules_that_loop_without_waiting_fail_the_run_instead_of_spinning() -> None:
    definition = parse({"key": "k", "name": "n", "steps": [
        {"name": "d", "type": "decision", "rule": "true", "role_id": "owner", "title": "D", "proposal": [],
         "next": [{"goto": "d"}]}]})

    t = Saga(definition, RUN, {}).start()

    assert t.status is RunStatus.FAILED
    assert t.failure_reason is not None and "loop" in t.failure_reason


# --- the run lifecycle: cancel, pause and resume, overlapping runs ---------------

def test_a_cancel_withdraws_the_task_the_run_waits_for_naming_who_and_why() -> None:
    run = pricing_run(threshold_pct=10)
    up_to_publish(run, 25.0)  # waits at the owner's decision
    decision_request = run.request_id

    t = run._keep(run.saga().cancel("u-owner", "listing sold"))

    assert t.status is RunStatus.CANCELLED and t.waiting is None
    assert [(c.request_id, c.reason, c.requested_by) for c in t.cancels] == [
        (decision_request, "listing sold", "u-owner")]
    assert (t.cancelled_by, t.cancel_reason, t.compensated) == ("u-owner", "listing sold", None)
    assert t.tasks == []  # nothing compensated unless asked


def test_a_cancel_with_compensate_undoes_the_completed_steps_in_reverse_order_then_ends_cancelled() -> None:
    spec = {"task_type": "manual", "role_id": "ops"}
    definition = parse({"key": "k", "name": "n", "steps": [
        {"name": "a", "type": "task", "title": "A", **spec, "compensation": [{**spec, "title": "undo a"}]},
        {"name": "b", "type": "task", "title": "B", **spec,
         "compensation": [{**spec, "title": "undo b1"}, {**spec, "title": "undo b2"}]},
        {"name": "c", "type": "task", "title": "C", **spec, "compensation": [{**spec, "title": "undo c"}]},
    ]})
    run = Run(definition)
    run.start()
    run.complete("a")
    run.complete("b")  # waits at c, which has not completed: its compensation does not run

    t = run._keep(run.saga().cancel("u-1", "not needed", compensate=True))
    assert [c.request_id for c in t.cancels] == ["run-1:c:1"]
    assert t.status is RunStatus.WAITING and t.tasks[0].workflow_step == "b.compensation.1"
    undone = [t.tasks[0].title]
    while run.t is not None and run.t.status is RunStatus.WAITING:
        t = run.complete(run.waiting_step)
        undone += [task.title for task in t.tasks]

    assert undone == ["undo b1", "undo b2", "undo a"]
    assert (t.status, t.compensated, t.cancelled_by, t.cancel_reason) == (
        RunStatus.CANCELLED, True, "u-1", "not needed")


def test_a_cancel_with_compensate_past_the_pivot_undoes_nothing() -> None:
    run = pricing_run(threshold_pct=10)
    up_to_publish(run, 4.0)  # approved by rule, waits at publish
    run.complete("publish")  # the pivot is done; waits on the monitor timer

    t = run._keep(run.saga().cancel("u-1", None, compensate=True))

    assert t.status is RunStatus.CANCELLED and t.tasks == [] and t.cancels == []
    assert ("workflow-service", "nothing is compensated: the run is past its pivot") in run.log()


def test_a_paused_run_records_a_completion_and_applies_it_on_resume() -> None:
    run = pricing_run()
    sync_request = run.request_id
    paused = run._keep(run.saga().pause("u-1", "checking the calendar"))
    assert paused.status is RunStatus.PAUSED

    held = run.complete("sync", request_id=sync_request)
    assert held.applied and held.status is RunStatus.PAUSED and held.tasks == []  # no new step
    assert run.saga().timer_fired("sync").tasks == []

    resumed = run._keep(run.saga().resume("u-1"))

    assert resumed.status is RunStatus.WAITING
    assert [task.workflow_step for task in resumed.tasks] == ["analysis"]
    assert "held" not in resumed.state and "paused" not in resumed.state


def test_a_timer_that_fires_while_paused_is_applied_on_resume() -> None:
    run = pricing_run(threshold_pct=10)
    up_to_publish(run, 4.0)
    run.complete("publish")  # waits on the monitor timer
    run._keep(run.saga().pause("u-1"))

    assert run.fire().status is RunStatus.PAUSED
    resumed = run._keep(run.saga().resume("u-1"))

    assert [task.workflow_step for task in resumed.tasks] == ["review"]
    assert ("timer", "step monitor: wait over") in run.log()


def test_a_stale_completion_recorded_while_paused_is_ignored_on_resume() -> None:
    run = pricing_run()
    run._keep(run.saga().pause("u-1"))
    run.complete("sync", request_id="run-1:sync:7")  # no such attempt

    resumed = run._keep(run.saga().resume("u-1"))

    assert resumed.applied and resumed.status is RunStatus.WAITING and resumed.tasks == []
    assert resumed.waiting is not None
    assert {k: resumed.waiting[k] for k in ("kind", "step", "request_id")} == {
        "kind": "task", "step": "sync", "request_id": "run-1:sync:1"}


def test_a_failed_run_tells_the_orgs_owners() -> None:
    run = pricing_run(threshold_pct=10)
    for _ in range(3):  # the sync's retry policy: four attempts
        run.fail("sync", "platform down")
        run.fire()
    t = run.fail("sync", "platform down", request_id="run-1:sync:4")

    assert t.status is RunStatus.FAILED and t.compensated is True
    [notify] = t.tasks
    assert (notify.workflow_step, notify.data["action"], notify.data["role_id"]) == (FAILED_STEP, "notify", "owner")


def test_the_concurrency_key_is_the_same_for_the_same_listings_in_any_order() -> None:
    assert PRICING.concurrency == {"key": "${params.listing_ids}", "policy": "cancel_previous"}
    one = concurrency_key(PRICING, {"listing_ids": ["l-2", "l-1"]})
    assert one == "l-1,l-2" == concurrency_key(PRICING, {"listing_ids": ["l-1", "l-2"]})
    assert concurrency_key(PRICING, {"listing_ids": ["l-3"]}) != one
    assert concurrency_key(parse({"key": "k", "name": "n", "steps": [
        {"name": "w", "type": "wait", "duration": "PT1S"}]}), {}) is None


def test_a_concurrency_key_outside_the_language_is_refused_at_publish() -> None:
    with pytest.raises(DefinitionInvalid) as refused:
        parse({"key": "k", "name": "n", "concurrency": {"key": "${__import__('os')}", "policy": "skip"},
               "steps": [{"name": "w", "type": "wait", "duration": "PT1S"}]})
    assert any(e["path"] == "$.concurrency.key" for e in refused.value.errors)


# --- timeouts, deadlines and escalation ---------------------------------------------

def timed(on_timeout: Any = None, **retry: Any) -> Definition:
    """A task with a one-hour timeout, then a fallback and a last step."""
    ask = {"name": "ask", "type": "task", "task_type": "manual", "title": "Ask the guest", "role_id": "ops",
           "timeout": "PT1H", **({"on_timeout": on_timeout} if on_timeout is not None else {}),
           **({"retry": retry} if retry else {})}
    return parse({"key": "k", "name": "Timed", "steps": [
        ask, {"name": "done", "type": "task", "task_type": "manual", "title": "Done", "role_id": "ops",
              "next": [{"goto": "end"}]},
        {"name": "fallback", "type": "task", "task_type": "manual", "title": "Call instead", "role_id": "ops"}]})


def test_a_timeout_that_goes_to_another_step_withdraws_the_task_and_moves_on() -> None:
    run = Run(timed({"goto": "fallback"}))
    t = run.start()
    assert [(timer.step, timer.delay) for timer in t.timers] == [("ask@timeout", timedelta(hours=1))]

    t = run.fire("ask@timeout")

    assert [c.request_id for c in t.cancels] == ["run-1:ask:1"]
    assert [task.workflow_step for task in t.tasks] == ["fallback"]
    assert t.state["steps"]["ask"]["status"] == "timed_out"
    assert any("ask timed out after PT1H; going on at fallback" in message for _, message in run.log())
    late = run.saga().task_completed("ask", request_id="run-1:ask:1", actor="u", result={})
    assert not late.applied


def test_a_timeout_that_fails_is_not_retried_whatever_the_retry_policy() -> None:
    run = Run(timed("fail", max_attempts=3))
    run.start()

    t = run.fire("ask@timeout")

    assert (t.status, t.compensated, t.timers) == (RunStatus.FAILED, True, [])
    assert [c.request_id for c in t.cancels] == ["run-1:ask:1"]
    assert t.state["failure"]["reason"] == "step ask timed out after PT1H"
    assert run.requested() == ["run-1:ask:1", "run-1:run_failed:1"]


def test_a_timeout_that_retries_asks_again_with_a_new_request_id_and_the_old_timer_is_stale() -> None:
    run = Run(timed("retry", max_attempts=2))
    run.start()
    run.fire("ask@timeout")
    t = run.fire()  # the retry's backoff timer
    assert [task.request_id for task in t.tasks] == ["run-1:ask:2"]
    assert [timer.step for timer in t.timers] == ["ask@timeout"]
    t.state["waiting"]["timers"]["timeout"] = "timer-2"  # as the handler names each timer it sets

    stale = run.saga().timer_fired("ask@timeout", "timer-1")
    assert not stale.applied
    t = run.complete("ask")
    assert [task.workflow_step for task in t.tasks] == ["done"]
    assert not run.saga().timer_fired("ask@timeout").applied  # the step is done


def test_a_task_answered_in_time_ignores_its_timeout() -> None:
    run = Run(timed({"goto": "fallback"}))
    run.start()
    run.complete("ask")
    assert not run.saga().timer_fired("ask@timeout").applied


APPROVAL = {"key": "k", "name": "Approval", "steps": [
    {"name": "approve", "type": "decision", "title": "Approve the refund", "role_id": "manager",
     "proposal": "${params.refund}", "deadline": "PT4H", "default_action": "approve",
     "escalate_after": "PT2H", "escalate_to": {"user_id": "${params.boss}", "role": "owner"}},
    {"name": "refund", "type": "task", "task_type": "manual", "title": "Refund", "role_id": "ops",
     "when": "steps.approve.outcome == 'approved'"}]}


def test_a_decision_is_due_by_its_deadline_and_the_deadline_approves_it() -> None:
    run = Run(parse(APPROVAL), {"refund": [{"amount": 40}]})
    t = run.start()
    [decision] = t.tasks
    assert decision.due_in == timedelta(hours=4)
    assert sorted((timer.step, timer.delay) for timer in t.timers) == [
        ("approve@deadline", timedelta(hours=4)), ("approve@escalation", timedelta(hours=2))]

    t = run.fire("approve@deadline")

    assert [c.request_id for c in t.cancels] == ["run-1:approve:1"]
    record = t.state["steps"]["approve"]
    assert (record["outcome"], record["by"], record["approved_by"]) == ("approved", "deadline", "deadline")
    assert ("deadline", "step approve: the deadline (PT4H) passed undecided; default action: approve") in run.log()
    assert [task.workflow_step for task in t.tasks] == ["refund"]


def test_an_escalation_reassigns_the_open_decision_and_tells_the_new_decider() -> None:
    run = Run(parse(APPROVAL), {"refund": [], "boss": "u-boss"})
    run.start()

    t = run.fire("approve@escalation")

    assert [(r.request_id, r.assigned_to, r.role_id) for r in t.reassigns] == [("run-1:approve:1", "u-boss", None)]
    [notify] = t.tasks
    assert (notify.workflow_step, notify.data["action"], notify.data["user_id"]) == ("escalation", "notify", "u-boss")
    assert (t.status, t.cancels, run.request_id) == (RunStatus.WAITING, [], "run-1:approve:1")
    assert not run.saga().timer_fired("approve@escalation").applied  # escalated once
    t = run.complete("approve", actor="u-boss", outcome="rejected")
    assert (t.status, t.state["steps"]["approve"]["by"]) == (RunStatus.COMPLETED, "u-boss")


def test_an_escalation_without_the_user_goes_to_the_role() -> None:
    run = Run(parse(APPROVAL), {"refund": []})
    run.start()
    t = run.fire("approve@escalation")
    assert [(r.assigned_to, r.role_id) for r in t.reassigns] == [(None, "owner")]


def test_the_builtin_pricing_decision_escalates_to_the_owner_and_its_deadline_rejects() -> None:
    run = pricing_run(owner_user_id="u-owner")
    t = up_to_publish(run, change=30.0)
    assert t.tasks[0].due_in == timedelta(days=2)
    t = run.fire("decision@escalation")
    assert [(r.assigned_to, r.role_id) for r in t.reassigns] == [("u-owner", None)]

    t = run.fire("decision@deadline")

    assert t.state["steps"]["decision"]["outcome"] == "rejected"
    assert "publish" not in run.requested() and [task.workflow_step for task in t.tasks] == ["summary"]


def test_a_deadline_cannot_approve_prices_the_org_policy_wants_a_person_for() -> None:
    document = builtin_documents()["dynamic-pricing"]
    steps = [{**s, "default_action": "approve"} if s["name"] == "decision" else s for s in document["steps"]]
    run = Run(parse({**document, "steps": steps}), resolve_parameters(PRICING, {"listing_ids": ["l-1"]}))
    run.start()
    up_to_publish(run, change=30.0)

    t = run.fire("decision@deadline")

    assert t.status is RunStatus.FAILED and "publish" not in [task.workflow_step for task in t.tasks]
    assert "its deadline cannot approve" in t.state["failure"]["reason"]


# --- results by reference (claim check) --------------------------------------------

def stored_analysis(change: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """A pricing result as agent-service stores it, and the ref and summary that travel."""
    detail = {"recommendations": [recommendation("l-1", change, currency="EUR"),
                                  recommendation("l-2", change / 2, currency="EUR")],
              "max_abs_change_pct": change, "min_confidence": 0.9, "needs_review": False, "currency": "EUR"}
    ref = make_ref(detail, service="agent-service", kind="pricing", id="res-1", org_id=ORG,
                   summary=pricing_summary(detail))
    return detail, by_reference(ref)


def with_details(run: Run, details: dict[str, dict[str, Any]]) -> Run:
    """The run as the handler drives it once it fetched the stored results."""
    original = run.saga

    def saga() -> Saga:
        s = original()
        s.details = details
        return s

    run.saga = saga  # type: ignore[method-assign]
    return run


def test_a_result_by_reference_needs_its_detail_before_the_decision() -> None:
    run = pricing_run(threshold_pct=10)
    run.complete("sync")
    _, travelling = stored_analysis(4.0)
    with pytest.raises(DetailNeeded) as needed:
        run.complete("analysis", travelling, actor="u-agent")
    assert needed.value.ref.id == "res-1"


def test_a_rule_approves_a_proposal_by_reference_and_the_publish_step_carries_the_ref_not_the_prices() -> None:
    detail, travelling = stored_analysis(4.0)
    run = with_details(pricing_run(threshold_pct=10), {"res-1": detail})
    run.complete("sync")
    t = run.complete("analysis", travelling, actor="u-agent")

    [publish] = t.tasks
    assert "prices" not in publish.data
    assert publish.data["prices_ref"]["id"] == "res-1" and publish.data["price_edits"] == []
    assert (publish.data["approved_by"], publish.data["currency"]) == (f"rule:{RULE}", "EUR")
    assert "recommendations" not in str(t.state), "the nights are not kept in the run"


def test_the_owner_decides_a_proposal_by_reference_with_edits_checked_against_its_nights() -> None:
    detail, travelling = stored_analysis(25.0)
    run = with_details(pricing_run(threshold_pct=10), {"res-1": detail})
    run.complete("sync")
    [decision] = run.complete("analysis", travelling, actor="u-agent").tasks
    assert "proposal" not in decision.data and decision.data["proposal_ref"]["id"] == "res-1"

    edit = {"listing_id": "l-2", "date": "2025-03-10", "price": 105.0}
    t = run.complete("decision", actor="u-owner", outcome="approved", changes={"prices": [edit]})
    [publish] = t.tasks
    assert publish.data["price_edits"] == [edit] and publish.data["approved_by"] == "u-owner"


def test_an_edit_naming_no_night_of_a_proposal_by_reference_fails_the_decision() -> None:
    detail, travelling = stored_analysis(25.0)
    run = with_details(pricing_run(threshold_pct=10), {"res-1": detail})
    run.complete("sync")
    run.complete("analysis", travelling, actor="u-agent")
    t = run.complete("decision", actor="u-owner", outcome="approved",
                     changes={"prices": [{"listing_id": "l-9", "date": "2025-03-10", "price": 105.0}]})
    assert not [task for task in t.tasks if task.workflow_step == "publish"]
    assert any("name no night" in message for _, message in run.log())


def test_a_summary_that_disagrees_with_its_stored_nights_fails_the_decision() -> None:
    detail, travelling = stored_analysis(25.0)
    lying = {**travelling, "max_abs_change_pct": 1.0}  # what the rule would read
    run = with_details(pricing_run(threshold_pct=10), {"res-1": detail})
    run.complete("sync")
    t = run.complete("analysis", lying, actor="u-agent")
    assert not [task for task in t.tasks if task.workflow_step == "publish"]
    assert any("does not agree with its stored detail" in message for _, message in run.log())
