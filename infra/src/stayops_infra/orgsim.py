"""A local stand-in for org-service: creates orgs, mints their tokens, announces members."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from stayops_infra.keys import KeyPair
from stayops_infra.roles import grants_of
from stayops_infra.syncsim import ListingProfile, write_listing_profiles
from stayops_infra.tokens import UserType, mint_token
from stayops_schemas.binding import to_kafka
from stayops_schemas.catalog import ORG_DIRECTORY, event_type
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.org import MemberJoined, MemberLeft, MemberUpdated, OrgPolicyUpdated, PriceGuardrails

SOURCE = "urn:stayops:org-service"
SEED_TOKEN_TTL_S = 7 * 24 * 3600

Clock = Callable[[], datetime]
IdFactory = Callable[[], str]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Member:
    user_id: str
    user_type: UserType
    display_name: str
    role_id: str
    role_name: str
    department_id: str | None
    department_name: str | None
    joined_at: str


@dataclass
class Org:
    org_id: str
    name: str
    kind: str
    listing_ids: list[str]
    members: list[Member] = field(default_factory=list)
    # role id -> the permissions it grants; a role not listed grants its template's.
    roles: dict[str, list[str]] = field(default_factory=dict)
    # The org's policy as `org.policy.updated` carries it (without org_id/updated_at).
    policy: dict[str, Any] = field(default_factory=dict)
    # A property manager's market segments: segment -> its listing ids (the sync
    # simulators carry them as the listings' segment and tags).
    segments: dict[str, list[str]] = field(default_factory=dict)

    def grants(self, role_id: str) -> list[str]:
        return sorted(self.roles.get(role_id) or grants_of(role_id))

    def member(self, user_id: str) -> Member:
        for member in self.members:
            if member.user_id == user_id:
                return member
        raise KeyError(f"user {user_id} is not a member of org {self.org_id}")


class OrgRegistry:
    """The orgs this simulator created, kept as one JSON file so they survive restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[Org]:
        if not self.path.exists():
            return []
        raw: list[dict[str, Any]] = json.loads(self.path.read_text())
        return [Org(**{**entry, "members": [Member(**m) for m in entry["members"]]}) for entry in raw]

    def get(self, org_id: str) -> Org:
        for org in self.all():
            if org.org_id == org_id:
                return org
        raise KeyError(f"org {org_id} is unknown to the org-service simulator ({self.path})")

    def save(self, org: Org) -> None:
        orgs = [existing for existing in self.all() if existing.org_id != org.org_id] + [org]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps([asdict(o) for o in orgs], indent=2))
        partial.replace(self.path)


def solo_host_org(clock: Clock = utc_now, ids: IdFactory = new_id) -> Org:
    """A solo host: one "Owner" department, the owner, an AI Revenue Manager, two listings."""
    joined = clock().isoformat()
    department_id = ids()
    org = Org(org_id=ids(), name="Solo host", kind="solo", listing_ids=[ids(), ids()])
    org.members = [
        Member(ids(), "human", "Owner", "owner", "Owner", department_id, "Owner", joined),
        Member(
            ids(),
            "ai_agent",
            "AI Revenue Manager",
            "revenue-manager",
            "Revenue Manager",
            department_id,
            "Owner",
            joined,
        ),
    ]
    return org


# A property-management company's portfolio: 50 listings in three segments.
PROPCO_SEGMENTS: tuple[tuple[str, int], ...] = (("luxury", 10), ("standard", 25), ("budget", 15))
REVENUE, OPERATIONS, GUEST_RELATIONS = "Revenue", "Operations", "Guest relations"


def propco_org(clock: Clock = utc_now, ids: IdFactory = new_id) -> Org:
    """A property manager: the owner, and three departments — Revenue (a revenue
    manager and the AI Revenue Manager), Operations (three cleaners) and Guest
    relations (a guest manager and the AI Guest Assistant) — over 50 listings in
    three segments."""
    joined = clock().isoformat()
    departments = {name: ids() for name in (REVENUE, OPERATIONS, GUEST_RELATIONS)}
    segments = {segment: [ids() for _ in range(count)] for segment, count in PROPCO_SEGMENTS}
    org = Org(org_id=ids(), name="Atlantic Stays (property manager)", kind="propco",
              listing_ids=[listing for listings in segments.values() for listing in listings], segments=segments)

    def member(user_type: UserType, name: str, role_id: str, role_name: str, department: str | None) -> Member:
        return Member(ids(), user_type, name, role_id, role_name,
                      departments[department] if department else None, department, joined)

    org.members = [
        member("human", "Owner", "owner", "Owner", None),
        member("human", "Rita (revenue manager)", "revenue-manager", "Revenue Manager", REVENUE),
        member("ai_agent", "AI Revenue Manager", "revenue-manager", "Revenue Manager", REVENUE),
        *(member("human", f"Cleaner {name}", "operations", "Cleaner", OPERATIONS)
          for name in ("Ana", "Bruno", "Carla")),
        member("human", "Gil (guest manager)", "guest-relations", "Guest Manager", GUEST_RELATIONS),
        member("ai_agent", "AI Guest Assistant", "guest-relations", "Guest Assistant", GUEST_RELATIONS),
    ]
    return org


def member_token(keys: KeyPair, org: Org, member: Member, ttl_s: int = SEED_TOKEN_TTL_S) -> str:
    return mint_token(
        keys.private_pem(),
        org_id=org.org_id,
        user_id=member.user_id,
        role_id=member.role_id,
        department_id=member.department_id,
        user_type=member.user_type,
        permissions=org.grants(member.role_id),
        ai_may_decide=bool(org.policy.get("ai_agents_may_decide", False)),
        ttl_s=ttl_s,
    )


def member_event(
    kind: str,
    org: Org,
    member: Member,
    clock: Clock = utc_now,
    ids: IdFactory = new_id,
    correlationid: str | None = None,
) -> Envelope:
    """`org.member.joined|updated|left` for one member; keyed by user so that one
    member's events stay in order."""
    now = clock()
    common = {"org_id": org.org_id, "user_id": member.user_id}
    profile = {
        **common,
        "user_type": member.user_type,
        "display_name": member.display_name,
        "role_id": member.role_id,
        "role_name": member.role_name,
        "department_id": member.department_id,
        "department_name": member.department_name,
    }
    payload: MemberJoined | MemberUpdated | MemberLeft
    if kind == "joined":
        payload = MemberJoined(**profile, joined_at=datetime.fromisoformat(member.joined_at))
    elif kind == "updated":
        payload = MemberUpdated(**profile, updated_at=now)
    elif kind == "left":
        payload = MemberLeft(**common, left_at=now)
    else:
        raise ValueError(f"member event kind must be joined, updated or left, not {kind!r}")
    return event_type(f"org.member.{kind}").envelope(
        payload,
        id=ids(),
        source=SOURCE,
        partitionkey=member.user_id,
        time=now,
        correlationid=correlationid,
        subject=member.user_id,
    )


def policy_envelope(org_id: str, policy: dict[str, Any], clock: Clock = utc_now, ids: IdFactory = new_id,
                    correlationid: str | None = None) -> Envelope:
    """`org.policy.updated`: an org's whole policy as it now stands (its fields but
    org_id and updated_at in `policy`), keyed by org."""
    now = clock()
    payload = OrgPolicyUpdated(**{**policy, "org_id": org_id, "updated_at": now})
    return event_type("org.policy.updated").envelope(
        payload, id=ids(), source=SOURCE, partitionkey=org_id, time=now,
        correlationid=correlationid, subject=org_id,
    )


def policy_event(org: Org, clock: Clock = utc_now, ids: IdFactory = new_id,
                 correlationid: str | None = None) -> Envelope:
    """`org.policy.updated` for a simulated org's stored policy."""
    return policy_envelope(org.org_id, org.policy, clock, ids, correlationid)


@dataclass(frozen=True)
class PolicyChange:
    """What `stayops policy set` changes; None leaves a setting as it is. The price
    limits apply to `listing` when one is named (its override), else to the org."""

    approval_threshold_pct: float | None = None
    max_change_pct: float | None = None
    floor: Decimal | None = None
    ceiling: Decimal | None = None
    ai_agents_may_decide: bool | None = None
    listing: str | None = None
    currency: str | None = None


def change_policy(org: Org, change: PolicyChange) -> dict[str, Any]:
    """The org's policy with `change` applied, checked against `org.policy.updated`'s
    schema (raises pydantic's ValidationError, naming the setting, when it does not fit)."""
    if change.currency is not None and change.listing is None:
        raise ValueError("a currency is set per listing: name it with --listing")
    policy: dict[str, Any] = json.loads(json.dumps(org.policy))
    if change.ai_agents_may_decide is not None:
        policy["ai_agents_may_decide"] = change.ai_agents_may_decide
    limits = {"approval_threshold_pct": change.approval_threshold_pct, "max_change_pct": change.max_change_pct,
              "floor": change.floor, "ceiling": change.ceiling, "currency": change.currency}
    given = {name: value for name, value in limits.items() if value is not None}
    if change.listing is None:
        target = policy.setdefault("pricing", {})
    else:
        target = policy.setdefault("listings", {}).setdefault(change.listing, {})
    target.update(PriceGuardrails(**given).model_dump(mode="json", exclude_none=True))
    # The whole policy must still be one org-service could announce.
    OrgPolicyUpdated(**{**policy, "org_id": org.org_id, "updated_at": utc_now()})
    return policy


async def set_policy(
    bootstrap: str, registry: OrgRegistry, org_id: str, change: PolicyChange,
    clock: Clock = utc_now, ids: IdFactory = new_id, idempotent: bool = True,
) -> Envelope:
    """Change a simulated org's policy, announce it as `org.policy.updated`, then keep it."""
    org = registry.get(org_id)
    org.policy = change_policy(org, change)
    event = policy_event(org, clock, ids)
    await publish_events(bootstrap, [event], idempotent)
    registry.save(org)
    return event


async def publish_events(bootstrap: str, envelopes: list[Envelope], idempotent: bool = True) -> None:
    """Publish to `org.directory` with the idempotent producer, waiting for every ack.

    `idempotent=False` only for the Tansu fallback, which cannot hand out producer ids."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=idempotent, acks="all")
    try:
        await producer.start()
        for envelope in envelopes:
            record = to_kafka(envelope)
            await producer.send_and_wait(ORG_DIRECTORY, value=record.value, key=record.key, headers=record.headers)
    finally:
        await producer.stop()


async def publish_policy(bootstrap: str, org_id: str, policy: dict[str, Any], idempotent: bool = True) -> str:
    """Announce an org's whole policy, as org-service does when an owner changes it;
    returns the event's id (`PricingClient.policy_applied` waits for it)."""
    envelope = policy_envelope(org_id, policy)
    await publish_events(bootstrap, [envelope], idempotent)
    return envelope.id


@dataclass(frozen=True)
class SeededOrg:
    org: Org
    tokens: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        departments: dict[str, list[str]] = {}
        for key, member in member_keys(self.org.members).items():
            if member.department_name:
                departments.setdefault(member.department_name, []).append(key)
        seeded = {
            "org_id": self.org.org_id,
            "name": self.org.name,
            "kind": self.org.kind,
            "listing_ids": self.org.listing_ids,
            "users": {key: asdict(m) for key, m in member_keys(self.org.members).items()},
            "departments": departments,
            "tokens": self.tokens,
        }
        if self.org.segments:
            seeded["segments"] = self.org.segments
        return seeded


def member_keys(members: list[Member]) -> dict[str, Member]:
    """Each member under a key that says who they are: the role (`owner`,
    `operations`, `guest-relations`), `<role>_agent` for an AI agent
    (`revenue_manager_agent`, `guest_relations_agent`); a second member of a role
    gets `-2`, and so on."""
    keys: dict[str, Member] = {}
    for member in members:
        base = f"{member.role_id.replace('-', '_')}_agent" if member.user_type == "ai_agent" else member.role_id
        key, n = base, 1
        while key in keys:
            n += 1
            key = f"{base}-{n}"
        keys[key] = member
    return keys


async def seed_solo(
    bootstrap: str,
    keys: KeyPair,
    registry: OrgRegistry,
    clock: Clock = utc_now,
    ids: IdFactory = new_id,
    idempotent: bool = True,
) -> SeededOrg:
    """Create a solo-host org, remember it, announce both members and mint their tokens."""
    return await seed_org(bootstrap, keys, registry, solo_host_org(clock, ids), clock, ids, idempotent)


async def seed_propco(
    bootstrap: str,
    keys: KeyPair,
    registry: OrgRegistry,
    listing_profiles: Path,
    clock: Clock = utc_now,
    ids: IdFactory = new_id,
    idempotent: bool = True,
) -> SeededOrg:
    """Create a property-management org (`propco_org`): its listings' segments go to
    the sync simulators' `listing_profiles` file, then it is seeded as any org."""
    org = propco_org(clock, ids)
    write_listing_profiles(listing_profiles, {
        listing_id: ListingProfile(segment=segment, tags=(segment,))
        for segment, listing_ids in org.segments.items() for listing_id in listing_ids})
    return await seed_org(bootstrap, keys, registry, org, clock, ids, idempotent)


async def seed_org(
    bootstrap: str,
    keys: KeyPair,
    registry: OrgRegistry,
    org: Org,
    clock: Clock = utc_now,
    ids: IdFactory = new_id,
    idempotent: bool = True,
) -> SeededOrg:
    """Announce an org's policy and members, remember it and mint its members' tokens."""
    correlationid = ids()
    await publish_events(
        bootstrap,
        [policy_event(org, clock, ids, correlationid)]
        + [member_event("joined", org, m, clock, ids, correlationid) for m in org.members],
        idempotent,
    )
    # Saved only once announced, so a failed seed leaves no org the services never heard of.
    registry.save(org)
    tokens = {key: member_token(keys, org, m) for key, m in member_keys(org.members).items()}
    return SeededOrg(org, tokens)
