"""Who a new task goes to: an explicit assignee, else the role's rule (fewest open
tasks, then oldest membership, then user id), else the department's queue."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stayops_schemas.events.agents import Autonomy
from stayops_schemas.events.org import UserType
from stayops_schemas.events.tasks import Priority, TaskStatus, TaskType
from task_service.domain import (
    AUTOMATION,
    AgentStanding,
    Assignment,
    Candidate,
    OnlyAutomatedForAutomation,
    Task,
    assign_by_role,
    choose_assignment,
    reassign_open_work,
    work_to_hand_back,
)

EARLY = datetime(2025, 1, 1, tzinfo=UTC)
LATE = EARLY + timedelta(days=30)


def member(user_id: str, open_tasks: int, joined_at: datetime = EARLY,
           user_type: UserType = UserType.HUMAN) -> Candidate:
    return Candidate(user_id=user_id, user_type=user_type, joined_at=joined_at, open_tasks=open_tasks)


def agent(user_id: str, open_tasks: int, *, skills: tuple[str, ...] = ("pricing",), paused: bool = False,
          org_paused: bool = False, autonomy: Autonomy = Autonomy.SUGGEST, joined_at: datetime = EARLY) -> Candidate:
    standing = AgentStanding(skills=frozenset(skills), autonomy=autonomy, paused=paused, org_paused=org_paused)
    return replace(member(user_id, open_tasks, joined_at, UserType.AI_AGENT), standing=standing)


def test_the_member_with_fewest_open_tasks_wins_human_or_agent() -> None:
    chosen = assign_by_role("revenue-manager", [
        member("alice", 2), member("ai-rm", 0, LATE, UserType.AI_AGENT), member("bob", 1),
    ], task_type=TaskType.ANALYSIS)
    assert (chosen.assigned_to, chosen.assignee_type) == ("ai-rm", UserType.AI_AGENT)
    assert chosen.rule.startswith("role:revenue-manager -> fewest open tasks (0) among 3")
    assert assign_by_role("revenue-manager", [
        member("alice", 2), member("ai-rm", 3, LATE, UserType.AI_AGENT), member("bob", 1),
    ], task_type=TaskType.ANALYSIS).assigned_to == "bob"


def test_an_analysis_needing_a_skill_goes_to_the_agent_with_it_before_a_less_busy_person() -> None:
    chosen = assign_by_role("revenue-manager", [
        member("rita", 0), member("ai-rm", 5, LATE, UserType.AI_AGENT),
    ], task_type=TaskType.ANALYSIS, skill="pricing")
    assert (chosen.assigned_to, chosen.assignee_type) == ("ai-rm", UserType.AI_AGENT)
    assert "AI agent with skill pricing" in chosen.rule


def test_a_tie_goes_to_the_oldest_membership_then_the_smallest_user_id() -> None:
    assert assign_by_role("r", [member("zed", 1, EARLY), member("amy", 1, LATE)],
                          task_type=TaskType.MANUAL).assigned_to == "zed"
    assert assign_by_role("r", [member("zed", 1), member("amy", 1)], task_type=TaskType.MANUAL).assigned_to == "amy"


def test_a_role_without_active_members_keeps_the_task_in_its_queue() -> None:
    queued = assign_by_role("owner", [], task_type=TaskType.MANUAL)
    assert (queued.assigned_to, queued.assignee_type) == (None, None)
    assert "role:owner" in queued.rule


def choose(**overrides: Any) -> Assignment | None:
    args: dict[str, Any] = {
        "task_type": TaskType.MANUAL, "assigned_to": None, "role_id": None, "department_id": None,
        "requested_by": "u-1", "explicit_assignee_type": None, "candidates": [],
    }
    return choose_assignment(**{**args, **overrides})


def test_an_explicit_assignee_beats_the_role() -> None:
    chosen = choose(assigned_to="u-42", role_id="owner", explicit_assignee_type=UserType.AI_AGENT,
                    candidates=[member("alice", 0)])
    assert chosen == Assignment("u-42", UserType.AI_AGENT, "assigned by user u-1")


def test_automation_is_kept_as_given_without_a_user_type() -> None:
    chosen = choose(task_type=TaskType.AUTOMATED, assigned_to=AUTOMATION)
    assert chosen is not None
    assert (chosen.assigned_to, chosen.assignee_type) == (AUTOMATION, None)


@pytest.mark.parametrize("task_type", [TaskType.MANUAL, TaskType.ANALYSIS, TaskType.DECISION])
def test_only_an_automated_task_can_go_to_automation(task_type: TaskType) -> None:
    with pytest.raises(OnlyAutomatedForAutomation, match=f"not a {task_type.value} task"):
        choose(task_type=task_type, assigned_to=AUTOMATION, role_id="owner")


def test_without_role_the_department_queue_and_without_either_nothing() -> None:
    assert choose(department_id="housekeeping") == Assignment(
        None, None, "department:housekeeping -> department queue (no role given)")
    assert choose() is None


def open_task(task_id: str, role_id: str | None = None, department_id: str | None = None) -> Task:
    return Task(id=task_id, org_id="o1", title="t", task_type=TaskType.MANUAL, status=TaskStatus.PENDING,
                priority=Priority.MEDIUM, created_by="u-1", created_at=EARLY, updated_at=EARLY,
                role_id=role_id, department_id=department_id, assigned_to="leaver")


def test_a_leavers_open_work_is_spread_over_the_role_by_the_same_rule() -> None:
    plan = reassign_open_work(
        "leaver",
        [open_task("t1", "cleaner"), open_task("t2", "cleaner"), open_task("t3", department_id="ops"),
         open_task("t4")],
        {"cleaner": [member("amy", 0, LATE), member("zed", 0, EARLY), member("leaver", 0)]},
    )
    assert [(task.id, a.assigned_to) for task, a in plan] == [
        ("t1", "zed"), ("t2", "amy"), ("t3", None), ("t4", None)]
    assert all(a.rule.startswith("leaver left the organisation; ") for _, a in plan)
    assert plan[2][1].rule.endswith("department:ops -> department queue")


@pytest.mark.parametrize("task_type", [TaskType.MANUAL, TaskType.DECISION, TaskType.AUTOMATED])
def test_an_ai_agent_with_fewest_open_tasks_never_gets_a_task_it_cannot_do(task_type: TaskType) -> None:
    chosen = assign_by_role("revenue-manager", [agent("ai-rm", 0), member("alice", 5, LATE)], task_type=task_type)
    assert (chosen.assigned_to, chosen.assignee_type) == ("alice", UserType.HUMAN)
    assert chosen.rule.endswith(f"passed over: ai-rm (an AI agent takes no {task_type.value} task)")
    unannounced = assign_by_role("r", [member("ai-new", 0, user_type=UserType.AI_AGENT)], task_type=task_type)
    assert unannounced.assigned_to is None and "no active member may take it" in unannounced.rule


@pytest.mark.parametrize(("candidate", "why"), [
    (agent("ai-rm", 0, paused=True), "paused"),
    (agent("ai-rm", 0, org_paused=True), "its org's agents are paused"),
    (agent("ai-rm", 0, autonomy=Autonomy.OFF), "autonomy off"),
    (agent("ai-rm", 0, skills=("performance-review",)), "lacks the skill 'pricing'"),
])
def test_an_analysis_goes_to_an_agent_only_while_it_works_and_has_the_skill(candidate: Candidate, why: str) -> None:
    chosen = assign_by_role("revenue-manager", [candidate, member("alice", 3, LATE)], task_type=TaskType.ANALYSIS,
                            skill="pricing")
    assert chosen.assigned_to == "alice"
    assert chosen.rule == f"role:revenue-manager -> only member who may take it; passed over: ai-rm ({why})"
    alone = assign_by_role("revenue-manager", [candidate], task_type=TaskType.ANALYSIS, skill="pricing")
    assert (alone.assigned_to, alone.rule) == (
        None, f"role:revenue-manager -> role queue (no active member may take it; passed over: ai-rm ({why}))")


def test_an_analysis_for_a_skill_goes_to_the_agent_that_has_it() -> None:
    chosen = assign_by_role("revenue-manager", [agent("ai-a", 0, skills=("performance-review",)),
                                                agent("ai-b", 2, skills=("pricing",))],
                            task_type=TaskType.ANALYSIS, skill="pricing")
    assert chosen.assigned_to == "ai-b"
    assert agent("ai-a", 0).refuses(TaskType.ANALYSIS, None) == "the task names no skill"


def test_a_paused_agent_hands_back_all_its_open_work_and_a_working_one_what_it_lost_the_skill_for() -> None:
    manual = open_task("t-manual", "revenue-manager")
    pricing = replace(open_task("t-pricing", "revenue-manager"), task_type=TaskType.ANALYSIS, data={"skill": "pricing"})
    review = replace(pricing, id="t-review", data={"skill": "performance-review"})
    paused = AgentStanding(frozenset({"pricing"}), Autonomy.SUGGEST, paused=True, org_paused=False)
    working = replace(paused, paused=False)
    assert [t.id for t in work_to_hand_back(paused, [manual, pricing, review])] == ["t-manual", "t-pricing", "t-review"]
    assert [t.id for t in work_to_hand_back(working, [manual, pricing, review])] == ["t-review"]
