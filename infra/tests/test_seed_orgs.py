"""The seeded orgs and their automations: a solo host prices its listings in one weekly
run; a property manager's 50 listings in one portfolio run over its segments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stayops_infra.automations import PRICING_RUN_MAX_LISTINGS, seed_automations
from stayops_infra.orgsim import SeededOrg, propco_org, solo_host_org
from stayops_infra.syncsim import ListingProfile, listing_profiles_file, write_listing_profiles


def seeded(org_kind: str) -> dict[str, Any]:
    org = propco_org() if org_kind == "propco" else solo_host_org()
    return SeededOrg(org, {"owner": "token"}).as_json()


def test_a_solo_host_has_one_weekly_pricing_run_and_the_two_reactive_automations(tmp_path: Path) -> None:
    solo = seeded("solo")
    automations = seed_automations(solo)
    assert [a["name"] for a in automations] == [
        "Weekly price optimisation", "Reservation: guest welcome and cleaning", "Bad review: alert the owner"]
    assert automations[0]["action"]["parameters"]["listing_ids"] == solo["listing_ids"]
    assert automations[1]["actions"][0]["assigned_to"] == solo["users"]["owner"]["user_id"]


def test_a_propco_prices_its_portfolio_in_one_run_over_every_segment(tmp_path: Path) -> None:
    propco = seeded("propco")
    [pricing] = [a for a in seed_automations(propco) if a["kind"] == "scheduled"]

    assert pricing["action"]["workflow_key"] == "portfolio-pricing"
    segments = pricing["action"]["parameters"]["segments"]
    assert [(s["segment"], len(s["listing_ids"])) for s in segments] == [("luxury", 10), ("standard", 25),
                                                                        ("budget", 15)]
    assert sorted(lid for s in segments for lid in s["listing_ids"]) == sorted(propco["listing_ids"])
    assert pricing["action"]["parameters"]["owner_user_id"] == propco["users"]["owner"]["user_id"]


def test_a_large_org_without_segments_is_priced_in_chunks() -> None:
    solo = seeded("solo")
    many = {**solo, "listing_ids": [f"l-{i}" for i in range(60)]}
    chunks = [a["action"]["parameters"]["listing_ids"] for a in seed_automations(many) if a["kind"] == "scheduled"]
    assert [len(c) for c in chunks] == [20, 20, 20]
    assert all(len(c) <= PRICING_RUN_MAX_LISTINGS for c in chunks)


def test_a_propcos_members_and_the_segments_the_simulators_read(tmp_path: Path) -> None:
    org = propco_org()
    roles = sorted((m.department_name or "-", m.role_id, m.user_type) for m in org.members)
    assert roles == [
        ("-", "owner", "human"),
        ("Guest relations", "guest-relations", "ai_agent"), ("Guest relations", "guest-relations", "human"),
        ("Operations", "operations", "human"), ("Operations", "operations", "human"),
        ("Operations", "operations", "human"),
        ("Revenue", "revenue-manager", "ai_agent"), ("Revenue", "revenue-manager", "human"),
    ]
    assert len({m.department_id for m in org.members if m.department_id}) == 3
    profiles = tmp_path / "listings.json"
    write_listing_profiles(profiles, {lid: ListingProfile(segment, (segment,))
                                      for segment, ids in org.segments.items() for lid in ids})
    read = listing_profiles_file(profiles)()
    assert len(read) == 50 and {p.segment for p in read.values()} == {"luxury", "standard", "budget"}
