"""AI agent events, produced by agent-service on `stayops.agents`. task-service turns
an agent's result into the task's completion, or its failure into the task's, and
keeps each agent's governance (kill switch, autonomy, skills) to route work by it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from stayops_schemas.events.base import NonEmptyStr, Payload


class AgentResultProduced(Payload):
    """`stayops.agent.result.produced`: an AI agent finished its work on a task.
    `confidence` (0..1) is compared with the agent's threshold to decide whether a
    person must review the result."""

    agent_user_id: NonEmptyStr
    org_id: NonEmptyStr
    task_id: NonEmptyStr
    skill: NonEmptyStr = Field(examples=["dynamic_pricing"])
    summary: NonEmptyStr
    confidence: float = Field(ge=0, le=1)
    result: dict[str, Any] = Field(default_factory=dict)
    workflow_run_id: str | None = None
    workflow_step: str | None = None
    failed: bool = Field(default=False, description="The agent could not do the task; `error` says why.")
    error: str | None = None


class Autonomy(StrEnum):
    """How far an agent may go on its own. `suggest`: it proposes, and a rule or a
    person decides. `act_within_limits`: it applies results whose confidence reaches
    its threshold, within the org's guardrails. `off`: it takes no work."""

    SUGGEST = "suggest"
    ACT_WITHIN_LIMITS = "act_within_limits"
    OFF = "off"


class KillSwitch(StrEnum):
    """Which kill switch a pause or resume event reports: the agent's own, or its org's."""

    AGENT = "agent"
    ORG = "org"


class _AgentGovernance(Payload):
    """Where an agent stands after a change, whole (so a reader keeps the latest
    event per agent and needs no history): its skills and autonomy, and both kill
    switches. It takes work only when neither switch is on and autonomy is not
    `off`. Keyed by the agent's user id, so one agent's changes stay in order."""

    agent_user_id: NonEmptyStr
    org_id: NonEmptyStr
    role_id: NonEmptyStr
    skills: list[NonEmptyStr] = Field(examples=[["pricing", "performance-review"]])
    autonomy: Autonomy
    confidence_threshold: float = Field(ge=0, le=1)
    paused: bool = Field(description="The agent's own kill switch is on.")
    org_paused: bool = Field(description="The org's kill switch (every agent of the org) is on.")
    changed_at: datetime = Field(description="When agent-service applied the change; a reader keeps the newest.")
    changed_by: str | None = Field(
        default=None, description="The user who made the change; None for the profile an agent gets when it joins.")


class AgentPaused(_AgentGovernance):
    """`stayops.agent.paused`: a kill switch was pulled. An org's switch is announced
    once per agent of the org (`switch: org`). The agent's queued and open tasks go
    back to its role (task-service), and it proposes nothing until resumed."""

    switch: KillSwitch


class AgentResumed(_AgentGovernance):
    """`stayops.agent.resumed`: a kill switch was released (for an org's, once per
    agent). The agent may still be held by the other switch or by autonomy `off`
    (see `paused`, `org_paused`, `autonomy`). Work handed back is not pulled back."""

    switch: KillSwitch


class AgentUpdated(_AgentGovernance):
    """`stayops.agent.updated`: an agent's profile was created (it joined) or an
    owner changed its autonomy, confidence threshold or skills."""
