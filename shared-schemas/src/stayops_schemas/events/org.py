"""Org directory events, published by org-service on `org.directory`: who is a member
of an organisation, with which role and department. task-service keeps a read model
of them to assign work by role."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from stayops_schemas.events.base import NonEmptyStr, Payload


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
