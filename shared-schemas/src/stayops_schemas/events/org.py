"""Org directory events, published by org-service on `org.directory`: who is a member
of an organisation, with which role and department (task-service keeps a read model
of them to assign work by role), and the organisation's policy (price guardrails,
whether AI agents may decide), which every service that enforces it keeps."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from stayops_schemas.events.base import Amount, Currency, NonEmptyStr, Payload


class UserType(StrEnum):
    """A user is a person or an AI agent; both hold roles and are audited alike."""

    HUMAN = "human"
    AI_AGENT = "ai_agent"


class _Member(Payload):
    """A membership as it stands after the event."""

    org_id: NonEmptyStr
    user_id: NonEmptyStr
    user_type: UserType
    display_name: NonEmptyStr
    role_id: NonEmptyStr
    role_name: NonEmptyStr
    department_id: str | None = None
    department_name: str | None = None


class MemberJoined(_Member):
    """`org.member.joined`: a person or an AI agent became a member of the organisation."""

    joined_at: datetime


class MemberUpdated(_Member):
    """`org.member.updated`: a member's role, department or name changed; the payload
    is the whole membership as it now stands, not a diff."""

    updated_at: datetime


class MemberLeft(Payload):
    """`org.member.left`: the user is no longer a member; their open work needs a new
    assignee."""

    org_id: NonEmptyStr
    user_id: NonEmptyStr
    left_at: datetime


class PriceGuardrails(Payload):
    """Limits on the prices StayOps may publish. Unset fields inherit: a listing's
    guardrails fall back to the org's, the org's to `stayops_schemas.guardrails`'s
    defaults."""

    approval_threshold_pct: float | None = Field(default=None, ge=0, le=1000)
    """A change of this many percent or more on any night needs a person's approval."""
    max_change_pct: float | None = Field(default=None, ge=0, le=1000)
    """No night may change by more than this against its current price, approved or not."""
    floor: Amount | None = None
    """No price below this, whatever the listing's own minimum says."""
    ceiling: Amount | None = None
    """No price above this, whatever the listing's own maximum says."""
    currency: Currency | None = None
    """The currency a listing is priced in (set per listing)."""


class OrgPolicyUpdated(Payload):
    """`org.policy.updated`: the organisation's policy as it now stands (the whole
    policy, not a diff): whether AI agents may answer decisions, and the price
    guardrails of the org and of each listing that overrides them."""

    org_id: NonEmptyStr
    ai_agents_may_decide: bool = False
    pricing: PriceGuardrails = Field(default_factory=PriceGuardrails)
    listings: dict[str, PriceGuardrails] = Field(default_factory=dict)
    updated_at: datetime
