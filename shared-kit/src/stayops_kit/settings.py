"""Service settings, read once at start-up from `STAYOPS_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_JWT_ISSUER = "stayops-org-service"
DEFAULT_JWT_AUDIENCE = "stayops"

# Which broker the services talk to: Apache Kafka (the stack's and docker-compose's)
# or the embedded stack's Tansu fallback.
BrokerKind = Literal["kafka", "tansu"]

# How long a consumer's fetch may wait at the broker for data. Apache Kafka answers a
# fetch as soon as one byte arrives (fetch_min_bytes 1), so a long wait costs no
# latency and spares a quiet consumer ~100 empty fetches a second; Tansu holds a
# fetch for the whole wait, which a saga pays at every hop, so there it is short.
FETCH_MAX_WAIT_MS: dict[BrokerKind, int] = {"kafka": 500, "tansu": 10}


class ServiceSettings(BaseSettings):
    """What a service needs to run. Every field maps to `STAYOPS_<NAME>`.

    The JWT public key comes either inline (`STAYOPS_JWT_PUBLIC_KEY`, PEM) or from a
    file (`STAYOPS_JWT_PUBLIC_KEY_FILE`); the services never see the private key.
    """

    model_config = SettingsConfigDict(env_prefix="STAYOPS_", extra="ignore")

    service_name: str
    database_url: str = Field(
        description="postgresql+asyncpg://user@host:port/database of this service's own database"
    )
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_broker: BrokerKind = "kafka"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    jwt_public_key: str | None = None
    jwt_public_key_file: Path | None = None
    jwt_issuer: str = DEFAULT_JWT_ISSUER
    jwt_audience: str = DEFAULT_JWT_AUDIENCE
    jwt_algorithms: tuple[str, ...] = ("RS256", "ES256")
    service_api_key: SecretStr = SecretStr("dev-internal-key")
    relay_poll_interval_s: float = 1.0
    relay_batch_size: int = 500
    consumer_max_records: int = 200
    # None: the broker's default (FETCH_MAX_WAIT_MS).
    consumer_fetch_max_wait_ms: int | None = Field(default=None, ge=0)
    consumer_max_attempts: int = 5
    outbox_retention_days: int = 30
    # The claim check (stayops_kit.claims): results above the limit are stored by
    # the service that made them and fetched from it by URL.
    result_inline_limit_bytes: int = Field(default=64 * 1024, ge=1024)
    agent_service_url: str = "http://127.0.0.1:8004"
    result_fetch_timeout_s: float = 10.0
    log_level: str = "INFO"
    log_json: bool = True
    run_migrations: bool = True

    @model_validator(mode="after")
    def _public_key_present(self) -> ServiceSettings:
        if self.jwt_public_key is None and self.jwt_public_key_file is None:
            raise ValueError(
                "set STAYOPS_JWT_PUBLIC_KEY (PEM) or STAYOPS_JWT_PUBLIC_KEY_FILE (path): "
                "services verify tokens with the org-service public key"
            )
        return self

    def fetch_max_wait_ms(self) -> int:
        """The consumer's fetch wait: as set, or the default for the broker in use."""
        if self.consumer_fetch_max_wait_ms is not None:
            return self.consumer_fetch_max_wait_ms
        return FETCH_MAX_WAIT_MS[self.kafka_broker]

    def public_key_pem(self) -> str:
        if self.jwt_public_key is not None:
            return self.jwt_public_key
        assert self.jwt_public_key_file is not None
        return self.jwt_public_key_file.read_text()
