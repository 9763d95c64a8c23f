"""Mint org-service JWTs (RS256) with the claims every StayOps service verifies."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt

from stayops_kit.settings import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER

UserType = Literal["human", "ai_agent"]
ALGORITHM = "RS256"


def mint_token(
    private_key_pem: str,
    *,
    org_id: str,
    user_id: str,
    role_id: str,
    department_id: str | None = None,
    user_type: UserType = "human",
    permissions: Iterable[str] | None = None,
    ai_may_decide: bool = False,
    ttl_s: int = 3600,
    issuer: str = DEFAULT_JWT_ISSUER,
    audience: str = DEFAULT_JWT_AUDIENCE,
    now: datetime | None = None,
) -> str:
    """A signed token for one member of one org, valid for `ttl_s` seconds. Without
    `permissions` the token carries what the role's template grants (`roles`)."""
    from stayops_infra.roles import grants_of

    granted = sorted(set(permissions) if permissions is not None else grants_of(role_id))
    if user_type not in ("human", "ai_agent"):
        raise ValueError(f"user_type must be 'human' or 'ai_agent', not {user_type!r}")
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    claims = {
        "sub": user_id,
        "org_id": org_id,
        "department_id": department_id,
        "role_id": role_id,
        "user_type": user_type,
        "permissions": granted,
        "ai_may_decide": ai_may_decide,
        "iat": issued,
        "exp": issued + timedelta(seconds=ttl_s),
        "iss": issuer,
        "aud": audience,
    }
    return jwt.encode(claims, private_key_pem, algorithm=ALGORITHM)


def verify_token(
    token: str,
    public_key_pem: str,
    *,
    issuer: str = DEFAULT_JWT_ISSUER,
    audience: str = DEFAULT_JWT_AUDIENCE,
) -> dict[str, object]:
    """Decode and check a token the way a service does (used by tests and `stayops` itself)."""
    claims: dict[str, object] = jwt.decode(
        token,
        public_key_pem,
        algorithms=[ALGORITHM],
        issuer=issuer,
        audience=audience,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )
    return claims
