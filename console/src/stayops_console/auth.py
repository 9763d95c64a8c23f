"""Who is signed in: the org-service JWT in an HttpOnly, SameSite=Lax cookie, and a
double-submit CSRF token for every form that changes something.

The console does not verify the token's signature: every service does, on every
call, and a token they refuse signs the member out. It reads the claims only to say
who is signed in and which buttons to offer."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from stayops_infra.keys import KeyPair
from stayops_infra.orgsim import Org, OrgRegistry, member_token

TOKEN_COOKIE = "stayops_token"
CSRF_COOKIE = "stayops_csrf"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Member:
    """The signed-in member, as their token's claims describe them."""

    token: str
    user_id: str
    org_id: str
    role_id: str
    department_id: str | None
    user_type: str
    permissions: frozenset[str]

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def is_owner(self) -> bool:
        """Org owners and admins: the only members who may redrive dead letters."""
        return self.role_id in ("owner", "admin")


class BadToken(ValueError):
    pass


def member_of(token: str) -> Member:
    """The claims of an org-service JWT (signature checked by the services, not here)."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise BadToken(f"not an org-service token: {exc}") from exc
    missing = [name for name in ("sub", "org_id", "role_id") if not claims.get(name)]
    if missing:
        raise BadToken(f"the token has no {', '.join(missing)} claim")
    return Member(
        token=token,
        user_id=str(claims["sub"]),
        org_id=str(claims["org_id"]),
        role_id=str(claims["role_id"]),
        department_id=claims.get("department_id"),
        user_type=str(claims.get("user_type") or "human"),
        permissions=frozenset(str(p) for p in claims.get("permissions") or ()),
    )


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(cookie: str | None, submitted: str | None) -> bool:
    return bool(cookie) and bool(submitted) and hmac.compare_digest(str(cookie), str(submitted))


@dataclass(frozen=True)
class DevDirectory:
    """In dev: the org-service simulator's registry and signing key, so a developer
    signs in by picking a seeded member."""

    registry_file: Path
    private_key_file: Path
    ttl_s: int

    def orgs(self) -> list[Org]:
        return OrgRegistry(self.registry_file).all()

    def token_for(self, org_id: str, user_id: str) -> str:
        org = OrgRegistry(self.registry_file).get(org_id)
        member = org.member(user_id)
        keys = KeyPair(self.private_key_file, self.private_key_file.with_name("jwt-public.pem"))
        return member_token(keys, org, member, ttl_s=self.ttl_s)

    def names(self) -> dict[str, str]:
        """user id -> display name, over every org of the registry."""
        try:
            return {m.user_id: m.display_name for org in self.orgs() for m in org.members}
        except (OSError, ValueError, KeyError):
            return {}
