"""Where the embedded stack keeps its state and which ports it listens on, read from env."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PG_PORT = 55432
DEFAULT_KAFKA_PORT = 9092
KAFKA_VERSION = "4.1.1"


def default_kafka_cache() -> Path:
    """STAYOPS_KAFKA_CACHE, else a per-user cache shared by every checkout and test run."""
    cache = os.environ.get("STAYOPS_KAFKA_CACHE")
    if cache:
        return Path(cache).expanduser().absolute()
    return Path.home() / ".cache" / "stayops" / f"kafka-{KAFKA_VERSION}"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a port number, got {raw!r}") from None


@dataclass(frozen=True)
class StackConfig:
    """Locations and ports of one embedded stack; tests build their own with free ports."""

    data_dir: Path
    pg_port: int = DEFAULT_PG_PORT
    kafka_port: int = DEFAULT_KAFKA_PORT
    kafka_cache: Path = field(default_factory=lambda: default_kafka_cache())

    @classmethod
    def from_env(cls) -> StackConfig:
        """STAYOPS_DATA_DIR (default ./.stayops), STAYOPS_PG_PORT, STAYOPS_KAFKA_PORT,
        STAYOPS_KAFKA_CACHE."""
        return cls(
            data_dir=Path(os.environ.get("STAYOPS_DATA_DIR") or ".stayops").absolute(),
            pg_port=_env_int("STAYOPS_PG_PORT", DEFAULT_PG_PORT),
            kafka_port=_env_int("STAYOPS_KAFKA_PORT", DEFAULT_KAFKA_PORT),
            kafka_cache=default_kafka_cache(),
        )

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def controller_port(self) -> int:
        return self.kafka_port + 1

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"


def bootstrap_servers_from_env(config: StackConfig | None = None) -> str:
    """The broker a client command talks to: STAYOPS_KAFKA_BOOTSTRAP_SERVERS, else the stack's."""
    explicit = os.environ.get("STAYOPS_KAFKA_BOOTSTRAP_SERVERS")
    if explicit:
        return explicit
    return (config or StackConfig.from_env()).kafka_bootstrap
