"""The org-service simulator's RSA key pair, generated once under `<data_dir>/keys/`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass(frozen=True)
class KeyPair:
    """Paths of the PEM files: services get the public one, only the simulator the private."""

    private_key: Path
    public_key: Path

    def private_pem(self) -> str:
        return self.private_key.read_text()

    def public_pem(self) -> str:
        return self.public_key.read_text()


def ensure_keys(keys_dir: Path) -> KeyPair:
    """Return the key pair in `keys_dir`, generating it on first use."""
    pair = KeyPair(keys_dir / "jwt-private.pem", keys_dir / "jwt-public.pem")
    if pair.private_key.exists() and pair.public_key.exists():
        return pair
    keys_dir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Written under temporary names and renamed, so a crash never leaves half a pair.
    for target, content, mode in (
        (pair.private_key, private_pem, 0o600),
        (pair.public_key, public_pem, 0o644),
    ):
        partial = target.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        partial.replace(target)
    return pair
