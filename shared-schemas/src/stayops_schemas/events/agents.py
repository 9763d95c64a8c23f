"""AI agent events, produced by agent-service on `stayops.agents`. task-service turns
an agent's result into the task's completion, or its failure into the task's."""

from __future__ import annotations

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
