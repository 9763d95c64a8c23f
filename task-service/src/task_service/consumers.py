"""Events task-service reacts to, each routed to its handler; the types are the
ones `stayops_schemas.subscriptions` declares for task-service."""

from __future__ import annotations

from stayops_kit.consumer import Subscriptions
from stayops_schemas.subscriptions import TASK_SERVICE
from task_service import handlers


def subscriptions() -> Subscriptions:
    subs = Subscriptions(TASK_SERVICE)
    subs.on("org.member.joined")(handlers.member_joined)
    subs.on("org.member.updated")(handlers.member_updated)
    subs.on("org.member.left")(handlers.member_left)
    subs.on("org.policy.updated")(handlers.policy_updated)
    subs.on("stayops.task.requested")(handlers.task_requested)
    subs.on("stayops.task.cancel.requested")(handlers.task_cancel_requested)
    subs.on("stayops.task.reschedule.requested")(handlers.task_reschedule_requested)
    subs.on("stayops.task.reassign.requested")(handlers.task_reassign_requested)
    subs.on("stayops.agent.result.produced")(handlers.agent_result_produced)
    subs.on("stayops.agent.paused", "stayops.agent.resumed", "stayops.agent.updated")(
        handlers.agent_standing_changed)
    subs.on("stayops.automation.action.finished")(handlers.action_finished)
    return subs.complete()
