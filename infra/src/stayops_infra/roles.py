"""The role templates of the org-service simulator: what each role of a seeded
org grants. org-service owns roles; it writes a member's grants into their token
(`permissions`), where every service checks them (`stayops_kit.permissions`)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from stayops_kit.permissions import ALL_PERMISSIONS, Permission

P = Permission

ROLE_TEMPLATES: Mapping[str, frozenset[Permission]] = MappingProxyType({
    # The owner may do everything.
    "owner": ALL_PERMISSIONS,
    # A revenue manager prices: decides proposals and publishes them, starts and
    # cancels pricing runs. An AI agent in this role never decides (the kit drops
    # `decisions.decide` for agents unless the org's policy allows it).
    "revenue-manager": frozenset({P.TASKS_CREATE, P.TASKS_ACT, P.TASKS_MANAGE, P.DECISIONS_DECIDE, P.PRICES_PUBLISH,
                                  P.RUNS_START, P.RUNS_CANCEL}),
    # Operations run the team's queues: they edit, reassign, cancel and reopen tasks.
    "operations": frozenset({P.TASKS_CREATE, P.TASKS_ACT, P.TASKS_MANAGE}),
    "guest-relations": frozenset({P.TASKS_CREATE, P.TASKS_ACT}),
    # Anyone else in an org can work on the tasks given to them, and nothing more.
    "member": frozenset({P.TASKS_ACT}),
})


def grants_of(role_id: str) -> frozenset[str]:
    """The permission names a role's template grants; an unknown role: a member's."""
    return frozenset(p.value for p in ROLE_TEMPLATES.get(role_id, ROLE_TEMPLATES["member"]))
