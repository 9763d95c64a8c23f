"""The automations a seeded org starts with, created over automation-service's REST
API as the org's owner would."""

from __future__ import annotations

import os
from typing import Any

import httpx

DEFAULT_AUTOMATION_URL = "http://127.0.0.1:8003"
ORG_TIME_ZONE = "Europe/Lisbon"


def weekly_price_optimisation(seeded: dict[str, Any]) -> dict[str, Any]:
    """Sundays 09:00 in the org's time zone: start `dynamic-pricing` for its listings."""
    return {
        "name": "Weekly price optimisation",
        "description": "Sync, let the AI Revenue Manager propose prices, approve small changes by rule",
        "kind": "scheduled",
        "cron": "0 9 * * 0",
        "timezone": ORG_TIME_ZONE,
        "action": {
            "type": "start_workflow",
            "workflow_key": "dynamic-pricing",
            "parameters": {
                "listing_ids": seeded["listing_ids"],
                "threshold_pct": 10,
                "monitor_days": 7,
                "owner_user_id": seeded["users"]["owner"]["user_id"],
            },
        },
    }


async def create_seed_automations(seeded: dict[str, Any], automation_url: str | None = None) -> dict[str, Any]:
    """Create the weekly automation; returns what automation-service answered."""
    url = automation_url or os.environ.get("STAYOPS_AUTOMATION_URL", DEFAULT_AUTOMATION_URL)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{url}/v1/automations",
            json=weekly_price_optimisation(seeded),
            headers={"Authorization": f"Bearer {seeded['tokens']['owner']}"},
        )
    response.raise_for_status()
    created: dict[str, Any] = response.json()
    return created
