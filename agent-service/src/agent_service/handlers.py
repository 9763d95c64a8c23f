"""One function per query or event: load, decide, save — all in the caller's unit
of work."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace
from decimal import Decimal
from typing import Any

from agent_service import store
from agent_service.domain import (
    KNOWN_SKILLS,
    Activity,
    AgentNotFound,
    AgentProfile,
    Autonomy,
    InvalidTaskData,
    Listing,
    NothingToAnalyse,
    ResultNotFound,
    SkillNotAvailable,
    SkillOutcome,
    StoredResult,
    analysis_activity,
    area_market_scope,
    default_profile,
    dropped_activity,
    failed_outcome,
    governance_activity,
    governed,
    joined_activity,
    listing_from,
    listing_market_scope,
    market_scope,
    platform_of,
    reservation_from,
    review_from,
    standing,
)
from agent_service.pricing import (
    DEFAULT_RULES,
    ForecastNight,
    InvalidRules,
    ListingPricingInput,
    PricingResult,
    PricingRules,
    UnknownTimezone,
    local_today,
    recommend_prices,
    review_performance,
    score_decisions,
    scorecard_window,
)
from stayops_kit.auth import Caller
from stayops_kit.consumer import EventContext
from stayops_kit.failpoints import planned_failure
from stayops_kit.outbox import UnitOfWork
from stayops_schemas.claims import (
    DEFAULT_INLINE_LIMIT_BYTES,
    by_reference,
    canonical_json,
    fits_inline,
    make_ref,
    pricing_summary,
)
from stayops_schemas.events.agents import AgentPaused, AgentResultProduced, AgentResumed, AgentUpdated, KillSwitch
from stayops_schemas.events.org import MemberJoined, UserType
from stayops_schemas.events.sync import (
    ListingSynced,
    MarketRatesSynced,
    PriceUpdated,
    ReservationCancelled,
    ReservationChanged,
    ReservationCreated,
    ReviewCreated,
)
from stayops_schemas.events.tasks import Priority, TaskAssigned, TaskRequested, TaskType
from stayops_schemas.results import check_result

log = logging.getLogger(__name__)

SERVICE = "agent-service"


async def agent_activity(uow: UnitOfWork, caller: Caller, user_id: str, *, limit: int) -> list[Activity]:
    if await store.get_profile(uow.conn, caller.org_id, user_id) is None:
        raise AgentNotFound(user_id)
    return await store.activity_of(uow.conn, caller.org_id, user_id, limit=limit)


async def _agent(uow: UnitOfWork, caller: Caller, user_id: str) -> AgentProfile:
    """The agent, locked until the change commits (see `store.lock_working_agents`)."""
    profile = await store.get_profile(uow.conn, caller.org_id, user_id, for_update=True)
    if profile is None:
        raise AgentNotFound(user_id)
    return profile


async def _announce_standing(uow: UnitOfWork, profile: AgentProfile, *, by: str | None,
                             switch: KillSwitch | None = None, pulled: bool = False) -> None:
    """Tell the other services where the agent stands now (task-service routes by it):
    `stayops.agent.updated`, or with `switch` the kill switch `pulled` or released."""
    fields = standing(profile, org_paused=await store.org_paused(uow.conn, profile.org_id), at=uow.clock.now(),
                      by=by)
    payload: AgentUpdated | AgentPaused | AgentResumed
    if switch is None:
        type_, payload = "stayops.agent.updated", AgentUpdated(**fields)
    elif pulled:
        type_, payload = "stayops.agent.paused", AgentPaused(**fields, switch=switch)
    else:
        type_, payload = "stayops.agent.resumed", AgentResumed(**fields, switch=switch)
    await uow.announce(type_, payload, org_id=profile.org_id, key=profile.user_id)


async def update_agent(uow: UnitOfWork, caller: Caller, user_id: str, *, autonomy: Autonomy | None,
                       confidence_threshold: Decimal | None, skills: tuple[str, ...] | None) -> AgentProfile:
    """The owner tunes an agent: autonomy, confidence threshold, skills; announced."""
    changed = governed(await _agent(uow, caller, user_id), autonomy=autonomy,
                       confidence_threshold=confidence_threshold, skills=skills)
    await store.save_profile(uow.conn, changed)
    await store.append_activity(uow.conn, governance_activity(
        changed, kind="profile.updated", summary="profile changed", by=caller.user_id, at=uow.clock.now(),
        id=uow.ids()))
    await _announce_standing(uow, changed, by=caller.user_id)
    await store.wake_work(uow.conn)  # an agent switched back on picks its held work up
    return changed


async def pause_agent(uow: UnitOfWork, caller: Caller, user_id: str, *, paused: bool) -> AgentProfile:
    """The kill switch of one agent: once it is pulled the agent starts no work and
    proposes nothing (a work pass under way finishes first: the switch waits for
    it); its queued work waits here, and task-service hands its open tasks back to
    the role when it hears `stayops.agent.paused`."""
    profile = await _agent(uow, caller, user_id)
    changed = replace(profile, paused_at=(profile.paused_at or uow.clock.now()) if paused else None)
    await store.save_profile(uow.conn, changed)
    held = await store.held_work(uow.conn, caller.org_id, user_id)
    await store.append_activity(uow.conn, governance_activity(
        changed, kind="agent.paused" if paused else "agent.resumed",
        summary=(f"paused; {len(held)} queued task(s) held" if paused else f"resumed; {len(held)} queued task(s)"),
        by=caller.user_id, at=uow.clock.now(), id=uow.ids()))
    await _announce_standing(uow, changed, by=caller.user_id, switch=KillSwitch.AGENT, pulled=paused)
    if not paused:
        await store.wake_work(uow.conn)
    return changed


async def pause_org_agents(uow: UnitOfWork, caller: Caller, *, paused: bool) -> list[AgentProfile]:
    """The kill switch of every agent of the org, announced once per agent."""
    await store.list_profiles(uow.conn, caller.org_id, for_update=True)
    if paused:
        await store.pause_org(uow.conn, caller.org_id, at=uow.clock.now(), by=caller.user_id)
    else:
        await store.resume_org(uow.conn, caller.org_id)
    agents = await store.list_profiles(uow.conn, caller.org_id)
    for agent in agents:
        await store.append_activity(uow.conn, governance_activity(
            agent, kind="org.agents.paused" if paused else "org.agents.resumed",
            summary="every agent of the org paused" if paused else "the org's agents resumed",
            by=caller.user_id, at=uow.clock.now(), id=uow.ids()))
        await _announce_standing(uow, agent, by=caller.user_id, switch=KillSwitch.ORG, pulled=paused)
    return agents


async def member_joined(ctx: EventContext, event: MemberJoined) -> None:
    """An AI agent that joins gets its role's default profile, unless it has one."""
    if event.user_type is not UserType.AI_AGENT:
        return
    profile = default_profile(
        org_id=event.org_id,
        user_id=event.user_id,
        display_name=event.display_name,
        role_id=event.role_id,
        created_at=ctx.uow.clock.now(),
    )
    if await store.insert_profile_if_missing(ctx.uow.conn, profile):
        await store.append_activity(ctx.uow.conn, joined_activity(profile, event.role_name, id=ctx.uow.ids()))
        await _announce_standing(ctx.uow, profile, by=None)
    else:
        log.debug("agent %s of org %s already has a profile", event.user_id, event.org_id)


async def listing_synced(ctx: EventContext, event: ListingSynced) -> None:
    await store.upsert_listing(ctx.uow.conn, listing_from(event, platform_of(ctx.envelope.type)))


async def reservation_reported(
    ctx: EventContext, event: ReservationCreated | ReservationChanged | ReservationCancelled
) -> None:
    reservation = reservation_from(event, platform_of(ctx.envelope.type), as_of=ctx.envelope.time)
    await store.upsert_reservation(ctx.uow.conn, reservation)


async def prices_updated(ctx: EventContext, event: PriceUpdated) -> None:
    await store.upsert_nightly_prices(ctx.uow.conn, event.org_id, event.listing_id, event.prices,
                                      as_of=event.applied_at)


async def review_created(ctx: EventContext, event: ReviewCreated) -> None:
    await store.upsert_review(ctx.uow.conn, review_from(event, platform_of(ctx.envelope.type)))


async def market_rates_synced(ctx: EventContext, event: MarketRatesSynced) -> None:
    await store.upsert_market_rates(ctx.uow.conn, event.org_id, market_scope(event), event.currency,
                                    event.rates, event.synced_at)
    if event.listing_id is not None and ctx.envelope.correlationid:
        await store.record_listing_sync(ctx.uow.conn, event.org_id, event.listing_id, ctx.envelope.correlationid,
                                        event.synced_at)


DEFAULT_HORIZON_DAYS = 90
MAX_HORIZON_DAYS = 365


async def task_assigned(ctx: EventContext, event: TaskAssigned) -> None:
    """An analysis task assigned to one of this org's agents is queued for the work
    loop (`agent_service.work`), which runs it once the sync data it needs is here.
    Other tasks are someone else's; work queued for a task that went to someone
    else is dropped."""
    if event.task_type is not TaskType.ANALYSIS:
        return  # only analysis tasks are agents' work, and a task's type never changes
    for agent_user_id in await store.drop_reassigned_work(ctx.uow.conn, ctx.org_id, event.task_id,
                                                          event.assigned_to, ctx.uow.clock.now()):
        await store.append_activity(ctx.uow.conn, dropped_activity(
            agent_user_id, ctx.org_id, task_id=event.task_id, now_with=event.assigned_to, at=ctx.uow.clock.now(),
            id=ctx.uow.ids()))
    if event.assigned_to is None:
        return
    if await store.get_profile(ctx.uow.conn, ctx.org_id, event.assigned_to) is None:
        return
    await store.queue_work(
        ctx.uow.conn, ctx.org_id, event.task_id, assignment=event.model_dump(mode="json"),
        assigned_at=ctx.envelope.time, event_id=ctx.envelope.id, correlation_id=ctx.envelope.correlationid,
        received_at=ctx.uow.clock.now(),
    )


async def perform_assigned_task(ctx: EventContext, event: TaskAssigned, *,
                                inline_limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES) -> None:
    """Run the skill the task asks for, log the decision, announce the result."""
    assert event.assigned_to is not None
    agent = await store.get_profile(ctx.uow.conn, ctx.org_id, event.assigned_to)
    if agent is None:
        return
    skill = str(event.data.get("skill") or "")
    # The analysis is as of the assignment, so a redelivery reasons about the same day.
    as_of = ctx.envelope.time
    try:
        outcome = await _run_skill(ctx, agent, event, skill, as_of)
    except (SkillNotAvailable, NothingToAnalyse, InvalidTaskData, InvalidRules, UnknownTimezone) as exc:
        log.info("agent %s cannot do task %s: %s", agent.user_id, event.task_id, exc)
        outcome = failed_outcome(skill, exc)
    await _announce_outcome(ctx, agent, event, outcome, inline_limit_bytes=inline_limit_bytes)


async def report_failure(ctx: EventContext, event: TaskAssigned, error: Exception) -> None:
    """The skill broke: the task fails with the reason, rather than staying open as
    if the agent were still at it."""
    assert event.assigned_to is not None
    agent = await store.get_profile(ctx.uow.conn, ctx.org_id, event.assigned_to)
    if agent is None:
        return
    reason = f"{type(error).__name__}: {error}"
    await _announce_outcome(ctx, agent, event, failed_outcome(str(event.data.get("skill") or ""), Exception(reason)))


async def _announce_outcome(ctx: EventContext, agent: AgentProfile, event: TaskAssigned,
                            outcome: SkillOutcome, *, inline_limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES) -> None:
    await store.append_activity(ctx.uow.conn, analysis_activity(
        agent, outcome, task_id=event.task_id, at=ctx.uow.clock.now(), id=ctx.uow.ids()))
    # Stored when too big for an event, or when the task asks for a ref whatever the
    # size (`data.by_reference`: a portfolio's segment summary carries only the ref).
    wants_ref = event.data.get("by_reference") is True and outcome.skill == "pricing"
    if not outcome.failed and (wants_ref or not fits_inline(outcome.result, inline_limit_bytes)):
        outcome = replace(outcome, result=await _store_result(ctx, event.task_id, outcome))
    await ctx.uow.announce(
        "stayops.agent.result.produced",
        AgentResultProduced(
            agent_user_id=agent.user_id,
            org_id=ctx.org_id,
            task_id=event.task_id,
            skill=outcome.skill,
            summary=outcome.summary,
            confidence=outcome.confidence,
            result=outcome.result,
            workflow_run_id=event.workflow_run_id,
            workflow_step=event.workflow_step,
            failed=outcome.failed,
            error=outcome.result.get("error") if outcome.failed else None,
        ),
        org_id=ctx.org_id,
        key=event.task_id,
    )


async def _store_result(ctx: EventContext, task_id: str, outcome: SkillOutcome) -> dict[str, Any]:
    """Keep a result too big for its event and return what the event carries instead:
    the summary and a ref (claim check). The result is checked here, whole, as
    task-service would check it inline: readers of the ref trust this check and the
    digest."""
    check_result(outcome.skill, outcome.result)
    summary = pricing_summary(outcome.result) if outcome.skill == "pricing" else {}
    ref = make_ref(outcome.result, service=SERVICE, kind=outcome.skill, id=ctx.uow.ids(), org_id=ctx.org_id,
                   summary=summary)
    await store.store_result(ctx.uow.conn, ref, task_id=task_id, body=canonical_json(outcome.result),
                             at=ctx.uow.clock.now())
    return by_reference(ref)


async def stored_result(uow: UnitOfWork, org_id: str, result_id: str) -> StoredResult:
    found = await store.get_stored_result(uow.conn, org_id, result_id)
    if found is None:
        raise ResultNotFound(result_id)
    return found


async def _run_skill(
    ctx: EventContext, agent: AgentProfile, event: TaskAssigned, skill: str, as_of: dt.datetime
) -> SkillOutcome:
    if skill not in agent.skills:
        raise SkillNotAvailable(skill, agent.skills)
    if skill == "pricing":
        return await _price(ctx, agent, event, as_of)
    if skill == "performance-review":
        return await _review(ctx, agent, event, as_of.date())
    if skill == "guest-welcome":
        return await _welcome(ctx, event)
    raise SkillNotAvailable(skill, KNOWN_SKILLS)


async def _welcome(ctx: EventContext, event: TaskAssigned) -> SkillOutcome:
    """A welcome for a reservation's guests (`data.listing_id`, optional
    `reservation_id`, `check_in`, `guests`), from what the listing's platform said
    about it: its title, city and time zone."""
    listing_id = event.data.get("listing_id")
    if not isinstance(listing_id, str) or not listing_id:
        raise InvalidTaskData("data.listing_id must name the listing the guests stay at")
    found = await store.list_listings(ctx.uow.conn, ctx.org_id, [listing_id])
    if not found:
        raise NothingToAnalyse(f"listing {listing_id} has not been synced; run a sync first")
    listing = found[0]
    guests, check_in = event.data.get("guests"), event.data.get("check_in")
    party = f" for your party of {guests}" if isinstance(guests, int) and guests > 1 else ""
    when = f" on {check_in}" if isinstance(check_in, str) and check_in else ""
    message = (f"Welcome to {listing.title} in {listing.city}! Everything is ready{party}{when}. "
               "Check-in is from 15:00 and check-out by 11:00 (local time). Write to us here if you need "
               "anything during your stay.")
    reservation = event.data.get("reservation_id")
    result = {"listing_id": listing_id, "reservation_id": reservation if isinstance(reservation, str) else None,
              "subject": f"Welcome to {listing.title}", "message": message}
    return SkillOutcome(skill="guest-welcome", summary=f"drafted a welcome for {listing.title}", confidence=0.9,
                        result=result, inputs={"listing_id": listing_id, "title": listing.title,
                                               "city": listing.city},
                        explanation="A welcome from the listing's title and city and the stay's dates.")


def _listing_ids(data: dict[str, Any]) -> list[str] | None:
    ids = data.get("listing_ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidTaskData("data.listing_ids must be a list of listing ids")
    return ids


def _forecast_runs(data: dict[str, Any], own_run: str | None) -> list[str | None]:
    """The runs whose forecasts a performance review reads: `data.runs` (run ids, or
    objects with a `run_id`, e.g. a map step's outcomes), else the task's own run."""
    runs = data.get("runs")
    if runs is None:
        return [own_run]
    if not isinstance(runs, list):
        raise InvalidTaskData("data.runs must be a list of run ids (or of objects with a run_id)")
    # An item that never ran (no run id) has no forecast.
    ids = [run.get("run_id") for run in runs if isinstance(run, dict) and run.get("run_id")] + [
        run for run in runs if not isinstance(run, dict)]
    if not all(isinstance(i, str) and i for i in ids):
        raise InvalidTaskData("data.runs must be a list of run ids (or of objects with a run_id)")
    return list(dict.fromkeys(ids))


def _horizon(data: dict[str, Any]) -> int:
    value = data.get("horizon_days", DEFAULT_HORIZON_DAYS)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_HORIZON_DAYS:
        raise InvalidTaskData(f"data.horizon_days must be a whole number of days from 1 to {MAX_HORIZON_DAYS}")
    return value


# How far back the market's and the listing's history is read: a year shows the
# market's typical level and the listing's position against it.
HISTORY_DAYS = 365


def _rules(data: dict[str, Any]) -> tuple[PricingRules, dict[str, Any]]:
    """The org's rule overrides (`data.rules`) and each listing's (`data.listing_rules`)."""
    org_rules, listing_rules = data.get("rules"), data.get("listing_rules") or {}
    if org_rules is not None and not isinstance(org_rules, dict):
        raise InvalidTaskData("data.rules must be an object of rule overrides")
    if not isinstance(listing_rules, dict):
        raise InvalidTaskData("data.listing_rules must map listing ids to rule overrides")
    return DEFAULT_RULES.overridden(org_rules), listing_rules


async def _pricing_input(ctx: EventContext, listing: Listing, rules: PricingRules, as_of: dt.datetime,
                         horizon: int) -> ListingPricingInput:
    conn = ctx.uow.conn
    today = local_today(as_of, listing.timezone)
    since, last = today - dt.timedelta(days=HISTORY_DAYS), today + dt.timedelta(days=horizon - 1)
    return ListingPricingInput(
        listing_id=listing.listing_id,
        currency=listing.currency,
        base_price=listing.base_price,
        min_price=listing.min_price,
        max_price=listing.max_price,
        current_prices=await store.nightly_prices_of(conn, ctx.org_id, listing.listing_id, first=today, last=last),
        stays=await store.stays_of(conn, ctx.org_id, listing.listing_id, since=since),
        market=await store.market_of(
            conn, ctx.org_id, [listing_market_scope(listing.listing_id), area_market_scope(listing.city)],
            first=since, last=last),
        timezone=listing.timezone,
        min_stay=listing.min_stay,
        rules=rules,
    )


async def _price(ctx: EventContext, agent: AgentProfile, event: TaskAssigned, as_of: dt.datetime) -> SkillOutcome:
    horizon = _horizon(event.data)
    failing = planned_failure("analysis", _listing_ids(event.data) or [])
    if failing is not None:  # end-to-end tests only (STAYOPS_FAULTS_FILE)
        raise RuntimeError(f"the pricing model failed on listing {failing} (planned failure)")
    found = await store.list_listings(ctx.uow.conn, ctx.org_id, _listing_ids(event.data))
    if not found:
        raise NothingToAnalyse("no synced listing matches data.listing_ids; run a sync first")
    org_rules, listing_rules = _rules(event.data)
    inputs = [await _pricing_input(ctx, listing, org_rules.overridden(listing_rules.get(listing.listing_id)),
                                   as_of, horizon) for listing in found]
    priced = recommend_prices(inputs, as_of=as_of, horizon_days=horizon,
                              confidence_threshold=float(agent.confidence_threshold))
    await store.save_forecast(ctx.uow.conn, ctx.org_id, task_id=event.task_id, agent_user_id=agent.user_id,
                              run_id=event.workflow_run_id, produced_at=as_of, nights=priced.recommendations)
    summary = (f"priced {len(priced.recommendations)} open nights of {len(inputs)} listings over {horizon} days; "
               f"largest change {priced.max_abs_change_pct:.2f}%, lowest confidence {priced.min_confidence:.2f}"
               + ("; needs review" if priced.needs_review else ""))
    return SkillOutcome(
        skill="pricing",
        summary=summary,
        confidence=priced.min_confidence,
        result=priced.as_result(),
        inputs=await _pricing_inputs_summary(ctx, inputs, found, as_of, horizon),
        explanation=_explain_pricing(priced, float(agent.confidence_threshold)),
    )


async def _pricing_inputs_summary(
    ctx: EventContext, inputs: list[ListingPricingInput], found: list[Listing], as_of: dt.datetime, horizon: int
) -> dict[str, Any]:
    listings = []
    for listing, source in zip(inputs, found, strict=True):
        today = local_today(as_of, listing.timezone)
        reviews, rating = await store.rating_of(ctx.uow.conn, ctx.org_id, listing.listing_id)
        listings.append({
            "listing_id": listing.listing_id,
            "base_price": str(listing.base_price),
            "min_price": str(listing.min_price) if listing.min_price is not None else None,
            "max_price": str(listing.max_price) if listing.max_price is not None else None,
            "currency": listing.currency,
            "city": source.city,
            "timezone": listing.timezone,
            "today": today.isoformat(),
            "min_stay": listing.min_stay,
            "booked_nights": len({n for s in listing.stays for n in s.nights()
                                  if today <= n < today + dt.timedelta(days=horizon)}),
            "nights_with_current_price": len(listing.current_prices),
            "nights_with_market_rate": len(listing.market),
            "reviews": reviews,
            "mean_rating": round(rating, 2) if rating is not None else None,
        })
    return {"as_of": as_of.isoformat(), "horizon_days": horizon, "listings": listings}


def _explain_pricing(priced: PricingResult, threshold: float) -> str:
    parts = ["Each open night starts from the listing's base price (moved toward the position its bookings "
             "show against the market), follows the market's season, weekday and night premium, its booking "
             "pace and the listing's occupancy against the market's, then the owner's rules (last-minute "
             "discount, far-out premium, orphan gaps, weekend and event premiums), at most the maximum change "
             "per run, within the owner's minimum and maximum; booked nights are not repriced."]
    if priced.recommendations:
        biggest = max(priced.recommendations, key=lambda r: (abs(r.change_pct), r.listing_id, r.date))
        moved = ", ".join(f"{f.name} {f.effect_pct:+.2f}% ({f.detail})" for f in biggest.factors if f.effect_pct)
        parts.append(f"Largest change: {biggest.listing_id} on {biggest.date.isoformat()}, "
                     f"{biggest.current_price} -> {biggest.recommended_price} ({biggest.change_pct:+.2f}%): "
                     f"{moved or 'no factor moved it'}.")
    else:
        parts.append("Every night of the horizon is booked: nothing to reprice.")
    if priced.needs_review:
        parts.append(f"Lowest confidence {priced.min_confidence:.2f} is below the agent's threshold "
                     f"{threshold:.2f} (thin data, e.g. nights without market rates): a person should review.")
    return " ".join(parts)


ALERT_ROLE = "owner"


async def _review(ctx: EventContext, agent: AgentProfile, event: TaskAssigned, today: dt.date) -> SkillOutcome:
    listing_ids = _listing_ids(event.data)
    tolerance = event.data.get("tolerance_pct", 0)
    if not isinstance(tolerance, int | float) or isinstance(tolerance, bool) or tolerance < 0:
        raise InvalidTaskData("data.tolerance_pct must be a non-negative number")
    # This run's forecast (a later run's never replaces it), or that of the runs
    # `data.runs` names (a portfolio's segment runs); only nights already past are
    # final: a night still ahead may yet be booked.
    nights = [n for run_id in _forecast_runs(event.data, event.workflow_run_id)
              for n in await store.changed_nights(ctx.uow.conn, ctx.org_id, listing_ids, run_id=run_id)
              if n.date < today]
    booked = await _booked(ctx.uow.conn, ctx.org_id, nights)
    rates = {key: rate for key, (rate, _) in booked.items()}
    review = review_performance(nights, rates, tolerance_pct=float(tolerance))
    scores = score_decisions(nights, booked)
    if review.fell_short:
        await ctx.uow.announce(
            "stayops.task.requested",
            TaskRequested(
                request_id=f"{event.task_id}:alert",
                org_id=ctx.org_id,
                title="Revenue fell short of the pricing forecast",
                task_type=TaskType.MANUAL,
                priority=Priority.HIGH,
                description=(f"Booked {review.booked_revenue} against a forecast of {review.forecast_revenue} "
                             f"({review.shortfall_pct:.2f}% short) over {review.nights_reviewed} repriced nights."),
                role_id=ALERT_ROLE,
                data={"review_task_id": event.task_id, **review.as_result()},
                parent_task_id=event.task_id,
                requested_by=agent.user_id,
            ),
            org_id=ctx.org_id,
            key=event.task_id,
        )
    verdict = "fell short" if review.fell_short else "met the forecast"
    summary = (f"reviewed {review.nights_reviewed} repriced nights: booked {review.booked_revenue} vs forecast "
               f"{review.forecast_revenue}; {verdict}" + ("; owner alerted" if review.fell_short else ""))
    return SkillOutcome(
        skill="performance-review",
        summary=summary,
        # With no repriced night behind us there is nothing to judge yet.
        confidence=0.9 if review.nights_reviewed else 0.5,
        result={**review.as_result(), "run_id": event.workflow_run_id,
                "decisions": scorecard_window(scores, nights, 0).as_dict() | {"weeks": None},
                # The worst decisions first: what a person should look at.
                "worst_decisions": [d.as_dict() for d in sorted(scores, key=lambda d: d.score_pct)[:5]]},
        inputs={"today": today.isoformat(), "listing_ids": listing_ids, "tolerance_pct": tolerance,
                "nights_reviewed": review.nights_reviewed, "booked_nights": len(rates)},
        explanation=("Forecast revenue is each repriced night's recommended price times the occupancy expected "
                     "for it (the market's, when known); booked revenue is the nightly rate of the bookings "
                     f"on those nights. Shortfall {review.shortfall_pct:.2f}% against a tolerance of {tolerance}%."),
    )


async def _booked(conn: Any, org_id: str, nights: list[ForecastNight]) -> dict[tuple[str, dt.date],
                                                                              tuple[Decimal, dt.datetime]]:
    if not nights:
        return {}
    return await store.booked_nights(conn, org_id, sorted({n.listing_id for n in nights}),
                                     first=min(n.date for n in nights), last=max(n.date for n in nights))


SCORECARD_WEEKS = (4, 12)


async def agent_scorecard(uow: UnitOfWork, caller: Caller, user_id: str) -> dict[str, Any]:
    """Realised against forecast for the nights the agent repriced, over the last 4
    and 12 weeks (nights already past, each as its latest run left it)."""
    if await store.get_profile(uow.conn, caller.org_id, user_id) is None:
        raise AgentNotFound(user_id)
    today = uow.clock.now().date()
    windows = []
    for weeks in SCORECARD_WEEKS:
        first, last = today - dt.timedelta(weeks=weeks), today - dt.timedelta(days=1)
        nights = await store.forecasts_of_agent(uow.conn, caller.org_id, user_id, first=first, last=last)
        scores = score_decisions(nights, await _booked(uow.conn, caller.org_id, nights))
        windows.append(scorecard_window(scores, nights, weeks).as_dict()
                       | {"first": first.isoformat(), "last": last.isoformat()})
    return {"agent_user_id": user_id, "as_of": today.isoformat(), "windows": windows}
