"""The automations a seeded org starts with, created over automation-service's REST
API as the org's owner would: the weekly price run (for a property manager with
segments, one `portfolio-pricing` run over all of them), and the two reactive ones — a
reservation sets guest welcome and cleaning in motion, a bad review alerts the owner."""

from __future__ import annotations

import os
from typing import Any

import httpx

DEFAULT_AUTOMATION_URL = "http://127.0.0.1:8003"
ORG_TIME_ZONE = "Europe/Lisbon"
# The role whose member with the fewest open tasks cleans (task-service assigns).
CLEANING_ROLE = "operations"
# Local times of a stay: guests arrive at 15:00 and are welcomed two hours later;
# they leave by 11:00, when cleaning starts.
CHECK_IN_AT = "15:00"
WELCOME_AFTER = "PT2H"
CLEANING_AT = "11:00"
BAD_REVIEW_MAX_RATING = 3
# The most listings one dynamic-pricing run prices, for an org without segments. A
# large result travels by reference (claim check: agent-service stores it, events
# carry its id and summary), so the size of an event no longer bounds a run; this
# keeps one run to what one person reviews in one decision. An org with segments gets
# one portfolio-pricing run instead: a child run per segment, one batch review.
PRICING_RUN_MAX_LISTINGS = 25
# Runs of one org start this many minutes apart from 09:00, not all at once.
PRICING_RUN_STAGGER_MIN = 10


def weekly_price_optimisation(seeded: dict[str, Any], listing_ids: list[str] | None = None,
                              name: str = "Weekly price optimisation", minute: int = 0) -> dict[str, Any]:
    """Sundays 09:00 in the org's time zone: start `dynamic-pricing` for its listings
    (or `listing_ids`)."""
    return {
        "name": name,
        "description": "Sync, let the AI Revenue Manager propose prices, approve small changes by rule",
        "kind": "scheduled",
        "cron": f"{minute} 9 * * 0",
        "timezone": ORG_TIME_ZONE,
        "action": {
            "type": "start_workflow",
            "workflow_key": "dynamic-pricing",
            "parameters": {
                "listing_ids": listing_ids or seeded["listing_ids"],
                "threshold_pct": 10,
                "monitor_days": 7,
                "owner_user_id": seeded["users"]["owner"]["user_id"],
            },
        },
    }


def weekly_portfolio_pricing(seeded: dict[str, Any]) -> dict[str, Any]:
    """Sundays 09:00 in the org's time zone: start `portfolio-pricing` over the org's
    segments: each priced in a child run (three at once), then one batch review for
    the revenue manager."""
    segments: dict[str, list[str]] = seeded["segments"]
    return {
        "name": "Weekly portfolio pricing",
        "description": "Price every segment in parallel, review them in one batch, publish listing by listing",
        "kind": "scheduled",
        "cron": "0 9 * * 0",
        "timezone": ORG_TIME_ZONE,
        "action": {
            "type": "start_workflow",
            "workflow_key": "portfolio-pricing",
            "parameters": {
                "segments": [{"segment": segment, "listing_ids": ids} for segment, ids in segments.items()],
                "monitor_days": 7,
                "owner_user_id": seeded["users"]["owner"]["user_id"],
            },
        },
    }


def pricing_schedules(seeded: dict[str, Any]) -> list[dict[str, Any]]:
    """One weekly price run: `portfolio-pricing` for an org with segments;
    `dynamic-pricing` for a small org, or in chunks of at most
    `PRICING_RUN_MAX_LISTINGS` listings for a large one without segments."""
    if seeded.get("segments"):
        return [weekly_portfolio_pricing(seeded)]
    if len(seeded["listing_ids"]) <= PRICING_RUN_MAX_LISTINGS:
        return [weekly_price_optimisation(seeded)]
    groups = {"all": seeded["listing_ids"]}
    schedules: list[dict[str, Any]] = []
    for segment, listing_ids in groups.items():
        count = -(-len(listing_ids) // PRICING_RUN_MAX_LISTINGS)
        size, rest = divmod(len(listing_ids), count)  # even chunks: 30 listings are 15 + 15
        start = 0
        for i in range(count):
            end = start + size + (1 if i < rest else 0)
            schedules.append(weekly_price_optimisation(
                seeded, listing_ids[start:end], name=f"Weekly price optimisation: {segment} ({i + 1}/{count})",
                minute=(len(schedules) * PRICING_RUN_STAGGER_MIN) % 60))
            start = end
    return schedules


def _welcomer(seeded: dict[str, Any]) -> str:
    """Who welcomes guests: the guest manager where the org has one, else the owner."""
    users = seeded["users"]
    return str((users.get("guest-relations") or users["owner"])["user_id"])


def reservation_guest_welcome_and_cleaning(seeded: dict[str, Any]) -> dict[str, Any]:
    """Any platform's reservation: the owner (or the guest manager) welcomes the
    guests two hours after check-in, Operations cleans at 11:00 on check-out day, both in the listing's
    local time and linked to the reservation; a change moves them, a cancellation
    cancels them."""
    not_cancelled = "type != 'reservation.cancelled'"
    reservation = {"reservation_id": "${data.reservation_id}", "listing_id": "${data.listing_id}",
                   "platform": "${platform}", "check_in": "${data.check_in}", "check_out": "${data.check_out}",
                   "guests": "${data.guests}"}
    return {
        "name": "Reservation: guest welcome and cleaning",
        "description": "Welcome the guests 2 h after check-in; clean at 11:00 on check-out day (local time)",
        "kind": "event",
        "on": "reservation.*",
        "timezone": ORG_TIME_ZONE,
        "actions": [
            {"type": "create_task", "key": "guest-welcome", "link": "${data.reservation_id}",
             "title": "Welcome the guests of reservation ${data.reservation_id}",
             "assigned_to": _welcomer(seeded), "priority": "medium",
             "due": {"date": "data.check_in", "at": CHECK_IN_AT, "offset": WELCOME_AFTER},
             "data": reservation, "when": not_cancelled},
            {"type": "create_task", "key": "cleaning", "link": "${data.reservation_id}",
             "title": "Clean after reservation ${data.reservation_id}", "role_id": CLEANING_ROLE,
             "priority": "high", "due": {"date": "data.check_out", "at": CLEANING_AT},
             "data": reservation, "when": not_cancelled},
            {"type": "cancel_tasks", "link": "${data.reservation_id}",
             "reason": "reservation ${data.reservation_id} was cancelled on ${platform}",
             "when": "type == 'reservation.cancelled'"},
        ],
    }


def bad_review_alert(seeded: dict[str, Any]) -> dict[str, Any]:
    """A review of 3 stars or fewer: an urgent task for the owner with its text and
    reservation; the same review delivered twice alerts once."""
    return {
        "name": "Bad review: alert the owner",
        "kind": "event",
        "on": "review.created",
        "filter": f"data.rating <= {BAD_REVIEW_MAX_RATING}",
        "dedupe_key": "${platform}:${data.review_id}",
        "actions": [
            {"type": "create_task", "key": "review-alert", "link": "review:${platform}:${data.review_id}",
             "title": "${data.rating}-star review on ${platform}: answer the guest",
             "description": "${data.text}", "priority": "urgent",
             "assigned_to": seeded["users"]["owner"]["user_id"],
             "data": {"review_id": "${data.review_id}", "rating": "${data.rating}", "text": "${data.text}",
                      "reservation_id": "${data.reservation_id}", "listing_id": "${data.listing_id}",
                      "platform": "${platform}"}},
        ],
    }


def seed_automations(seeded: dict[str, Any]) -> list[dict[str, Any]]:
    """A seeded org's automations: its weekly pricing, then the two reactive ones."""
    return [*pricing_schedules(seeded), reservation_guest_welcome_and_cleaning(seeded), bad_review_alert(seeded)]


async def create_seed_automations(seeded: dict[str, Any], automation_url: str | None = None) -> list[dict[str, Any]]:
    """Create the org's automations; returns what automation-service answered, in order."""
    url = automation_url or os.environ.get("STAYOPS_AUTOMATION_URL", DEFAULT_AUTOMATION_URL)
    created: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for automation in seed_automations(seeded):
            response = await client.post(
                f"{url}/v1/automations",
                json=automation,
                headers={"Authorization": f"Bearer {seeded['tokens']['owner']}"},
            )
            response.raise_for_status()
            created.append(response.json())
    return created
