"""agent-service tables (SQLAlchemy Core) and the queries on them; every query on a
tenant table goes through an `OrgScope`."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_service.domain import Activity, AgentProfile, Autonomy, Listing, Reservation
from stayops_kit.tenancy import OrgScope

metadata = sa.MetaData()

Money = sa.Numeric(12, 2)

profiles = sa.Table(
    "agent_profiles",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("role_id", sa.Text, nullable=False),
    sa.Column("skills", pg.JSONB, nullable=False),
    sa.Column("autonomy", sa.Text, nullable=False),
    sa.Column("confidence_threshold", sa.Numeric(3, 2), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("autonomy IN ('suggest', 'act')", name="agent_profiles_autonomy"),
    sa.CheckConstraint("confidence_threshold BETWEEN 0 AND 1", name="agent_profiles_threshold"),
)
sa.Index("agent_profiles_role", profiles.c.org_id, profiles.c.role_id)

activity = sa.Table(
    "agent_activity",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("agent_user_id", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("task_id", sa.Text),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("details", pg.JSONB, nullable=False),
)
sa.Index("agent_activity_org_agent_at", activity.c.org_id, activity.c.agent_user_id,
         activity.c.at.desc(), activity.c.id)
sa.Index("agent_activity_org_task", activity.c.org_id, activity.c.task_id,
         postgresql_where=activity.c.task_id.is_not(None))

listings = sa.Table(
    "listings",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("listing_id", sa.Text, primary_key=True),
    sa.Column("platform", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("city", sa.Text, nullable=False),
    sa.Column("country", sa.Text),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("bedrooms", sa.Integer),
    sa.Column("base_price", Money, nullable=False),
    sa.Column("min_price", Money),
    sa.Column("max_price", Money),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
)

reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("reservation_id", sa.Text, primary_key=True),
    sa.Column("listing_id", sa.Text, nullable=False),
    sa.Column("platform", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("check_in", sa.Date, nullable=False),
    sa.Column("check_out", sa.Date, nullable=False),
    sa.Column("guests", sa.Integer, nullable=False),
    sa.Column("nightly_rate", Money, nullable=False),
    sa.Column("total", Money, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("booked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("cancelled_at", sa.DateTime(timezone=True)),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
)
# Occupancy and booking pace are read per listing over a range of nights.
sa.Index("reservations_org_listing_check_in", reservations.c.org_id, reservations.c.listing_id,
         reservations.c.check_in)

_LISTING_FIELDS = [f.name for f in fields(Listing)]
_RESERVATION_FIELDS = [f.name for f in fields(Reservation)]


def _pg_insert(scope: OrgScope, values: dict[str, Any]) -> pg.Insert:
    """The scope's INSERT in its PostgreSQL form, which can say ON CONFLICT."""
    scope.insert(**values)  # refuses a row of another org
    return pg.insert(scope.table).values({**values, "org_id": scope.org_id})


def _to_profile(row: Any) -> AgentProfile:
    values = dict(row._mapping)
    return AgentProfile(
        org_id=values["org_id"],
        user_id=values["user_id"],
        display_name=values["display_name"],
        role_id=values["role_id"],
        skills=tuple(values["skills"]),
        autonomy=Autonomy(values["autonomy"]),
        confidence_threshold=values["confidence_threshold"],
        created_at=values["created_at"],
    )


async def insert_profile_if_missing(conn: AsyncConnection, profile: AgentProfile) -> bool:
    """Create the profile unless the agent has one (which may have been tuned since);
    returns whether it was created."""
    values = {**asdict(profile), "skills": list(profile.skills), "autonomy": profile.autonomy.value}
    statement = (
        _pg_insert(OrgScope(profiles, profile.org_id), values)
        .on_conflict_do_nothing(index_elements=[profiles.c.org_id, profiles.c.user_id])
        .returning(profiles.c.user_id)
    )
    return (await conn.execute(statement)).first() is not None


async def get_profile(conn: AsyncConnection, org_id: str, user_id: str) -> AgentProfile | None:
    row = (
        await conn.execute(OrgScope(profiles, org_id).select().where(profiles.c.user_id == user_id))
    ).first()
    return _to_profile(row) if row else None


async def list_profiles(conn: AsyncConnection, org_id: str) -> list[AgentProfile]:
    query = OrgScope(profiles, org_id).select().order_by(profiles.c.created_at, profiles.c.user_id)
    return [_to_profile(r) for r in (await conn.execute(query)).all()]


async def append_activity(conn: AsyncConnection, entry: Activity) -> None:
    await conn.execute(OrgScope(activity, entry.org_id).insert(**asdict(entry)))


async def activity_of(
    conn: AsyncConnection, org_id: str, agent_user_id: str, *, limit: int = 50
) -> list[Activity]:
    """The agent's latest activity, newest first."""
    query = (
        OrgScope(activity, org_id)
        .select()
        .where(activity.c.agent_user_id == agent_user_id)
        .order_by(activity.c.at.desc(), activity.c.id)
        .limit(limit)
    )
    return [Activity(**dict(r._mapping)) for r in (await conn.execute(query)).all()]


async def upsert_listing(conn: AsyncConnection, listing: Listing) -> None:
    """Keep the listing as last synced; an older sync arriving late changes nothing."""
    values = asdict(listing)
    statement = _pg_insert(OrgScope(listings, listing.org_id), values)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[listings.c.org_id, listings.c.listing_id],
            set_={k: statement.excluded[k] for k in values if k not in ("org_id", "listing_id")},
            where=listings.c.synced_at <= statement.excluded.synced_at,
        )
    )


async def get_listing(conn: AsyncConnection, org_id: str, listing_id: str) -> Listing | None:
    row = (
        await conn.execute(OrgScope(listings, org_id).select().where(listings.c.listing_id == listing_id))
    ).first()
    return Listing(**{n: row._mapping[n] for n in _LISTING_FIELDS}) if row else None


async def upsert_reservation(conn: AsyncConnection, reservation: Reservation) -> None:
    """Keep the reservation as its latest event says; an older event arriving late
    changes nothing."""
    values = asdict(reservation)
    statement = _pg_insert(OrgScope(reservations, reservation.org_id), values)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[reservations.c.org_id, reservations.c.reservation_id],
            set_={k: statement.excluded[k] for k in values if k not in ("org_id", "reservation_id")},
            where=reservations.c.as_of <= statement.excluded.as_of,
        )
    )


async def get_reservation(conn: AsyncConnection, org_id: str, reservation_id: str) -> Reservation | None:
    query = OrgScope(reservations, org_id).select().where(reservations.c.reservation_id == reservation_id)
    row = (await conn.execute(query)).first()
    return Reservation(**{n: row._mapping[n] for n in _RESERVATION_FIELDS}) if row else None
