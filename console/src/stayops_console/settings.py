"""The console's settings, read once at start-up from `STAYOPS_CONSOLE_*` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_NAMES = ("task-service", "workflow-service", "automation-service", "agent-service")


class ConsoleSettings(BaseSettings):
    """Where the four services answer, and, in dev, where the org-service simulator
    keeps its registry and its signing key (then the sign-in page lists the seeded
    members). Without `registry_file` the console only takes a pasted org-service JWT."""

    model_config = SettingsConfigDict(env_prefix="STAYOPS_CONSOLE_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    task_service_url: str = "http://127.0.0.1:8001"
    workflow_service_url: str = "http://127.0.0.1:8002"
    automation_service_url: str = "http://127.0.0.1:8003"
    agent_service_url: str = "http://127.0.0.1:8004"
    # Dev sign-in: the simulator's orgs.json and the private key it signs tokens with.
    registry_file: Path | None = None
    dev_private_key_file: Path | None = None
    dev_token_ttl_s: int = 12 * 3600
    # Dead letters: read straight from Kafka.
    kafka_bootstrap_servers: str | None = None
    # An operator's console may redrive: the dead-letter topic is shared by every org,
    # so a redrive sends back all orgs' parked records of the group. Off unless the
    # console is the platform operator's own (the local system turns it on).
    operator_redrive: bool = False
    # Send the cookies only over HTTPS (set in production, behind TLS).
    secure_cookies: bool = False
    request_timeout_s: float = 20.0

    def service_urls(self) -> dict[str, str]:
        return {
            "task-service": self.task_service_url.rstrip("/"),
            "workflow-service": self.workflow_service_url.rstrip("/"),
            "automation-service": self.automation_service_url.rstrip("/"),
            "agent-service": self.agent_service_url.rstrip("/"),
        }

    @property
    def dev_sign_in(self) -> bool:
        return self.registry_file is not None and self.dev_private_key_file is not None
