"""AI agents: their profiles and what they did; and the synced listings,
reservations, prices, reviews and market rates they reason about. Pure: no I/O, no
framework."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from stayops_kit.errors import InvalidRequest, NotFound
from stayops_schemas.events.agents import Autonomy as Autonomy  # re-exported: the events' vocabulary
from stayops_schemas.events.sync import (
    ListingSynced,
    MarketRatesSynced,
    Platform,
    ReservationCancelled,
    ReservationChanged,
    ReservationCreated,
    ReservationStatus,
    ReviewCreated,
)


class AgentNotFound(NotFound):
    code = "agent-not-found"

    def __init__(self, user_id: str) -> None:
        super().__init__(f"no AI agent {user_id} in your organisation")


DEFAULT_AUTONOMY = Autonomy.SUGGEST
DEFAULT_CONFIDENCE_THRESHOLD = Decimal("0.70")

# What an agent in each role can do when it joins; an unknown role starts with no skill.
SKILLS_BY_ROLE: dict[str, tuple[str, ...]] = {
    "revenue-manager": ("pricing", "performance-review"),
    # An AI guest-relations assistant drafts the welcome a guest gets.
    "guest-relations": ("guest-welcome",),
}
KNOWN_SKILLS = ("pricing", "performance-review", "guest-welcome")


@dataclass(frozen=True)
class AgentProfile:
    org_id: str
    user_id: str
    display_name: str
    role_id: str
    skills: tuple[str, ...]
    autonomy: Autonomy
    confidence_threshold: Decimal
    created_at: dt.datetime
    paused_at: dt.datetime | None = None

    def takes_work(self, org_paused: bool) -> bool:
        """Whether the agent may work now: not paused, not off, its org not paused."""
        return self.paused_at is None and self.autonomy is not Autonomy.OFF and not org_paused


class InvalidProfileChange(InvalidRequest):
    """A change to an agent's profile that cannot apply."""


def governed(profile: AgentProfile, *, autonomy: Autonomy | None, confidence_threshold: Decimal | None,
             skills: tuple[str, ...] | None) -> AgentProfile:
    """The profile with the owner's changes; refuses a threshold outside 0..1 or an
    unknown skill."""
    if confidence_threshold is not None and not Decimal(0) <= confidence_threshold <= Decimal(1):
        raise InvalidProfileChange("confidence_threshold must be between 0 and 1")
    if skills is not None:
        unknown = sorted(set(skills) - set(KNOWN_SKILLS))
        if unknown:
            raise InvalidProfileChange(f"unknown skills {', '.join(unknown)}; known: {', '.join(KNOWN_SKILLS)}")
    return replace(
        profile,
        autonomy=autonomy if autonomy is not None else profile.autonomy,
        confidence_threshold=confidence_threshold if confidence_threshold is not None
        else profile.confidence_threshold,
        skills=tuple(dict.fromkeys(skills)) if skills is not None else profile.skills,
    )


def standing(profile: AgentProfile, *, org_paused: bool, at: dt.datetime, by: str | None) -> dict[str, Any]:
    """Where the agent stands, as the governance events announce it whole."""
    return {"agent_user_id": profile.user_id, "org_id": profile.org_id, "role_id": profile.role_id,
            "skills": list(profile.skills), "autonomy": profile.autonomy,
            "confidence_threshold": float(profile.confidence_threshold), "paused": profile.paused_at is not None,
            "org_paused": org_paused, "changed_at": at, "changed_by": by}


def dropped_activity(agent_user_id: str, org_id: str, *, task_id: str, now_with: str | None, at: dt.datetime,
                     id: str) -> Activity:
    """Work the agent had queued for a task that went to someone else: it is not done."""
    where = f"to {now_with}" if now_with else "back to its queue"
    return Activity(id=id, org_id=org_id, agent_user_id=agent_user_id, at=at, kind="work.dropped", task_id=task_id,
                    summary=f"task {task_id} was reassigned {where}; its queued work was dropped",
                    details={"assigned_to": now_with})


def governance_activity(profile: AgentProfile, *, kind: str, summary: str, by: str, at: dt.datetime,
                        id: str) -> Activity:
    """An owner's change to an agent, in the agent's log like everything it does."""
    return Activity(id=id, org_id=profile.org_id, agent_user_id=profile.user_id, at=at, kind=kind,
                    summary=f"{summary} (by {by})",
                    details={"by": by, "autonomy": profile.autonomy.value, "skills": list(profile.skills),
                             "confidence_threshold": str(profile.confidence_threshold),
                             "paused": profile.paused_at is not None})


def default_profile(
    *, org_id: str, user_id: str, display_name: str, role_id: str, created_at: dt.datetime
) -> AgentProfile:
    """The profile an AI agent gets when it joins: its role's skills, and the
    cautious defaults — it suggests, and only from 0.7 confidence."""
    return AgentProfile(
        org_id=org_id,
        user_id=user_id,
        display_name=display_name,
        role_id=role_id,
        skills=SKILLS_BY_ROLE.get(role_id, ()),
        autonomy=DEFAULT_AUTONOMY,
        confidence_threshold=DEFAULT_CONFIDENCE_THRESHOLD,
        created_at=created_at,
    )


@dataclass(frozen=True)
class Activity:
    """One thing an agent did, with its user id, like a person's audit trail."""

    id: str
    org_id: str
    agent_user_id: str
    at: dt.datetime
    kind: str
    summary: str
    task_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class ResultNotFound(NotFound):
    code = "result-not-found"

    def __init__(self, result_id: str) -> None:
        super().__init__(f"result {result_id} does not exist")


@dataclass(frozen=True)
class StoredResult:
    """A result kept here because it was too big for its event (claim check): the
    event carried its id, digest and summary."""

    id: str
    org_id: str
    kind: str
    task_id: str
    size: int
    digest: str
    summary: dict[str, Any]
    created_at: dt.datetime
    result: dict[str, Any]

    def of_listing(self, listing_id: str) -> dict[str, Any]:
        """The result with only one listing's nights (a page of a large result)."""
        nights = [n for n in self.result.get("recommendations") or [] if n.get("listing_id") == listing_id]
        return {**self.result, "recommendations": nights}


def joined_activity(profile: AgentProfile, role_name: str, *, id: str) -> Activity:
    skills = ", ".join(profile.skills) or "none yet"
    return Activity(
        id=id,
        org_id=profile.org_id,
        agent_user_id=profile.user_id,
        at=profile.created_at,
        kind="profile.created",
        summary=f"joined as {role_name}; skills: {skills}; autonomy: {profile.autonomy.value}",
        details={"role_id": profile.role_id, "skills": list(profile.skills),
                 "confidence_threshold": str(profile.confidence_threshold)},
    )


@dataclass(frozen=True)
class Listing:
    """A listing as its platform last reported it (read model)."""

    org_id: str
    listing_id: str
    platform: str
    title: str
    city: str
    capacity: int
    base_price: Decimal
    currency: str
    active: bool
    synced_at: dt.datetime
    country: str | None = None
    bedrooms: int | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    timezone: str = "UTC"
    min_stay: int | None = None


@dataclass(frozen=True)
class Reservation:
    """A reservation as its platform last reported it (read model); `as_of` is the
    time of the event that said so, so an older event never overwrites a newer one."""

    org_id: str
    reservation_id: str
    listing_id: str
    platform: str
    status: str
    check_in: dt.date
    check_out: dt.date
    guests: int
    nightly_rate: Decimal
    total: Decimal
    currency: str
    booked_at: dt.datetime
    as_of: dt.datetime
    cancelled_at: dt.datetime | None = None


def platform_of(event_type: str) -> Platform:
    """The platform a sync event came from, by its prefix (`airbnb.listing.synced`)."""
    return Platform(event_type.split(".", 1)[0])


def listing_from(event: ListingSynced, platform: Platform) -> Listing:
    return Listing(
        org_id=event.org_id,
        listing_id=event.listing_id,
        platform=platform.value,
        title=event.title,
        city=event.city,
        country=event.country,
        capacity=event.capacity,
        bedrooms=event.bedrooms,
        base_price=event.base_price,
        min_price=event.min_price,
        max_price=event.max_price,
        currency=event.currency,
        active=event.active,
        synced_at=event.synced_at,
        timezone=event.timezone or "UTC",
        min_stay=event.min_stay,
    )


def reservation_from(
    event: ReservationCreated | ReservationChanged | ReservationCancelled,
    platform: Platform,
    as_of: dt.datetime,
) -> Reservation:
    cancelled_at = event.cancelled_at if isinstance(event, ReservationCancelled) else None
    return Reservation(
        org_id=event.org_id,
        reservation_id=event.reservation_id,
        listing_id=event.listing_id,
        platform=platform.value,
        # A cancellation is one whatever status its payload repeats.
        status=ReservationStatus.CANCELLED.value if cancelled_at else event.status.value,
        check_in=event.check_in,
        check_out=event.check_out,
        guests=event.guests,
        nightly_rate=event.nightly_rate,
        total=event.total,
        currency=event.currency,
        booked_at=event.booked_at,
        as_of=as_of,
        cancelled_at=cancelled_at,
    )


@dataclass(frozen=True)
class Review:
    """A guest's review of a stay (read model)."""

    org_id: str
    review_id: str
    listing_id: str
    platform: str
    rating: int
    text: str
    submitted_at: dt.datetime
    reservation_id: str | None = None


def review_from(event: ReviewCreated, platform: Platform) -> Review:
    return Review(
        org_id=event.org_id,
        review_id=event.review_id,
        listing_id=event.listing_id,
        platform=platform.value,
        rating=event.rating,
        text=event.text,
        submitted_at=event.submitted_at,
        reservation_id=event.reservation_id,
    )


def market_scope(event: MarketRatesSynced) -> str:
    """Market data is about one listing's comparables or about an area (a city)."""
    if event.listing_id is not None:
        return listing_market_scope(event.listing_id)
    return area_market_scope(event.area or "")


def listing_market_scope(listing_id: str) -> str:
    return f"listing:{listing_id}"


def area_market_scope(area: str) -> str:
    return f"area:{area.strip().lower()}"


class SkillNotAvailable(Exception):
    """The task asks for a skill the agent does not have."""

    def __init__(self, skill: str, skills: tuple[str, ...]) -> None:
        known = ", ".join(skills) or "none"
        super().__init__(f"skill {skill!r} is not one of this agent's skills ({known}); "
                         "set data.skill to one of them")


class NothingToAnalyse(Exception):
    """The task names no listing the read model knows."""


class InvalidTaskData(Exception):
    """The task's data cannot be read as the skill's parameters."""


@dataclass(frozen=True)
class SkillOutcome:
    """What an agent concluded on a task: what it announces, and what its activity
    log keeps so a person can see why."""

    skill: str
    summary: str
    confidence: float
    result: dict[str, Any]
    inputs: dict[str, Any]
    explanation: str
    failed: bool = False


def failed_outcome(skill: str, error: Exception) -> SkillOutcome:
    """A task the agent could not work on still gets an answer, saying why."""
    return SkillOutcome(
        skill=skill or "unknown",
        summary=f"could not run skill {skill or '(none given)'}: {error}",
        confidence=0.0,
        result={"error": str(error), "error_type": type(error).__name__},
        inputs={},
        explanation=str(error),
        failed=True,
    )


def analysis_activity(
    agent: AgentProfile, outcome: SkillOutcome, *, task_id: str, at: dt.datetime, id: str
) -> Activity:
    return Activity(
        id=id,
        org_id=agent.org_id,
        agent_user_id=agent.user_id,
        at=at,
        kind=f"skill.{outcome.skill}",
        task_id=task_id,
        summary=outcome.summary,
        details={"inputs": outcome.inputs, "explanation": outcome.explanation,
                 "confidence": outcome.confidence},
    )
