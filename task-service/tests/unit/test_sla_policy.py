"""An SLA policy's stages: offsets from the due time, in order, each fired once
after the one before; a reminder that comes due only once the task is due is skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from task_service.sla import EscalationStep, SlaPolicy, covered, iso_duration, skipped

H = timedelta(hours=1)
POLICY = SlaPolicy(remind_before=(H, 24 * H), remind_at_due=True,
                   escalation=(EscalationStep(2 * H, "notify_assignee"), EscalationStep(4 * H, "notify_lead"),
                               EscalationStep(24 * H, "reassign", role_id="supervisor")),
                   leads={"cleaner": "lea"})


def test_the_stages_come_in_order_and_each_follows_the_one_fired_last() -> None:
    assert [(s.offset / H, s.kind) for s in POLICY.stages()] == [
        (-24, "reminder"), (-1, "reminder"), (0, "due"), (2, "escalation"), (4, "escalation"), (24, "escalation")]
    walked = []
    last = None
    while (stage := POLICY.next_stage(last)) is not None:
        walked.append(stage.offset / H)
        last = stage.offset
    assert walked == [-24, -1, 0, 2, 4, 24]
    assert POLICY.next_stage(3 * H).step == EscalationStep(4 * H, "notify_lead")  # type: ignore[union-attr]
    assert SlaPolicy().next_stage(None) is None


def test_a_policy_reads_back_as_it_was_written() -> None:
    assert SlaPolicy.of_json(POLICY.as_json()) == POLICY
    assert POLICY.as_json()["remind_before"] == ["PT1H", "P1D"]
    assert [iso_duration(d) for d in (timedelta(seconds=90.5), timedelta(days=2, minutes=5))] == [
        "PT1M30.5S", "P2DT5M"]


def test_a_late_reminder_is_skipped_but_later_stages_fire_late() -> None:
    due = datetime(2030, 3, 1, 12, tzinfo=UTC)
    reminder, at_due = POLICY.stages()[1], POLICY.stages()[2]
    assert not skipped(reminder, due, due - timedelta(minutes=59))
    assert skipped(reminder, due, due)
    assert not skipped(at_due, due, due + 5 * H)
    assert covered(due) and not covered(None) and not covered(datetime(9999, 12, 31, tzinfo=UTC))
