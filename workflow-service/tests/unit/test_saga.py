"""The saga's step-advancing rules on the built-in dynamic-pricing definition and
small hand-built ones: which task comes next, which branch is taken, how a failure
is compensated — state in, transition out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from stayops_schemas.events.workflows import RunStatus, WaitKind
from workflow_service.definitions import builtin_documents, parse, resolve_parameters
from workflow_service.domain import RULE_ACTOR, Saga, Transition

PRICING = parse(builtin_documents()["dynamic-pricing"])
RUN = "run-1"


def recommendation(listing: str, change_pct: float) -> dict[str, Any]:
    return {"listing_id": listing, "date": "2025-03-10", "current_price": 100.0,
            "recommended_price": 100.0 + change_pct, "change_pct": change_pct, "confidence": 0.9, "factors": []}


def analysis(max_change: float, needs_review: bool = False) -> dict[str, Any]:
    return {"recommendations": [recommendation("l-1", max_change)], "max_abs_change_pct": max_change,
            "min_confidence": 0.9, "needs_review": needs_review, "currency": "EUR"}


def pricing_saga(**params: Any) -> tuple[Saga, Transition]:
    parameters = resolve_parameters(PRICING, {"listing_ids": ["l-1"], **params})
    saga = Saga(PRICING, RUN, parameters)
    return saga, saga.start()


def follow(saga: Saga, transition: Transition) -> Saga:
    return Saga(PRICING, RUN, saga.parameters, transition.state, transition.status, transition.current_step)


def test_a_run_starts_by_asking_automation_to_sync_the_listings() -> None:
    _, started = pricing_saga()

    assert started.status is RunStatus.WAITING
    assert started.wait_kind is WaitKind.TASK
    [task] = started.tasks
    assert (task.request_id, task.task_type, task.assigned_to, task.role_id) == (
        "run-1:sync:1", "automated", "automation", None)
    assert task.data == {"action": "request_sync", "platform": "airbnb", "listing_ids": ["l-1"]}


def test_a_small_change_is_approved_by_rule_and_published_with_previous_prices() -> None:
    saga, t = pricing_saga(threshold_pct=10)
    t = follow(saga, t).task_completed("sync", actor="automation", result={})
    assert [task.data["skill"] for task in t.tasks] == ["pricing"]
    assert t.tasks[0].role_id == "revenue-manager" and t.tasks[0].data["horizon_days"] == 90

    t = follow(saga, t).task_completed("analysis", actor="u-agent", result=analysis(4.0))

    assert (RULE_ACTOR, "step decision: approved by rule: " + PRICING.step("decision").raw["rule"]) in [
        (line.actor, line.message) for line in t.log]
    [publish] = t.tasks
    assert publish.workflow_step == "publish"
    assert publish.data["prices"] == [{"listing_id": "l-1", "date": "2025-03-10", "price": 104.0,
                                       "currency": "EUR", "previous_price": 100.0}]


def test_a_big_change_asks_the_owner_and_their_changes_override_the_proposal() -> None:
    saga, t = pricing_saga(threshold_pct=10)
    t = follow(saga, t).task_completed("sync", actor="automation", result={})
    t = follow(saga, t).task_completed("analysis", actor="u-agent", result=analysis(25.0))
    [decision] = t.tasks
    assert (decision.task_type, decision.role_id) == ("decision", "owner")
    assert decision.data["proposal"] == [recommendation("l-1", 25.0)]

    t = follow(saga, t).task_completed(
        "decision", actor="u-owner", result={}, outcome="approved",
        changes={"prices": [{"listing_id": "l-1", "date": "2025-03-10", "price": 110.0}]})

    assert t.tasks[0].data["prices"][0]["price"] == 110.0


def test_needs_review_asks_the_owner_even_for_a_small_change() -> None:
    saga, t = pricing_saga()
    t = follow(saga, t).task_completed("sync", actor="automation", result={})
    t = follow(saga, t).task_completed("analysis", actor="u-agent", result=analysis(1.0, needs_review=True))
    assert t.tasks[0].task_type == "decision"


def test_a_rejection_skips_to_the_summary_and_completes_with_the_decision() -> None:
    saga, t = pricing_saga(owner_user_id="u-owner")
    for step, result in (("sync", {}), ("analysis", analysis(30.0))):
        t = follow(saga, t).task_completed(step, actor="x", result=result)
    t = follow(saga, t).task_completed("decision", actor="u-owner", result={}, outcome="rejected")
    [summary] = t.tasks
    assert summary.workflow_step == "summary"
    assert summary.data["user_id"] == "u-owner" and summary.data["action"] == "notify"

    t = follow(saga, t).task_completed("summary", actor="automation", result={})

    assert t.status is RunStatus.COMPLETED
    assert t.result == {"decision": "rejected"}


def test_the_monitor_waits_on_a_timer_then_reviews_and_summarises() -> None:
    saga, t = pricing_saga(monitor_days=7)
    for step, result in (("sync", {}), ("analysis", analysis(2.0)), ("publish", {})):
        t = follow(saga, t).task_completed(step, actor="x", result=result)
    assert t.wait_kind is WaitKind.TIMER
    assert [(timer.step, timer.delay) for timer in t.timers] == [("monitor", timedelta(days=7))]

    t = follow(saga, t).timer_fired("monitor")
    assert [(task.workflow_step, task.data["skill"]) for task in t.tasks] == [("review", "performance-review")]
    t = follow(saga, t).task_completed("review", actor="u-agent", result={})
    t = follow(saga, t).task_completed("summary", actor="automation", result={})

    assert (t.status, t.result) == (RunStatus.COMPLETED, {"decision": "approved"})


def test_a_failed_publish_is_compensated_then_the_run_fails_compensated() -> None:
    saga, t = pricing_saga()
    for step, result in (("sync", {}), ("analysis", analysis(2.0))):
        t = follow(saga, t).task_completed(step, actor="x", result=result)
    t = follow(saga, t).task_failed("publish", actor="automation", reason="l-1 rejected the price")

    assert [task.data["action"] for task in t.tasks] == ["notify", "request_sync"]
    assert "l-1 rejected the price" in t.tasks[0].data["body"]
    assert t.status is RunStatus.WAITING
    t = follow(saga, t).task_completed("publish.compensation.1", actor="automation", result={})
    assert t.status is RunStatus.WAITING
    t = follow(saga, t).task_completed("publish.compensation.2", actor="automation", result={})

    assert (t.status, t.compensated) == (RunStatus.FAILED, True)


def test_a_failed_compensation_ends_the_run_failed_and_needing_attention() -> None:
    saga, t = pricing_saga()
    for step, result in (("sync", {}), ("analysis", analysis(2.0))):
        t = follow(saga, t).task_completed(step, actor="x", result=result)
    t = follow(saga, t).task_failed("publish", actor="automation", reason="down")
    t = follow(saga, t).task_failed("publish.compensation.2", actor="automation", reason="sync down too")

    assert (t.status, t.compensated) == (RunStatus.FAILED, False)
    assert t.failure_reason is not None and "needs attention" in t.failure_reason


@pytest.mark.parametrize("step", ["analysis", "sync"])
def test_stale_and_duplicate_completions_change_nothing(step: str) -> None:
    saga, t = pricing_saga()
    t = follow(saga, t).task_completed("sync", actor="automation", result={})
    again = follow(saga, t)

    outcome = again.task_completed("sync", actor="automation", result={}) if step == "sync" else \
        again.task_completed("decision", actor="u", result={}, outcome="approved")

    assert not outcome.applied and outcome.tasks == []


def test_when_skips_a_step_and_next_rules_branch() -> None:
    definition = parse({"key": "k", "name": "n", "steps": [
        {"name": "a", "type": "task", "task_type": "manual", "title": "A",
         "next": [{"when": "steps.a.result.n > 2", "goto": "c"}]},
        {"name": "b", "type": "task", "task_type": "manual", "title": "B"},
        {"name": "c", "type": "task", "task_type": "manual", "title": "C ${steps.a.result.n}",
         "when": "params.go"},
        {"name": "d", "type": "wait", "duration": "PT5S"},
    ]})
    saga = Saga(definition, RUN, {"go": False})
    t = saga.start()
    t = Saga(definition, RUN, {"go": False}, t.state, t.status).task_completed("a", actor="u", result={"n": 3})

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


def test_the_summary_tells_the_owner_what_was_decided() -> None:
    saga, t = pricing_saga(owner_user_id="u-owner")
    for step, result in (("sync", {}), ("analysis", analysis(30.0))):
        t = follow(saga, t).task_completed(step, actor="x", result=result)
    t = follow(saga, t).task_completed("decision", actor="u-owner", result={}, outcome="rejected")

    assert t.tasks[0].data["subject"] == "Weekly pricing: rejected"
    assert t.tasks[0].data["body"] == "The recommended prices were rejected (by u-owner). No price was changed."


def test_a_timer_of_an_earlier_wait_does_not_end_the_current_one() -> None:
    saga, t = pricing_saga(monitor_days=7)
    for step, result in (("sync", {}), ("analysis", analysis(2.0)), ("publish", {})):
        t = follow(saga, t).task_completed(step, actor="x", result=result)
    t.state["waiting"]["timer_id"] = "timer-2"

    assert not follow(saga, t).timer_fired("monitor", "timer-1").applied
    assert follow(saga, t).timer_fired("monitor", "timer-2").applied


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
    saga, t = pricing_saga()
    empty = {**analysis(0.0), "recommendations": [], "max_abs_change_pct": 0.0}
    for step, result in (("sync", {}), ("analysis", empty)):
        t = follow(saga, t).task_completed(step, actor="x", result=result)

    assert [task.workflow_step for task in t.tasks] == ["summary"]
    assert [t.state["steps"][s]["status"] for s in ("publish", "monitor", "review")] == ["skipped"] * 3


def test_a_failure_after_publishing_compensates_without_claiming_prices_were_not_applied() -> None:
    saga, t = pricing_saga(monitor_days=0)
    for step, result in (("sync", {}), ("analysis", analysis(2.0)), ("publish", {})):
        t = follow(saga, t).task_completed(step, actor="x", result=result)
    t = follow(saga, t).timer_fired("monitor")
    t = follow(saga, t).task_failed("review", actor="u-agent", reason="no bookings data")

    notify = t.tasks[0].data
    assert notify["subject"] == "Weekly pricing stopped after publishing"
    assert notify["body"] == "step review failed: no bookings data. The new prices stay published."


def test_a_rejected_decision_approves_no_price_and_one_without_outcome_fails() -> None:
    definition = parse({"key": "k", "name": "n", "steps": [
        {"name": "d", "type": "decision", "role_id": "owner", "title": "D", "proposal": "${params.p}"},
        {"name": "after", "type": "wait", "duration": "PT1S"}]})
    proposal = [{"listing_id": "l-1", "date": "2025-03-10", "recommended_price": 90, "current_price": 100}]
    started = Saga(definition, RUN, {"p": proposal}).start()

    def resumed() -> Saga:
        return Saga(definition, RUN, {"p": proposal}, started.state, started.status, started.current_step)

    rejected = resumed().task_completed("d", actor="u", result={}, outcome="rejected")
    assert rejected.state["steps"]["d"]["result"]["prices"] == []
    no_outcome = resumed().task_completed("d", actor="u", result={})
    assert no_outcome.status is RunStatus.FAILED


def test_next_rules_that_loop_without_waiting_fail_the_run_instead_of_spinning() -> None:
    definition = parse({"key": "k", "name": "n", "steps": [
        {"name": "d", "type": "decision", "rule": "true", "role_id": "owner", "title": "D", "proposal": [],
         "next": [{"goto": "d"}]}]})

    t = Saga(definition, RUN, {}).start()

    assert t.status is RunStatus.FAILED
    assert t.failure_reason is not None and "loop" in t.failure_reason
