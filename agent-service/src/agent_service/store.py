"""agent-service tables (SQLAlchemy Core) and the queries on them; every query on a
tenant table goes through an `OrgScope`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict, fields
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_service.domain import (
    Activity,
    AgentProfile,
    Autonomy,
    Listing,
    Reservation,
    Review,
    StoredResult,
    listing_market_scope,
)
from agent_service.pricing import ForecastNight, MarketNight, NightRecommendation, Stay
from stayops_kit.tenancy import OrgScope
from stayops_schemas.claims import ResultRef
from stayops_schemas.events.sync import MarketRate, NightlyPrice

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
    sa.Column("paused_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint("autonomy IN ('suggest', 'act_within_limits', 'off')", name="agent_profiles_autonomy"),
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
    sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
    sa.Column("min_stay", sa.Integer),
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

nightly_prices = sa.Table(
    "nightly_prices",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("listing_id", sa.Text, primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("price", Money, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
)

reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("review_id", sa.Text, primary_key=True),
    sa.Column("listing_id", sa.Text, nullable=False),
    sa.Column("platform", sa.Text, nullable=False),
    sa.Column("reservation_id", sa.Text),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("rating BETWEEN 1 AND 5", name="reviews_rating"),
)
sa.Index("reviews_org_listing", reviews.c.org_id, reviews.c.listing_id)

# Analysis tasks wait here until the sync data they need has arrived: the sync's
# events and the task's assignment come on different topics, in no fixed order.
agent_work = sa.Table(
    "agent_work",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("task_id", sa.Text, primary_key=True),
    sa.Column("assignment", pg.JSONB, nullable=False),
    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("correlation_id", sa.Text),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("done_at", sa.DateTime(timezone=True)),
    sa.Column("assignee", sa.Text),
)

# Which sync (by the correlation id of the run that asked for it) brought each
# listing's data: a pricing task waits for the data of its own run's sync.
listing_syncs = sa.Table(
    "listing_syncs",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("listing_id", sa.Text, primary_key=True),
    sa.Column("correlation_id", sa.Text, primary_key=True),
    sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
)

# An org whose owner pulled the kill switch on all its agents.
org_pauses = sa.Table(
    "org_agent_pauses",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("paused_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("paused_by", sa.Text, nullable=False),
)
sa.Index("agent_work_pending", agent_work.c.received_at, postgresql_where=agent_work.c.done_at.is_(None))
WORK_CHANNEL = "agent_work"

# `scope` is `listing:<id>` for a listing's comparables or `area:<city>` for an area.
market_rates = sa.Table(
    "market_rates",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("median_price", Money, nullable=False),
    sa.Column("occupancy", sa.Float, nullable=False),
    sa.Column("sample_size", sa.Integer),
    sa.Column("local_event", sa.Text),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("occupancy BETWEEN 0 AND 1", name="market_rates_occupancy"),
)

# Every pricing run's forecast, per night: what each night was priced at and what
# it was expected to earn, read by the run's performance review and the scorecard.
forecast_nights = sa.Table(
    "pricing_forecast_nights",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("task_id", sa.Text, primary_key=True),
    sa.Column("listing_id", sa.Text, primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("agent_user_id", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("produced_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("current_price", Money, nullable=False),
    sa.Column("recommended_price", Money, nullable=False),
    sa.Column("change_pct", sa.Float, nullable=False),
    sa.Column("expected_occupancy", sa.Float, nullable=False),
)
sa.Index("pricing_forecast_nights_run", forecast_nights.c.org_id, forecast_nights.c.run_id)
sa.Index("pricing_forecast_nights_agent_date", forecast_nights.c.org_id, forecast_nights.c.agent_user_id,
         forecast_nights.c.date)

# Results too big for an event (claim check): the canonical JSON, as its digest was taken.
stored_results = sa.Table(
    "stored_results",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("task_id", sa.Text, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("digest", sa.Text, nullable=False),
    sa.Column("summary", pg.JSONB, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("stored_results_task", stored_results.c.org_id, stored_results.c.task_id)

_LISTING_FIELDS = [f.name for f in fields(Listing)]
_RESERVATION_FIELDS = [f.name for f in fields(Reservation)]


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
        paused_at=values["paused_at"],
    )


async def insert_profile_if_missing(conn: AsyncConnection, profile: AgentProfile) -> bool:
    """Create the profile unless the agent has one (which may have been tuned since);
    returns whether it was created."""
    values = {**asdict(profile), "skills": list(profile.skills), "autonomy": profile.autonomy.value}
    statement = (
        OrgScope(profiles, profile.org_id).insert(**values)
        .on_conflict_do_nothing(index_elements=[profiles.c.org_id, profiles.c.user_id])
        .returning(profiles.c.user_id)
    )
    return (await conn.execute(statement)).first() is not None


async def get_profile(conn: AsyncConnection, org_id: str, user_id: str, *,
                      for_update: bool = False) -> AgentProfile | None:
    query = OrgScope(profiles, org_id).select().where(profiles.c.user_id == user_id)
    row = (await conn.execute(query.with_for_update() if for_update else query)).first()
    return _to_profile(row) if row else None


async def list_profiles(conn: AsyncConnection, org_id: str, *, for_update: bool = False) -> list[AgentProfile]:
    """The org's agents; `for_update` locks them (in user id order, as the work loop
    locks them) until the transaction ends, so a kill switch waits for the work loop's
    pass under way and no pass starts work for them after it."""
    if for_update:
        locked = OrgScope(profiles, org_id).select(profiles.c.user_id).order_by(profiles.c.user_id).with_for_update()
        await conn.execute(locked)
    query = OrgScope(profiles, org_id).select().order_by(profiles.c.created_at, profiles.c.user_id)
    return [_to_profile(r) for r in (await conn.execute(query)).all()]


async def lock_working_agents(conn: AsyncConnection, agents: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of these (org id, user id) agents, those that may work now (not paused, not
    off, their org not paused), share-locked until the transaction ends: a kill switch
    pulled meanwhile waits for this transaction, so it never overtakes work begun
    under it. Locked in (org, user) order, as a kill switch locks them."""
    if not agents:
        return set()
    found = (await conn.execute(
        sa.select(profiles.c.org_id, profiles.c.user_id, profiles.c.paused_at, profiles.c.autonomy)
        .where(sa.tuple_(profiles.c.org_id, profiles.c.user_id).in_(sorted(set(agents))))
        .order_by(profiles.c.org_id, profiles.c.user_id)
        .with_for_update(read=True)
    )).all()
    orgs = sorted({org_id for org_id, _ in agents})
    paused_orgs = set((await conn.execute(
        sa.select(org_pauses.c.org_id).where(org_pauses.c.org_id.in_(orgs)))).scalars().all())
    return {(r.org_id, r.user_id) for r in found
            if r.paused_at is None and r.autonomy != Autonomy.OFF.value and r.org_id not in paused_orgs}


async def save_profile(conn: AsyncConnection, profile: AgentProfile) -> None:
    await conn.execute(OrgScope(profiles, profile.org_id).update().where(profiles.c.user_id == profile.user_id)
                       .values(skills=list(profile.skills), autonomy=profile.autonomy.value,
                               confidence_threshold=profile.confidence_threshold, paused_at=profile.paused_at))


async def org_paused(conn: AsyncConnection, org_id: str) -> bool:
    return (await conn.execute(OrgScope(org_pauses, org_id).select())).first() is not None


async def pause_org(conn: AsyncConnection, org_id: str, *, at: dt.datetime, by: str) -> None:
    await conn.execute(OrgScope(org_pauses, org_id).insert(paused_at=at, paused_by=by).on_conflict_do_nothing())


async def resume_org(conn: AsyncConnection, org_id: str) -> None:
    await conn.execute(OrgScope(org_pauses, org_id).delete())
    await conn.execute(sa.select(sa.func.pg_notify(WORK_CHANNEL, "")))


async def wake_work(conn: AsyncConnection) -> None:
    await conn.execute(sa.select(sa.func.pg_notify(WORK_CHANNEL, "")))


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
    await conn.execute(OrgScope(listings, listing.org_id).upsert_newest(
        [asdict(listing)], key=["listing_id"], version="synced_at"))


async def get_listing(conn: AsyncConnection, org_id: str, listing_id: str) -> Listing | None:
    row = (
        await conn.execute(OrgScope(listings, org_id).select().where(listings.c.listing_id == listing_id))
    ).first()
    return Listing(**{n: row._mapping[n] for n in _LISTING_FIELDS}) if row else None


async def upsert_reservation(conn: AsyncConnection, reservation: Reservation) -> None:
    """Keep the reservation as its latest event says; an older event arriving late
    changes nothing."""
    await conn.execute(OrgScope(reservations, reservation.org_id).upsert_newest(
        [asdict(reservation)], key=["reservation_id"], version="as_of"))


async def get_reservation(conn: AsyncConnection, org_id: str, reservation_id: str) -> Reservation | None:
    query = OrgScope(reservations, org_id).select().where(reservations.c.reservation_id == reservation_id)
    row = (await conn.execute(query)).first()
    return Reservation(**{n: row._mapping[n] for n in _RESERVATION_FIELDS}) if row else None


async def list_listings(conn: AsyncConnection, org_id: str, listing_ids: Sequence[str] | None) -> list[Listing]:
    """The named listings (all active ones when `listing_ids` is None), by id."""
    query = OrgScope(listings, org_id).select().order_by(listings.c.listing_id)
    if listing_ids is None:
        query = query.where(listings.c.active)
    else:
        query = query.where(listings.c.listing_id.in_(list(listing_ids)))
    return [Listing(**{n: r._mapping[n] for n in _LISTING_FIELDS}) for r in (await conn.execute(query)).all()]


async def stays_of(conn: AsyncConnection, org_id: str, listing_id: str, *, since: dt.date) -> list[Stay]:
    """The bookings that hold the listing's calendar on a night from `since` on."""
    query = (
        OrgScope(reservations, org_id)
        .select(reservations.c.check_in, reservations.c.check_out, reservations.c.booked_at,
                reservations.c.nightly_rate)
        .where(reservations.c.listing_id == listing_id, reservations.c.status != "cancelled",
               reservations.c.check_out > since)
        .order_by(reservations.c.check_in, reservations.c.reservation_id)
    )
    return [Stay(r.check_in, r.check_out, r.booked_at, r.nightly_rate) for r in (await conn.execute(query)).all()]


async def upsert_nightly_prices(
    conn: AsyncConnection, org_id: str, listing_id: str, prices: Sequence[NightlyPrice], as_of: dt.datetime
) -> None:
    """Keep each night's price as last applied; an older update arriving late changes nothing."""
    rows = [{"listing_id": listing_id, "date": p.date, "price": p.price, "currency": p.currency,
             "as_of": as_of} for p in prices]
    if rows:
        await conn.execute(OrgScope(nightly_prices, org_id).upsert_newest(
            rows, key=["listing_id", "date"], version="as_of"))


async def nightly_prices_of(
    conn: AsyncConnection, org_id: str, listing_id: str, *, first: dt.date, last: dt.date
) -> dict[dt.date, Decimal]:
    query = OrgScope(nightly_prices, org_id).select(nightly_prices.c.date, nightly_prices.c.price).where(
        nightly_prices.c.listing_id == listing_id, nightly_prices.c.date.between(first, last))
    return {r.date: r.price for r in (await conn.execute(query)).all()}


async def upsert_review(conn: AsyncConnection, review: Review) -> None:
    await conn.execute(OrgScope(reviews, review.org_id).upsert_newest(
        [asdict(review)], key=["review_id"], version="submitted_at"))


async def rating_of(conn: AsyncConnection, org_id: str, listing_id: str) -> tuple[int, float | None]:
    """How many reviews the listing has and their mean rating."""
    query = OrgScope(reviews, org_id).select(sa.func.count(), sa.func.avg(reviews.c.rating)).where(
        reviews.c.listing_id == listing_id)
    count, mean = (await conn.execute(query)).one()
    return int(count), float(mean) if mean is not None else None


async def upsert_market_rates(
    conn: AsyncConnection, org_id: str, scope: str, currency: str, rates: Sequence[MarketRate],
    synced_at: dt.datetime,
) -> None:
    """Keep each night's market rate as last synced; an older sync changes nothing."""
    rows = [{"org_id": org_id, "scope": scope, "date": r.date, "median_price": r.median_price,
             "occupancy": r.occupancy, "sample_size": r.sample_size, "local_event": r.local_event,
             "currency": currency, "synced_at": synced_at} for r in rates]
    if rows:
        await conn.execute(OrgScope(market_rates, org_id).upsert_newest(
            rows, key=["scope", "date"], version="synced_at"))


async def market_of(
    conn: AsyncConnection, org_id: str, scopes: Sequence[str], *, first: dt.date, last: dt.date
) -> dict[dt.date, MarketNight]:
    """The market on each night, from the first of `scopes` that has that night."""
    query = OrgScope(market_rates, org_id).select().where(
        market_rates.c.scope.in_(list(scopes)), market_rates.c.date.between(first, last))
    rank = {scope: i for i, scope in enumerate(scopes)}
    rows = sorted((await conn.execute(query)).all(), key=lambda r: (r.date, rank[r.scope]))
    found: dict[dt.date, MarketNight] = {}
    for r in rows:
        found.setdefault(r.date, MarketNight(r.median_price, r.occupancy, r.sample_size, r.local_event))
    return found


async def save_forecast(
    conn: AsyncConnection, org_id: str, *, task_id: str, agent_user_id: str, run_id: str | None,
    produced_at: dt.datetime, nights: Sequence[NightRecommendation],
) -> None:
    """Keep a pricing run's forecast, every night of it (once per task: a redelivery adds nothing)."""
    rows = [{"task_id": task_id, "listing_id": n.listing_id, "date": n.date, "agent_user_id": agent_user_id,
             "run_id": run_id, "produced_at": produced_at, "currency": n.currency,
             "current_price": n.current_price, "recommended_price": n.recommended_price,
             "change_pct": n.change_pct, "expected_occupancy": n.expected_occupancy} for n in nights]
    if rows:
        await conn.execute(OrgScope(forecast_nights, org_id).insert_many(rows).on_conflict_do_nothing())


def _forecast_night(row: Any) -> ForecastNight:
    return ForecastNight(row.listing_id, row.date, row.recommended_price, float(row.expected_occupancy),
                         task_id=row.task_id, produced_at=row.produced_at)


async def changed_nights(
    conn: AsyncConnection, org_id: str, listing_ids: Sequence[str] | None, *, run_id: str | None = None
) -> list[ForecastNight]:
    """The nights a pricing run changed: the run's own forecast when it has one, else
    the latest forecast of each listing."""
    scope = OrgScope(forecast_nights, org_id)
    query = scope.select().where(forecast_nights.c.change_pct != 0)
    if listing_ids is not None:
        query = query.where(forecast_nights.c.listing_id.in_(list(listing_ids)))
    if run_id is not None:
        rows = (await conn.execute(query.where(forecast_nights.c.run_id == run_id))).all()
        if rows:
            return [_forecast_night(r) for r in rows]
    latest = (
        scope.select(forecast_nights.c.listing_id, sa.func.max(forecast_nights.c.produced_at).label("at"))
        .group_by(forecast_nights.c.listing_id).subquery()
    )
    query = query.join(latest, sa.and_(latest.c.listing_id == forecast_nights.c.listing_id,
                                       latest.c.at == forecast_nights.c.produced_at))
    return [_forecast_night(r) for r in (await conn.execute(query.order_by(forecast_nights.c.listing_id,
                                                                            forecast_nights.c.date))).all()]


async def forecasts_of_agent(
    conn: AsyncConnection, org_id: str, agent_user_id: str, *, first: dt.date, last: dt.date
) -> list[ForecastNight]:
    """The nights from `first` to `last` the agent's pricing runs changed, each as its
    latest run before the night left them."""
    query = (
        OrgScope(forecast_nights, org_id).select()
        .where(forecast_nights.c.agent_user_id == agent_user_id, forecast_nights.c.change_pct != 0,
               forecast_nights.c.date.between(first, last))
        .order_by(forecast_nights.c.listing_id, forecast_nights.c.date, forecast_nights.c.produced_at)
    )
    latest: dict[tuple[str, dt.date], ForecastNight] = {}
    for row in (await conn.execute(query)).all():
        latest[(row.listing_id, row.date)] = _forecast_night(row)
    return list(latest.values())


async def booked_nights(
    conn: AsyncConnection, org_id: str, listing_ids: Sequence[str], *, first: dt.date, last: dt.date
) -> dict[tuple[str, dt.date], tuple[Decimal, dt.datetime]]:
    """The nightly rate and booking time of every booked (listing, night) from `first` to `last`."""
    query = (
        OrgScope(reservations, org_id)
        .select(reservations.c.listing_id, reservations.c.check_in, reservations.c.check_out,
                reservations.c.nightly_rate, reservations.c.booked_at)
        .where(reservations.c.listing_id.in_(list(listing_ids)), reservations.c.status != "cancelled",
               reservations.c.check_in <= last, reservations.c.check_out > first)
    )
    found: dict[tuple[str, dt.date], tuple[Decimal, dt.datetime]] = {}
    for row in (await conn.execute(query)).all():
        for night in Stay(row.check_in, row.check_out, row.booked_at).nights():
            if first <= night <= last:
                found[(row.listing_id, night)] = (row.nightly_rate, row.booked_at)
    return found


async def queue_work(conn: AsyncConnection, org_id: str, task_id: str, *, assignment: dict[str, Any],
                     assigned_at: dt.datetime, event_id: str, correlation_id: str | None,
                     received_at: dt.datetime) -> None:
    """Keep an assignment for the work loop (once per task) and wake the loop."""
    statement = OrgScope(agent_work, org_id).insert(
        task_id=task_id, assignment=assignment, assigned_at=assigned_at, event_id=event_id,
        correlation_id=correlation_id, received_at=received_at, assignee=assignment.get("assigned_to"),
    )
    # A task that comes back to an agent after its work was dropped (or done by
    # another) is queued again; the same agent's repeated assignment is not.
    await conn.execute(statement.on_conflict_do_update(
        index_elements=[agent_work.c.org_id, agent_work.c.task_id],
        set_={name: statement.excluded[name] for name in
              ("assignment", "assigned_at", "event_id", "correlation_id", "received_at", "assignee", "done_at")},
        where=agent_work.c.assignee.is_distinct_from(statement.excluded.assignee),
    ))
    await conn.execute(sa.select(sa.func.pg_notify(WORK_CHANNEL, "")))


async def claim_work(conn: AsyncConnection, limit: int = 20, skip: Sequence[tuple[str, str]] = ()) -> list[Any]:
    """Pending work of every org, oldest first, locked so two replicas never share it,
    leaving out the work of paused or switched-off agents and paused orgs (it waits
    for them to resume) and the (org id, task id) rows in `skip`. Cross-org by
    design: the loop acts on each row with that row's org_id."""
    held_agent = sa.exists().where(
        profiles.c.org_id == agent_work.c.org_id, profiles.c.user_id == agent_work.c.assignee,
        sa.or_(profiles.c.paused_at.is_not(None), profiles.c.autonomy == "off"))
    held_org = sa.exists().where(org_pauses.c.org_id == agent_work.c.org_id)
    return list((await conn.execute(
        sa.select(agent_work).where(agent_work.c.done_at.is_(None), ~held_agent, ~held_org,
                                    *([sa.tuple_(agent_work.c.org_id, agent_work.c.task_id).not_in(list(skip))]
                                      if skip else []))
        .order_by(agent_work.c.received_at).limit(limit).with_for_update(of=agent_work, skip_locked=True)
    )).all())


async def held_work(conn: AsyncConnection, org_id: str, assignee: str | None = None) -> list[str]:
    """The tasks queued and not done for an agent (or any agent of the org)."""
    query = OrgScope(agent_work, org_id).select(agent_work.c.task_id).where(agent_work.c.done_at.is_(None))
    if assignee is not None:
        query = query.where(agent_work.c.assignee == assignee)
    return list((await conn.execute(query.order_by(agent_work.c.received_at))).scalars().all())


async def drop_reassigned_work(conn: AsyncConnection, org_id: str, task_id: str, assigned_to: str | None,
                               at: dt.datetime) -> list[str]:
    """The task went to someone else: the work an agent had queued for it and not
    done is dropped (its assignee cleared, so the task may come back to it). Returns
    the agents whose work was dropped."""
    scope = OrgScope(agent_work, org_id)
    pending = list((await conn.execute(
        scope.select(agent_work.c.assignee)
        .where(agent_work.c.task_id == task_id, agent_work.c.done_at.is_(None),
               agent_work.c.assignee.is_distinct_from(assigned_to))
        .with_for_update()
    )).scalars().all())
    if pending:
        await conn.execute(scope.update().where(agent_work.c.task_id == task_id, agent_work.c.done_at.is_(None))
                           .values(done_at=at, assignee=None))
    return [str(a) for a in pending if a is not None]


async def finish_work(conn: AsyncConnection, org_id: str, task_id: str, at: dt.datetime) -> None:
    await conn.execute(OrgScope(agent_work, org_id).update().where(agent_work.c.task_id == task_id)
                       .values(done_at=at))


async def record_listing_sync(conn: AsyncConnection, org_id: str, listing_id: str, correlation_id: str,
                              synced_at: dt.datetime) -> None:
    await conn.execute(OrgScope(listing_syncs, org_id).insert(
        listing_id=listing_id, correlation_id=correlation_id, synced_at=synced_at).on_conflict_do_nothing())


async def listings_synced(conn: AsyncConnection, org_id: str, listing_ids: Sequence[str],
                          correlation_id: str | None = None) -> bool:
    """Every listing is known and has its market data (the last record a sync sends
    for a listing, after its reservations, on the listing's partition) — from the
    sync of the run `correlation_id` when given, not any earlier one."""
    if not listing_ids:
        return True
    if correlation_id is not None:
        synced = (await conn.execute(
            OrgScope(listing_syncs, org_id).select(sa.func.count(sa.distinct(listing_syncs.c.listing_id)))
            .where(listing_syncs.c.listing_id.in_(list(listing_ids)),
                   listing_syncs.c.correlation_id == correlation_id)
        )).scalar_one()
        return int(synced) == len(set(listing_ids))
    scopes = [listing_market_scope(listing_id) for listing_id in listing_ids]
    known = (await conn.execute(
        OrgScope(market_rates, org_id).select(sa.func.count(sa.distinct(market_rates.c.scope)))
        .where(market_rates.c.scope.in_(scopes))
    )).scalar_one()
    return int(known) == len(set(scopes))


async def store_result(conn: AsyncConnection, ref: ResultRef, *, task_id: str, body: bytes,
                       at: dt.datetime) -> None:
    await conn.execute(OrgScope(stored_results, ref.org_id).insert(
        id=ref.id, kind=ref.kind, task_id=task_id, size=ref.size, digest=ref.digest,
        summary=ref.summary, body=body.decode(), created_at=at))


async def get_stored_result(conn: AsyncConnection, org_id: str, result_id: str) -> StoredResult | None:
    row = (await conn.execute(OrgScope(stored_results, org_id).select().where(
        stored_results.c.id == result_id))).first()
    if row is None:
        return None
    return StoredResult(id=row.id, org_id=row.org_id, kind=row.kind, task_id=row.task_id, size=row.size,
                        digest=row.digest, summary=dict(row.summary), created_at=row.created_at,
                        result=json.loads(row.body))
