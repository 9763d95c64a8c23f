"""`stayops token` prints a JWT that a service verifies with the org-service public key."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner

from stayops_infra.cli import app
from stayops_infra.keys import ensure_keys
from stayops_infra.tokens import mint_token, verify_token


def test_token_command_output_verifies_with_the_public_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAYOPS_DATA_DIR", str(tmp_path))
    args = [
        "token",
        "--org",
        "org-1",
        "--user",
        "user-1",
        "--role",
        "revenue-manager",
        "--department",
        "dep-1",
        "--type",
        "ai_agent",
        "--ttl",
        "120",
    ]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    public_pem = (tmp_path / "keys" / "jwt-public.pem").read_text()
    claims = verify_token(result.stdout.strip(), public_pem)
    assert claims["sub"] == "user-1"
    assert claims["org_id"] == "org-1"
    assert claims["role_id"] == "revenue-manager"
    assert claims["department_id"] == "dep-1"
    assert claims["user_type"] == "ai_agent"
    assert claims["iss"] == "stayops-org-service"
    assert claims["aud"] == "stayops"
    assert int(str(claims["exp"])) - int(str(claims["iat"])) == 120


def test_keys_are_generated_once(tmp_path: Path) -> None:
    first = ensure_keys(tmp_path)
    pem = first.private_pem()

    assert ensure_keys(tmp_path).private_pem() == pem
    assert first.private_key.stat().st_mode & 0o077 == 0


def test_a_token_signed_by_another_key_is_rejected(tmp_path: Path) -> None:
    ours = ensure_keys(tmp_path / "ours")
    theirs = ensure_keys(tmp_path / "theirs")
    token = mint_token(theirs.private_pem(), org_id="o", user_id="u", role_id="owner")

    with pytest.raises(jwt.InvalidSignatureError):
        verify_token(token, ours.public_pem())


def test_an_unknown_user_type_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAYOPS_DATA_DIR", str(tmp_path))
    args = ["token", "--org", "o", "--user", "u", "--role", "owner", "--type", "robot"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code != 0
    assert "robot" in result.output
