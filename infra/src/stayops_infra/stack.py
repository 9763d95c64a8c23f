"""The embedded stack: PostgreSQL with the service databases, a broker, topics and keys."""

from __future__ import annotations

from collections.abc import Callable

from stayops_infra.config import StackConfig
from stayops_infra.errors import JavaNotFound
from stayops_infra.kafka.broker import ApacheKafka
from stayops_infra.kafka.jars import find_java
from stayops_infra.kafka.process import Broker
from stayops_infra.kafka.tansu import TansuBroker
from stayops_infra.keys import KeyPair, ensure_keys
from stayops_infra.postgres import EmbeddedPostgres
from stayops_infra.topics import provision_topics

SERVICE_DATABASES = ("task_service", "workflow_service", "automation_service", "agent_service")

Notify = Callable[[str], None]


def _ignore(_: str) -> None:
    return None


def choose_broker(config: StackConfig, allow_tansu: bool, notify: Notify = _ignore) -> Broker:
    """Apache Kafka when a JDK is present; otherwise Tansu if allowed, saying so loudly."""
    try:
        return ApacheKafka(config, find_java())
    except JavaNotFound as exc:
        if not allow_tansu:
            raise
        notify(
            f"{exc}. Falling back to Tansu: memory storage (events are lost when it stops), "
            "no idempotent producer. Install a JDK 17+ to run Apache Kafka."
        )
        return TansuBroker(config)


def tansu_is_running(config: StackConfig) -> bool:
    """Whether this data dir's broker is the Tansu fallback (clients then skip idempotence)."""
    return TansuBroker(config).is_running()


class EmbeddedStack:
    """Starts in dependency order (PostgreSQL, broker, topics) and stops in reverse."""

    def __init__(self, config: StackConfig, *, allow_tansu: bool = True, notify: Notify = _ignore) -> None:
        self.config = config
        self.postgres = EmbeddedPostgres(config.data_dir, config.pg_port)
        self._allow_tansu = allow_tansu
        self._notify = notify
        self._broker: Broker | None = None

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            self._broker = choose_broker(self.config, self._allow_tansu, self._notify)
        return self._broker

    @property
    def keys(self) -> KeyPair:
        return ensure_keys(self.config.keys_dir)

    async def start(self, broker_timeout_s: float = 120) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_keys(self.config.keys_dir)
        self._notify(f"PostgreSQL on 127.0.0.1:{self.config.pg_port}")
        self.postgres.start()
        await self.postgres.ensure_databases(SERVICE_DATABASES)
        self._notify(f"{self.broker.description} on {self.broker.bootstrap}")
        self.broker.start()
        await self.broker.wait_ready(broker_timeout_s)
        await provision_topics(self.broker.bootstrap)

    def stop(self) -> None:
        """Stop whatever broker runs for this data dir (either kind), then PostgreSQL."""
        for broker in (ApacheKafka(self.config), TansuBroker(self.config)):
            broker.stop()
        self.postgres.stop()
