"""The built-in portfolio-pricing (the PropCo scenario) on the saga: a map over the
segments, one batch decision over every segment's proposal by reference (approve
all, some segments, with night edits, or reject), and a publish that is retried only
for the listings a failed attempt did not publish — state in, transition out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stayops_schemas.claims import by_reference, make_ref, pricing_summary
from stayops_schemas.events.org import OrgPolicyUpdated, PriceGuardrails
from stayops_schemas.events.workflows import RunStatus
from workflow_service.definitions import DefinitionInvalid, builtin_documents, parse, resolve_parameters
from workflow_service.domain import DetailNeeded, Saga, Transition

PORTFOLIO = parse(builtin_documents()["portfolio-pricing"])
RUN, ORG = "run-p", "org-1"
SEGMENTS = {"luxury": ["lux-1", "lux-2"], "standard": ["std-1", "std-2", "std-3"], "budget": ["bud-1"]}


def night(listing: str, change_pct: float = 5.0) -> dict[str, Any]:
    return {"listing_id": listing, "date": "2025-03-10", "current_price": 100.0,
            "recommended_price": 100.0 + change_pct, "change_pct": change_pct, "confidence": 0.9, "factors": [],
            "currency": "EUR"}


def stored(segment: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A segment's pricing result as agent-service stores it, and what travels."""
    nights = [night(listing) for listing in SEGMENTS[segment]]
    detail = {"recommendations": nights, "max_abs_change_pct": 5.0, "min_confidence": 0.9, "needs_review": False,
              "currency": "EUR"}
    ref = make_ref(detail, service="agent-service", kind="pricing", id=f"res-{segment}", org_id=ORG,
                   summary=pricing_summary(detail))
    return detail, by_reference(ref)


DETAILS = {f"res-{segment}": stored(segment)[0] for segment in SEGMENTS}


@dataclass
class Portfolio:
    """A portfolio run driven as the handlers drive it: stored results fetched when
    the saga asks (DetailNeeded), child runs given ids, their ends reported."""

    t: Transition | None = None
    policy: OrgPolicyUpdated | None = None
    fetched: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def apply(self, happening: Callable[[Saga], Transition]) -> Transition:
        details: dict[str, dict[str, Any]] = {}
        while True:
            saga = self.saga()
            saga.details = details
            try:
                transition = happening(saga)
                break
            except DetailNeeded as needed:
                self.fetched.append(needed.ref.id)
                details[needed.ref.id] = DETAILS[needed.ref.id]
        if transition.applied:
            self.t = transition
            self.log += [line.message for line in transition.log]
            started = {c.request_id: f"child-{c.request_id.rsplit(':', 1)[1]}" for c in transition.children}
            if started:
                self.t = self.saga().children_started(started)
        return transition

    def saga(self) -> Saga:
        params = resolve_parameters(PORTFOLIO, {"segments": [{"segment": s, "listing_ids": ids}
                                                             for s, ids in SEGMENTS.items()],
                                                "owner_user_id": "u-owner", "monitor_days": 0})
        if self.t is None:
            return Saga(PORTFOLIO, RUN, params, org_id=ORG, policy=self.policy)
        return Saga(PORTFOLIO, RUN, params, self.t.state, self.t.status, self.t.current_step, org_id=ORG,
                    policy=self.policy)

    @property
    def waiting(self) -> dict[str, Any]:
        assert self.t is not None and self.t.waiting is not None
        return self.t.waiting

    def segment_done(self, index: int, status: str = "completed") -> Transition:
        segment = list(SEGMENTS)[index]
        result = {"segment": segment, "proposal": stored(segment)[1]} if status == "completed" else None
        return self.apply(lambda saga: saga.child_finished(f"{RUN}:segments:1:{index}", f"child-{index}", status,
                                                           result, None if result else "analysis failed"))

    def complete(self, step: str, result: dict[str, Any] | None = None, **decision: Any) -> Transition:
        request_id = self.waiting["request_id"]
        return self.apply(lambda saga: saga.task_completed(step, request_id=request_id, actor="u-rita",
                                                           result=result or {}, **decision))

    def fail(self, step: str, reason: str, result: dict[str, Any]) -> Transition:
        request_id = self.waiting["request_id"]
        return self.apply(lambda saga: saga.task_failed(step, request_id=request_id, actor="automation",
                                                        reason=reason, result=result))

    def fire(self, timer_step: str | None = None) -> Transition:
        step = timer_step or self.waiting["step"]
        return self.apply(lambda saga: saga.timer_fired(step))


def reviewed(policy: OrgPolicyUpdated | None = None) -> tuple[Portfolio, Transition]:
    run = Portfolio(policy=policy)
    started = run.apply(lambda saga: saga.start())
    assert len(started.children) == 3, "three segments at once (max_concurrency 3)"
    assert started.children[0].parameters == {"segment": "luxury", "listing_ids": SEGMENTS["luxury"],
                                              "platform": "airbnb"}
    run.segment_done(0)
    run.segment_done(1)
    return run, run.segment_done(2)


def test_every_segment_is_put_to_the_revenue_manager_in_one_batch_task_by_reference() -> None:
    run, t = reviewed()

    [task] = t.tasks
    assert (task.workflow_step, task.task_type, task.role_id) == ("review", "decision", "revenue-manager")
    assert task.due_in is not None, "the batch review has a deadline"
    batch = task.data["batch"]
    assert [entry["segment"] for entry in batch] == list(SEGMENTS)
    assert [entry["listing_ids"] for entry in batch] == [sorted(ids) for ids in SEGMENTS.values()]
    assert [entry["proposal_ref"]["id"] for entry in batch] == [f"res-{s}" for s in SEGMENTS]
    assert "recommendations" not in str(task.data) and "recommendations" not in str(t.state)
    assert sorted(set(run.fetched)) == sorted(DETAILS), "each segment's nights were checked against its summary"


def test_approving_some_segments_with_an_edit_publishes_exactly_those_by_reference() -> None:
    run, _ = reviewed()
    edit = {"listing_id": "bud-1", "date": "2025-03-10", "price": 102.0}

    t = run.complete("review", outcome="approved", changes={"segments": ["luxury", "budget"], "prices": [edit]})

    [publish] = t.tasks
    assert publish.workflow_step == "publish"
    assert [ref["id"] for ref in publish.data["prices_refs"]] == ["res-luxury", "res-budget"]
    assert publish.data["listing_ids"] == ["bud-1", "lux-1", "lux-2"]
    assert publish.data["price_edits"] == [edit] and publish.data["approved_by"] == "u-rita"
    assert t.state["steps"]["review"]["result"]["segments"] == ["luxury", "budget"]


def test_approving_all_takes_every_segment() -> None:
    run, _ = reviewed()
    [publish] = run.complete("review", outcome="approved").tasks
    assert len(publish.data["prices_refs"]) == 3 and len(publish.data["listing_ids"]) == 6


def test_a_rejected_batch_publishes_nothing_and_tells_the_owner() -> None:
    run, _ = reviewed()
    t = run.complete("review", outcome="rejected", comment="Not this week")
    assert [task.workflow_step for task in t.tasks] == ["summary"]


def test_an_edit_outside_the_approved_segments_fails_the_review() -> None:
    run, _ = reviewed()
    t = run.complete("review", outcome="approved", changes={
        "segments": ["luxury"], "prices": [{"listing_id": "std-1", "date": "2025-03-10", "price": 101.0}]})
    assert not [task for task in t.tasks if task.workflow_step == "publish"]
    assert any("name no night of the approved segments" in line for line in run.log)


def test_an_edit_beyond_the_org_price_policy_fails_the_review_and_publishes_nothing() -> None:
    limits = OrgPolicyUpdated(org_id=ORG, pricing=PriceGuardrails(max_change_pct=30),
                              updated_at=dt.datetime.now(dt.UTC))
    run, _ = reviewed(limits)

    t = run.complete("review", outcome="approved", changes={
        "prices": [{"listing_id": "std-2", "date": "2025-03-10", "price": 180.0}]})

    assert not [task for task in t.tasks if task.workflow_step == "publish"], "nothing is published"
    assert t.state["steps"]["review"]["refused"][0]["listing_id"] == "std-2"
    assert any("break the org's price policy" in line and "std-2 2025-03-10" in line for line in run.log)


def test_a_failed_listing_is_retried_alone_and_each_listing_is_reported() -> None:
    run, _ = reviewed()
    run.complete("review", outcome="approved")
    t = run.fail("publish", "prices not applied for 1 listing(s): std-2: refused",
                 {"applied": ["bud-1", "lux-1", "lux-2", "std-1", "std-3"], "failed": {"std-2": "refused"}})
    assert t.status is RunStatus.WAITING and run.waiting["kind"] == "retry"

    [again] = run.fire().tasks
    assert again.request_id == f"{RUN}:publish:2"
    assert again.data["listing_ids"] == ["std-2"], "the published listings are not published again"
    t = run.complete("publish", {"applied": ["std-2"], "failed": {}})

    listings = t.state["steps"]["publish"]["listings"]
    assert {lid: (o["status"], o["attempt"]) for lid, o in listings.items()}["std-2"] == ("published", 2)
    assert all(o["status"] == "published" for o in listings.values()) and len(listings) == 6
    assert run.waiting["step"] == "monitor"
    [performance] = run.fire().tasks
    assert performance.workflow_step == "performance" and performance.data["skill"] == "performance-review"
    assert [r["run_id"] for r in performance.data["runs"]] == ["child-0", "child-1", "child-2"]


def test_a_failed_segment_is_left_out_and_the_rest_are_reviewed() -> None:
    run = Portfolio()
    run.apply(lambda saga: saga.start())
    run.segment_done(0)
    run.segment_done(1, status="failed")
    [task] = run.segment_done(2).tasks

    assert [entry["segment"] for entry in task.data["batch"]] == ["luxury", "budget"]
    assert task.data["not_proposed"][0]["index"] == 1


def test_a_batch_decision_takes_no_rule() -> None:
    document = builtin_documents()["portfolio-pricing"]
    steps = [{**s, "rule": "true"} if s["name"] == "review" else s for s in document["steps"]]
    try:
        parse({**document, "steps": steps})
    except DefinitionInvalid as exc:
        assert "no rule" in str(exc)
    else:
        raise AssertionError("a batch decision with a rule was accepted")


def test_an_undecided_review_goes_to_the_owner_then_the_deadline_rejects_it() -> None:
    run, t = reviewed()
    assert t.tasks[0].due_in is not None and t.tasks[0].due_in.days == 2

    escalated = run.fire("review@escalation")
    assert [(r.assigned_to, r.role_id) for r in escalated.reassigns] == [("u-owner", None)]
    assert [task.workflow_step for task in escalated.tasks] == ["escalation"], "the owner is told"

    t = run.fire("review@deadline")
    assert t.state["steps"]["review"]["outcome"] == "rejected"
    assert [task.workflow_step for task in t.tasks] == ["summary"], "nothing is published"
