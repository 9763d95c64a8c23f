"""Permissions as data: the actions an org's roles grant, carried in the caller's
token by org-service, and the one dependency each route names to require one.

org-service owns the roles and their grants; it writes the caller's grants into
the token's `permissions` claim. An AI agent holds only what its role grants, and
never `decisions.decide` unless its org's policy says so explicitly (the token's
`ai_may_decide` claim) - checked here again, so a mis-issued token cannot make an
agent a decider."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Annotated

from fastapi import Depends

from stayops_kit.errors import PermissionDenied


class Permission(StrEnum):
    """Every action a role can grant. README's permissions table lists who needs which."""

    TASKS_CREATE = "tasks.create"
    TASKS_ACT = "tasks.act"
    TASKS_MANAGE = "tasks.manage"
    DECISIONS_DECIDE = "decisions.decide"
    PRICES_PUBLISH = "prices.publish"
    WORKFLOWS_PUBLISH = "workflows.publish"
    RUNS_START = "runs.start"
    RUNS_CANCEL = "runs.cancel"
    AUTOMATIONS_MANAGE = "automations.manage"
    AGENTS_MANAGE = "agents.manage"


ALL_PERMISSIONS: frozenset[Permission] = frozenset(Permission)

# What an AI agent may never hold unless its org's policy grants it explicitly.
AGENT_RESERVED: frozenset[Permission] = frozenset({Permission.DECISIONS_DECIDE})


class MissingPermission(PermissionDenied):
    """The caller is in the org but their role does not grant the action."""

    title = "Permission missing"
    code = "permission-missing"

    def __init__(self, permission: Permission, detail: str | None = None) -> None:
        self.permission = permission
        super().__init__(
            detail
            or f"this needs the permission {permission.value!r}, which your role does not grant; "
            "ask an owner of your organisation to grant it to your role"
        )


def granted(claimed: Iterable[object], *, is_agent: bool, ai_may_decide: bool) -> frozenset[Permission]:
    """The permissions a caller holds: the known names among the claimed ones,
    less what an agent may not hold. Unknown names are ignored (a newer org-service
    may grant actions this service does not know yet)."""
    known = {p for p in Permission if p.value in {str(c) for c in claimed}}
    if is_agent and not ai_may_decide:
        known -= AGENT_RESERVED
    return frozenset(known)


def require(permission: Permission) -> Callable[..., object]:
    """A route dependency: the caller, if their role grants `permission`; else 403
    naming it. Use as `caller: Annotated[Caller, require(Permission.X)]`."""
    # Imported here: stayops_kit.api imports the runtime, which must not import routes.
    from stayops_kit.api import current_caller
    from stayops_kit.auth import Caller

    def check(caller: Caller) -> Caller:
        if permission not in caller.permissions:
            raise MissingPermission(permission)
        return caller

    # The annotation as an object, not as this module's postponed string: Caller and
    # current_caller are local names FastAPI could not resolve from the module.
    check.__annotations__ = {"caller": Annotated[Caller, Depends(current_caller)], "return": Caller}
    check.__name__ = f"require_{permission.name.lower()}"
    # Read by stayops_kit.problems to declare the route's 403 in OpenAPI.
    check.permission = permission  # type: ignore[attr-defined]
    return Depends(check)  # type: ignore[no-any-return]
