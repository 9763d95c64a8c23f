"""The `parallel` step: named branches, each a child run whose definition is the
branch (found in the parent's definition by `<step>/<branch>`), `continue` and
`fail_fast`, the result by branch name read by later steps, the parent's cancel and
pause reaching the branches, and the definition checks — state in, transition out."""

from __future__ import annotations

from typing import Any

import pytest

from stayops_schemas.events.workflows import RunStatus, WaitKind
from workflow_service.definitions import MAX_PARALLEL_DEPTH, DefinitionInvalid, parse
from workflow_service.domain import Saga, Transition

RUN = "parent-1"


def task(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "task", "task_type": "automated", "assigned_to": "automation",
            "title": f"Do {name}", "data": {"action": "noop", "listing": "${params.listing_id}"}, **extra}


def fan(**parallel: Any) -> dict[str, Any]:
    return {"key": "fan", "name": "Fan", "result": {"cleaned": "${steps.both.result.clean.result.clean.done}"},
            "steps": [
                {"name": "both", "type": "parallel", "branches": {
                    "clean": [task("clean")],
                    "photos": [task("shoot"), task("upload")],
                }, **parallel},
                {"name": "after", "type": "task", "task_type": "manual", "title": "Check ${steps.both.result.photos"
                 ".status}", "role_id": "owner"},
            ]}


class Parent:
    """A parent run driven as the handlers drive it: each branch started gets a run
    id, each branch's end reports by its request id."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.definition = parse(document)
        self.t: Transition | None = None

    def saga(self) -> Saga:
        params = {"listing_id": "l-1"}
        if self.t is None:
            return Saga(self.definition, RUN, params, org_id="org-1")
        return Saga(self.definition, RUN, params, self.t.state, self.t.status, self.t.current_step, org_id="org-1")

    def keep(self, transition: Transition) -> Transition:
        if transition.applied:
            self.t = transition
            started = {c.request_id: f"child-{c.branch}" for c in transition.children}
            if started:
                self.t = self.saga().children_started(started)
        return transition

    def end(self, index: int, status: str = "completed", **extra: Any) -> Transition:
        assert self.t is not None
        item = self.t.state["steps"]["both"]["items"][index]
        return self.keep(self.saga().child_finished(item["request_id"], item["run_id"], status, **extra))

    def items(self) -> list[dict[str, Any]]:
        assert self.t is not None
        items: list[dict[str, Any]] = self.t.state["steps"]["both"]["items"]
        return items


def test_every_branch_starts_at_once_as_a_child_of_its_branch_and_the_result_is_by_branch_name() -> None:
    parent = Parent(fan())
    first = parent.keep(parent.saga().start())
    assert [(c.branch, c.request_id) for c in first.children] == [
        ("both/clean", f"{RUN}:both:1:0"), ("both/photos", f"{RUN}:both:1:1")]
    assert first.children[0].parameters == {"listing_id": "l-1"}, "a branch gets the run's params"
    assert first.status is RunStatus.WAITING and first.wait_kind is WaitKind.RUNS
    assert [(i["branch"], i["status"], i["run_id"]) for i in parent.items()] == [
        ("clean", "running", "child-both/clean"), ("photos", "running", "child-both/photos")]

    parent.end(1, result={"shoot": {}, "upload": {"url": "x"}})
    done = parent.end(0, result={"clean": {"done": True}})
    assert done.current_step == "after"
    result = done.state["steps"]["both"]["result"]
    assert result == {"clean": {"status": "completed", "run_id": "child-both/clean",
                                "result": {"clean": {"done": True}}},
                      "photos": {"status": "completed", "run_id": "child-both/photos",
                                 "result": {"shoot": {}, "upload": {"url": "x"}}}}
    [check] = done.tasks
    assert check.title == "Check completed", "a later step reads steps.<parallel>.result.<branch>"


def test_the_branch_is_a_workflow_of_its_own_whose_result_holds_its_steps_results() -> None:
    branch = parse(fan()).branch("both/photos")
    assert [s.name for s in branch.steps] == ["shoot", "upload"]
    saga = Saga(branch, "child-1", {"listing_id": "l-1"}, org_id="org-1")
    t = saga.start()
    assert t.tasks[0].data == {"action": "noop", "listing": "l-1"}
    t = Saga(branch, "child-1", {"listing_id": "l-1"}, t.state, t.status, t.current_step).task_completed(
        "shoot", request_id="child-1:shoot:1", actor="automation", result={"n": 3})
    t = Saga(branch, "child-1", {"listing_id": "l-1"}, t.state, t.status, t.current_step).task_completed(
        "upload", request_id="child-1:upload:1", actor="automation", result={"url": "x"})
    assert t.status is RunStatus.COMPLETED and t.result == {"shoot": {"n": 3}, "upload": {"url": "x"}}


def test_continue_completes_the_step_with_the_failed_branch_in_its_result_and_log() -> None:
    parent = Parent(fan())
    parent.keep(parent.saga().start())
    parent.end(0, "failed", reason="no cleaner")
    done = parent.end(1, result={})
    assert done.current_step == "after" and done.status is RunStatus.WAITING
    assert done.state["steps"]["both"]["result"]["clean"] == {"status": "failed", "run_id": "child-both/clean",
                                                              "error": "no cleaner"}
    assert any("all 2 branch(es) done; 1 failed: branch clean (child-both/clean) failed: no cleaner"
               in line.message for line in done.log)


def test_fail_fast_cancels_the_open_branches_and_fails_the_step() -> None:
    parent = Parent(fan(on_branch_failure="fail_fast"))
    parent.keep(parent.saga().start())
    failed = parent.end(1, "failed", reason="camera broken")
    assert [(c.run_id, c.action) for c in failed.child_controls] == [("child-both/clean", "cancel")]
    assert failed.status is RunStatus.FAILED
    assert [i["status"] for i in parent.items()] == ["cancelled", "failed"]
    assert "branch photos (child-both/photos) failed: camera broken" in (failed.failure_reason or "")
    assert parent.end(0, "cancelled").applied is False


def test_max_concurrency_starts_the_branches_one_after_another() -> None:
    parent = Parent(fan(max_concurrency=1))
    first = parent.keep(parent.saga().start())
    assert [c.branch for c in first.children] == ["both/clean"]
    assert [c.branch for c in parent.end(0, result={}).children] == ["both/photos"]


def test_cancel_and_pause_reach_the_open_branches() -> None:
    parent = Parent(fan())
    parent.keep(parent.saga().start())
    paused = parent.keep(parent.saga().pause("u-1", "hold on"))
    assert sorted((c.run_id, c.action) for c in paused.child_controls) == [
        ("child-both/clean", "pause"), ("child-both/photos", "pause")]
    assert parent.end(0, result={}).status is RunStatus.PAUSED, "a branch's end is held while paused"
    resumed = parent.keep(parent.saga().resume("u-1"))
    # Asked of both (the handler leaves a child that has ended alone), then the held end applies.
    assert ("child-both/photos", "resume") in [(c.run_id, c.action) for c in resumed.child_controls]
    assert parent.items()[0]["status"] == "completed", "the held end applied on resume"
    cancelled = parent.keep(parent.saga().cancel("u-1", "not today", compensate=True))
    assert cancelled.status is RunStatus.CANCELLED
    assert [(c.run_id, c.action, c.compensate) for c in cancelled.child_controls] == [
        ("child-both/photos", "cancel", True)]


def nested(depth: int) -> list[dict[str, Any]]:
    steps = [task("leaf")]
    for level in range(depth):
        steps = [{"name": f"p{level}", "type": "parallel", "branches": {"only": steps}}]
    return steps


def test_parallel_steps_nest_up_to_the_limit_and_a_branch_of_a_branch_is_found_by_its_path() -> None:
    definition = parse({"key": "deep", "name": "Deep", "steps": nested(MAX_PARALLEL_DEPTH)})
    assert [s.name for s in definition.branch("p2/only/p1/only/p0/only").steps] == ["leaf"]
    with pytest.raises(DefinitionInvalid) as caught:
        parse({"key": "deep", "name": "Deep", "steps": nested(MAX_PARALLEL_DEPTH + 1)})
    assert [e["path"] for e in caught.value.errors] == ["$.steps[0].branches.only[0].branches.only[0]"
                                                        ".branches.only[0].branches"]


@pytest.mark.parametrize(("branches", "path"), [
    ({}, "$.steps[0].branches"),
    ({"left": []}, "$.steps[0].branches.left"),
    ({"Left": [task("a")]}, "$.steps[0].branches"),
    ({"left": [task("a"), task("a")]}, "$.steps[0].branches.left[1].name"),
    ({"left": [task("a", next=[{"goto": "after"}])]}, "$.steps[0].branches.left[0].next[0].goto"),
    ({"left": [{"name": "a", "type": "task"}]}, "$.steps[0].branches.left[0]"),
    ({"left": [task("a", when="params.x +")]}, "$.steps[0].branches.left[0].when"),
    ({"left": [{"name": "m", "type": "map", "items": "params.x", "workflow": "fan"}]},
     "$.steps[0].branches.left[0].workflow"),
])
def test_branches_that_cannot_work_are_refused_where_they_are(branches: dict[str, Any], path: str) -> None:
    document = fan()
    document["steps"][0]["branches"] = branches
    with pytest.raises(DefinitionInvalid) as caught:
        parse(document)
    assert path in [e["path"] for e in caught.value.errors], caught.value.errors


@pytest.mark.parametrize(("change", "path"), [
    ({"on_branch_failure": "ignore"}, "$.steps[0].on_branch_failure"),
    ({"retry": {"max_attempts": 2}}, "$.steps[0].retry"),
    ({"timeout": "PT1M"}, "$.steps[0].timeout"),
    ({"workflow": "other"}, "$.steps[0].workflow"),
    ({"on_item_failure": "continue"}, "$.steps[0].on_item_failure"),
])
def test_parallel_steps_that_cannot_work_are_refused(change: dict[str, Any], path: str) -> None:
    with pytest.raises(DefinitionInvalid) as caught:
        parse(fan(**change))
    assert path in [e["path"] for e in caught.value.errors], caught.value.errors


def test_a_parallel_step_without_branches_is_refused_and_branches_belong_to_parallel_steps() -> None:
    document = fan()
    del document["steps"][0]["branches"]
    with pytest.raises(DefinitionInvalid) as caught:
        parse(document)
    assert "$.steps[0].branches" in [e["path"] for e in caught.value.errors]
    document = fan()
    document["steps"][1]["branches"] = {"x": [task("a")]}
    with pytest.raises(DefinitionInvalid) as caught:
        parse(document)
    assert "$.steps[1].branches" in [e["path"] for e in caught.value.errors]
