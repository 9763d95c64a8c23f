"""JWT verification with the org-service public key, and the caller it yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import jwt

from stayops_kit.errors import Unauthorized
from stayops_kit.permissions import Permission, granted

REQUIRED_CLAIMS = ("sub", "org_id", "exp", "iss", "aud", "user_type")


class UserType(StrEnum):
    HUMAN = "human"
    AI_AGENT = "ai_agent"


@dataclass(frozen=True)
class Caller:
    """Who is calling: a person or an AI agent, always inside one org."""

    user_id: str
    org_id: str
    user_type: UserType
    department_id: str | None = None
    role_id: str | None = None
    permissions: frozenset[Permission] = field(default_factory=frozenset)

    @property
    def is_agent(self) -> bool:
        return self.user_type is UserType.AI_AGENT

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions


class JwtVerifier:
    """Verifies RS256/ES256 tokens with a key we were configured with, never one
    named by the token; `alg: none` and HMAC algorithms are refused."""

    def __init__(
        self, public_key_pem: str, *, issuer: str, audience: str, algorithms: tuple[str, ...]
    ) -> None:
        unsafe = [a for a in algorithms if not a.startswith(("RS", "ES", "PS"))]
        if unsafe:
            raise ValueError(f"only asymmetric JWT algorithms are allowed, not {unsafe}")
        self._key = public_key_pem
        self._issuer = issuer
        self._audience = audience
        self._algorithms = list(algorithms)

    def verify(self, token: str) -> Caller:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized("the token is not meant for StayOps (wrong audience)") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized("the token was not issued by org-service") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        try:
            user_type = UserType(claims["user_type"])
        except ValueError as exc:
            raise Unauthorized("user_type must be 'human' or 'ai_agent'") from exc
        claimed = claims.get("permissions") or []
        if not isinstance(claimed, list):
            raise Unauthorized("the permissions claim must be a list of permission names")
        return Caller(
            user_id=str(claims["sub"]),
            org_id=str(claims["org_id"]),
            user_type=user_type,
            department_id=_optional(claims.get("department_id")),
            role_id=_optional(claims.get("role_id")),
            permissions=granted(claimed, is_agent=user_type is UserType.AI_AGENT,
                                ai_may_decide=claims.get("ai_may_decide") is True),
        )


def _optional(value: object) -> str | None:
    return None if value in (None, "") else str(value)
