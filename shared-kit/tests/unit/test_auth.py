"""JWT verification refuses every token that is not ours, valid and current."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from stayops_kit.auth import JwtVerifier, UserType
from stayops_kit.errors import Unauthorized

ISSUER, AUDIENCE = "stayops-org-service", "stayops"


def _rsa_pair() -> tuple[Any, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return key, public


PRIVATE, PUBLIC = _rsa_pair()
OTHER_PRIVATE, _ = _rsa_pair()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "u1", "org_id": "o1", "department_id": "d1", "role_id": "owner",
        "user_type": "human", "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE,
    }
    base.update(overrides)
    return base


def verifier(public: str = PUBLIC) -> JwtVerifier:
    return JwtVerifier(public, issuer=ISSUER, audience=AUDIENCE, algorithms=("RS256", "ES256"))


def test_a_valid_token_yields_the_caller() -> None:
    caller = verifier().verify(jwt.encode(claims(user_type="ai_agent"), PRIVATE, algorithm="RS256"))
    assert (caller.user_id, caller.org_id) == ("u1", "o1")
    assert (caller.role_id, caller.department_id) == ("owner", "d1")
    assert caller.user_type is UserType.AI_AGENT


def test_es256_tokens_are_accepted_with_an_ec_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    assert verifier(public).verify(jwt.encode(claims(), key, algorithm="ES256")).org_id == "o1"


@pytest.mark.parametrize(
    ("token_of", "reason"),
    [
        (lambda: jwt.encode(claims(), OTHER_PRIVATE, algorithm="RS256"), "invalid token"),
        (lambda: jwt.encode(claims(exp=int(time.time()) - 5), PRIVATE, algorithm="RS256"), "expired"),
        (lambda: jwt.encode(claims(aud="someone-else"), PRIVATE, algorithm="RS256"), "audience"),
        (lambda: jwt.encode(claims(iss="evil"), PRIVATE, algorithm="RS256"), "org-service"),
        (lambda: jwt.encode(claims(user_type="robot"), PRIVATE, algorithm="RS256"), "user_type"),
        (lambda: jwt.encode({k: v for k, v in claims().items() if k != "org_id"}, PRIVATE,
                            algorithm="RS256"), "org_id"),
        (lambda: "not-a-jwt", "invalid token"),
    ],
    ids=["wrong-key", "expired", "wrong-audience", "wrong-issuer", "bad-user-type", "no-org",
         "garbage"],
)
def test_bad_tokens_are_refused(token_of: Any, reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        verifier().verify(token_of())


def test_alg_none_is_refused() -> None:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    with pytest.raises(Unauthorized):
        verifier().verify(token)


def test_an_hmac_token_signed_with_the_public_key_is_refused() -> None:
    # The classic key-confusion attack: HS256 with the public key as the secret.
    header = {"alg": "HS256", "typ": "JWT"}
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
    signature = hmac.new(PUBLIC.encode(), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(Unauthorized):
        verifier().verify(f"{signing_input}.{b64(signature)}")


def test_symmetric_algorithms_cannot_be_configured() -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        JwtVerifier(PUBLIC, issuer=ISSUER, audience=AUDIENCE, algorithms=("HS256",))
