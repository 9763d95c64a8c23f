"""The `map` step: child runs per item, at most `max_concurrency` open at once,
`continue` and `fail_fast`, late reports, and the parent's cancel and pause reaching
its children — state in, transition out; the child runs themselves are the handlers'."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from stayops_schemas.events.workflows import RunStatus, WaitKind
from workflow_service.definitions import DefinitionInvalid, parse
from workflow_service.domain import Saga, Transition

RUN = "parent-1"


def fan_out(**map_step: Any) -> dict[str, Any]:
    return {"key": "fan", "name": "Fan out", "result": {"outcomes": "${steps.each.result}"}, "steps": [
        {"name": "each", "type": "map", "items": "params.listing_ids", "workflow": "clean-one",
         "parameters": {"listing_id": "${item}", "position": "${index}"}, **map_step},
        {"name": "after", "type": "task", "task_type": "manual", "title": "Check", "role_id": "owner"},
    ]}


@dataclass
class Parent:
    """A parent run driven as the handlers drive it: each child started gets a run id
    (`children_started`), each end reports by its request id."""

    document: dict[str, Any]
    items: list[str]
    t: Transition | None = None
    open: dict[str, str] = field(default_factory=dict)  # request id -> child run id
    peak: int = 0

    def saga(self) -> Saga:
        definition = parse(self.document)
        params = {"listing_ids": self.items}
        if self.t is None:
            return Saga(definition, RUN, params, org_id="org-1")
        return Saga(definition, RUN, params, self.t.state, self.t.status, self.t.current_step, org_id="org-1")

    def _keep(self, transition: Transition) -> Transition:
        if not transition.applied:
            return transition
        self.t = transition
        started = {c.request_id: f"child-{c.request_id.rsplit(':', 1)[1]}" for c in transition.children}
        if started:
            self.t = self.saga().children_started(started)
            self.open.update(started)
        for control in transition.child_controls:
            if control.action == "cancel":
                self.open = {r: c for r, c in self.open.items() if c != control.run_id}
        self.peak = max(self.peak, len(self.open))
        return transition

    def start(self) -> Transition:
        return self._keep(self.saga().start())

    def end(self, index: int, status: str = "completed", **extra: Any) -> Transition:
        request_id = f"{RUN}:each:1:{index}"
        run_id = self.open.pop(request_id, f"child-{index}")
        return self._keep(self.saga().child_finished(request_id, run_id, status, **extra))

    def items_state(self) -> list[dict[str, Any]]:
        assert self.t is not None
        items: list[dict[str, Any]] = self.t.state["steps"]["each"]["items"]
        return items


def test_never_more_than_max_concurrency_children_are_open_and_the_step_completes_with_outcomes() -> None:
    parent = Parent(fan_out(max_concurrency=2), [f"l-{i}" for i in range(5)])
    first = parent.start()
    assert [c.request_id for c in first.children] == [f"{RUN}:each:1:0", f"{RUN}:each:1:1"]
    assert first.children[1].parameters == {"listing_id": "l-1", "position": 1}
    assert first.children[0].workflow_key == "clean-one"
    assert first.status is RunStatus.WAITING and first.wait_kind is WaitKind.RUNS
    assert [i["status"] for i in parent.items_state()] == ["running", "running", "pending", "pending", "pending"]
    assert parent.items_state()[0]["run_id"] == "child-0"

    one_more = parent.end(0, result={"cleaned": True})
    assert [c.request_id for c in one_more.children] == [f"{RUN}:each:1:2"]
    for index in (2, 1, 3):
        parent.end(index)
    assert parent.t is not None and parent.t.current_step == "each"
    last = parent.end(4)
    assert parent.peak == 2
    assert last.current_step == "after" and last.tasks[0].workflow_step == "after"
    outcomes = last.state["steps"]["each"]["result"]
    assert [(o["index"], o["status"], o["run_id"]) for o in outcomes] == [
        (i, "completed", f"child-{i}") for i in range(5)]
    assert outcomes[0]["result"] == {"cleaned": True}


def test_continue_completes_the_step_listing_the_failures_in_the_log() -> None:
    parent = Parent(fan_out(max_concurrency=3), ["a", "b", "c"])
    parent.start()
    parent.end(1, "failed", reason="no cleaner")
    parent.end(0)
    done = parent.end(2)
    assert done.current_step == "after"
    assert [o["status"] for o in done.state["steps"]["each"]["result"]] == ["completed", "failed", "completed"]
    assert done.state["steps"]["each"]["result"][1]["error"] == "no cleaner"
    assert any("1 failed: item 1 (child-1) failed: no cleaner" in line.message for line in done.log)


def test_fail_fast_cancels_the_open_children_and_fails_the_step_without_starting_the_rest() -> None:
    parent = Parent(fan_out(max_concurrency=2, on_item_failure="fail_fast"), ["a", "b", "c", "d"])
    parent.start()
    failed = parent.end(0, "failed", reason="broken")
    assert [(c.run_id, c.action) for c in failed.child_controls] == [("child-1", "cancel")]
    assert failed.children == []
    assert failed.status is RunStatus.FAILED
    assert [i["status"] for i in parent.items_state()] == ["failed", "cancelled", "not_started", "not_started"]
    assert "item 0 (child-0) failed: broken" in (failed.failure_reason or "")
    # The cancelled child's own end, reported afterwards, changes nothing.
    assert parent.end(1, "cancelled").applied is False


def test_a_late_report_after_the_parent_was_cancelled_does_nothing() -> None:
    parent = Parent(fan_out(max_concurrency=2), ["a", "b", "c"])
    parent.start()
    cancelled = parent._keep(parent.saga().cancel("u-1", "not needed"))
    assert cancelled.status is RunStatus.CANCELLED
    assert sorted((c.run_id, c.action, c.reason) for c in cancelled.child_controls) == [
        ("child-0", "cancel", "not needed"), ("child-1", "cancel", "not needed")]
    assert [i["status"] for i in parent.items_state()] == ["cancelled", "cancelled", "not_started"]
    late = parent.saga().child_finished(f"{RUN}:each:1:0", "child-0", "completed", result={})
    assert late.applied is False and late.children == [] and late.status is RunStatus.CANCELLED


def test_pause_pauses_the_open_children_holds_their_reports_and_resume_resumes_them() -> None:
    parent = Parent(fan_out(max_concurrency=2), ["a", "b", "c"])
    parent.start()
    paused = parent._keep(parent.saga().pause("u-1", "hold on"))
    assert sorted((c.run_id, c.action) for c in paused.child_controls) == [("child-0", "pause"), ("child-1", "pause")]
    held = parent.end(0)
    assert held.status is RunStatus.PAUSED and held.children == []
    resumed = parent._keep(parent.saga().resume("u-1"))
    assert ("child-1", "resume") in [(c.run_id, c.action) for c in resumed.child_controls]
    # The report recorded while paused is applied on resume: the next item starts.
    assert [c.request_id for c in resumed.children] == [f"{RUN}:each:1:2"]


def test_an_empty_list_completes_the_step_at_once_and_a_non_list_fails_it() -> None:
    empty = Parent(fan_out(), [])
    assert empty.start().current_step == "after"
    not_a_list = Saga(parse(fan_out()), RUN, {"listing_ids": "l-1"}, org_id="org-1").start()
    assert not_a_list.status is RunStatus.FAILED and "not a list" in (not_a_list.failure_reason or "")


def test_a_big_child_result_is_named_not_copied() -> None:
    parent = Parent(fan_out(max_concurrency=1), ["a"])
    parent.start()
    done = parent.end(0, result={"rows": ["x" * 100] * 20})
    assert done.state["steps"]["each"]["result"][0]["result"] == {
        "omitted": "2090 characters; GET /v1/runs/child-0"}


@pytest.mark.parametrize(("change", "path"), [
    ({"max_concurrency": 0}, "$.steps[0].max_concurrency"),
    ({"max_concurrency": 101}, "$.steps[0].max_concurrency"),
    ({"on_item_failure": "ignore"}, "$.steps[0].on_item_failure"),
    ({"join": "any"}, "$.steps[0].join"),
    ({"items": "params.x +"}, "$.steps[0].items"),
    ({"items": "x" * 1001}, "$.steps[0].items"),
    ({"workflow": "fan"}, "$.steps[0].workflow"),
    ({"retry": {"max_attempts": 2}}, "$.steps[0].retry"),
    ({"timeout": "PT1M"}, "$.steps[0].timeout"),
])
def test_map_steps_that_cannot_work_are_refused_where_they_are(change: dict[str, Any], path: str) -> None:
    with pytest.raises(DefinitionInvalid) as caught:
        parse(fan_out(**change))
    assert path in [e["path"] for e in caught.value.errors], caught.value.errors


@pytest.mark.parametrize("missing", ["items", "workflow"])
def test_a_map_step_without_its_items_or_workflow_is_refused_not_a_server_error(missing: str) -> None:
    definition = fan_out()
    del definition["steps"][0][missing]
    with pytest.raises(DefinitionInvalid) as caught:
        parse(definition)
    assert f"$.steps[0].{missing}" in [e["path"] for e in caught.value.errors], caught.value.errors
