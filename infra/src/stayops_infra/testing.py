"""pytest plugin: a session-wide stack (embedded PostgreSQL + Apache Kafka) and service processes.

Enable with `pytest_plugins = ["stayops_infra.testing"]`. The `stack` fixture starts the
embedded stack on free ports in a temporary data dir, so it never collides with a dev
`stayops up`. With `STAYOPS_TEST_INFRA=testcontainers` (and `stayops-infra[containers]`
installed, Docker running) it starts Kafka and PostgreSQL containers instead. The
`spans` fixture records this process's spans in memory, for tests of trace context.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from stayops_infra.config import StackConfig, default_kafka_cache
from stayops_infra.errors import JavaNotFound, StackError
from stayops_infra.keys import KeyPair, ensure_keys
from stayops_infra.ports import free_port, free_port_pair
from stayops_infra.postgres import SUPERUSER, create_database
from stayops_infra.services import ServiceProcess, service_env
from stayops_infra.stack import EmbeddedStack
from stayops_infra.tokens import UserType, mint_token
from stayops_infra.topics import provision_topics
from stayops_kit import tracing

__all__ = ["ServiceProcess", "TestStack", "free_port", "free_port_pair", "service_process", "spans", "stack"]

T = TypeVar("T")
INFRA_ENV = "STAYOPS_TEST_INFRA"


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop,
    on a thread of its own (fixtures may be set up while pytest-asyncio's loop runs)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=target, name="stayops-stack")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


class _Backend(Protocol):
    async def stop_kafka(self) -> None: ...
    async def start_kafka(self) -> None: ...
    async def stop_postgres(self) -> None: ...
    async def start_postgres(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class TestStack:
    """What tests get from the `stack` fixture."""

    __test__ = False  # not a test class, despite the name

    kafka_bootstrap: str
    pg_port: int
    data_dir: Path
    keys: KeyPair
    pg_host: str = "127.0.0.1"
    pg_user: str = SUPERUSER
    pg_password: str | None = None
    _backend: _Backend | None = field(default=None, repr=False)

    @property
    def jwt_private_key_file(self) -> Path:
        return self.keys.private_key

    @property
    def jwt_public_key_file(self) -> Path:
        return self.keys.public_key

    def database_url(self, dbname: str) -> str:
        secret = f":{self.pg_password}" if self.pg_password else ""
        return f"postgresql+asyncpg://{self.pg_user}{secret}@{self.pg_host}:{self.pg_port}/{dbname}"

    async def create_database(self, name: str) -> str:
        """Create a fresh, empty database and return its URL."""
        await create_database(self.pg_port, name, host=self.pg_host, user=self.pg_user, password=self.pg_password)
        return self.database_url(name)

    def mint_token(
        self,
        org: str,
        user: str,
        role: str,
        department: str | None = None,
        user_type: UserType = "human",
        ttl: int = 3600,
        permissions: Iterable[str] | None = None,
        ai_may_decide: bool = False,
    ) -> str:
        """A token for `user` in `org`; its permissions are the role template's
        (`stayops_infra.roles`) unless `permissions` names them."""
        return mint_token(
            self.keys.private_pem(),
            org_id=org,
            user_id=user,
            role_id=role,
            department_id=department,
            user_type=user_type,
            permissions=permissions,
            ai_may_decide=ai_may_decide,
            ttl_s=ttl,
        )

    def service_env(self, service_name: str, database_url: str, http_port: int) -> dict[str, str]:
        return service_env(
            service_name,
            database_url=database_url,
            http_port=http_port,
            kafka_bootstrap=self.kafka_bootstrap,
            jwt_public_key_file=self.keys.public_key,
        )

    async def stop_kafka(self) -> None:
        """Stop the broker cleanly; its data stays on disk for `start_kafka`."""
        assert self._backend is not None
        await self._backend.stop_kafka()

    async def start_kafka(self) -> None:
        """Start the broker again on the same port and wait until it answers."""
        assert self._backend is not None
        await self._backend.start_kafka()

    async def stop_postgres(self) -> None:
        """Fast shutdown (`pg_ctl stop -m fast`): sessions end, committed data stays."""
        assert self._backend is not None
        await self._backend.stop_postgres()

    async def start_postgres(self) -> None:
        """Start PostgreSQL again on the same port and wait until it accepts connections."""
        assert self._backend is not None
        await self._backend.start_postgres()

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


class _EmbeddedBackend:
    def __init__(self, embedded: EmbeddedStack) -> None:
        self.embedded = embedded

    async def stop_kafka(self) -> None:
        await asyncio.to_thread(self.embedded.broker.stop)

    async def start_kafka(self) -> None:
        await asyncio.to_thread(self.embedded.broker.start)
        await self.embedded.broker.wait_ready()

    async def stop_postgres(self) -> None:
        await asyncio.to_thread(self.embedded.postgres.stop)

    async def start_postgres(self) -> None:
        await asyncio.to_thread(self.embedded.postgres.start)

    def close(self) -> None:
        self.embedded.stop()


def start_embedded_stack(data_dir: Path) -> TestStack:
    """Embedded PostgreSQL + Apache Kafka on free ports; refuses the Tansu fallback."""
    config = StackConfig(
        data_dir=data_dir,
        pg_port=free_port(),
        kafka_port=free_port_pair(),
        kafka_cache=default_kafka_cache(),
    )
    embedded = EmbeddedStack(config, allow_tansu=False)
    try:
        run_blocking(embedded.start())
    except JavaNotFound as exc:
        embedded.stop()
        raise StackError(
            f"the test suite runs on Apache Kafka, not the Tansu fallback: {exc}. "
            f"Or set {INFRA_ENV}=testcontainers to use Docker."
        ) from exc
    except BaseException:
        embedded.stop()
        raise
    return TestStack(
        kafka_bootstrap=config.kafka_bootstrap,
        pg_port=config.pg_port,
        data_dir=data_dir,
        keys=embedded.keys,
        _backend=_EmbeddedBackend(embedded),
    )


class _ContainersBackend:
    def __init__(self, kafka: Any, postgres: Any) -> None:
        self.kafka = kafka
        self.postgres = postgres

    async def stop_kafka(self) -> None:
        # A restarted container gets a new host port and the advertised listener goes stale.
        raise StackError("restarting the broker needs the embedded stack (unset STAYOPS_TEST_INFRA)")

    async def start_kafka(self) -> None:
        await self.stop_kafka()

    async def stop_postgres(self) -> None:
        raise StackError("restarting PostgreSQL needs the embedded stack (unset STAYOPS_TEST_INFRA)")

    async def start_postgres(self) -> None:
        await self.stop_postgres()

    def close(self) -> None:
        self.kafka.stop()
        self.postgres.stop()


def start_container_stack(data_dir: Path) -> TestStack:
    """Kafka (KRaft) and PostgreSQL in Docker through testcontainers; images overridable
    with STAYOPS_TEST_KAFKA_IMAGE and STAYOPS_TEST_POSTGRES_IMAGE."""
    try:
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer
    except ImportError as exc:
        raise StackError(
            f"{INFRA_ENV}=testcontainers needs `uv sync --extra containers` (testcontainers[kafka,postgres]) and Docker"
        ) from exc
    kafka = KafkaContainer(os.environ.get("STAYOPS_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.9.0")).with_kraft()
    postgres = PostgresContainer(
        os.environ.get("STAYOPS_TEST_POSTGRES_IMAGE", "postgres:17"),
        username=SUPERUSER,
        password="postgres",
        dbname="postgres",
    )
    kafka.start()
    try:
        postgres.start()
    except BaseException:
        kafka.stop()
        raise
    handle = TestStack(
        kafka_bootstrap=kafka.get_bootstrap_server(),
        pg_port=int(postgres.get_exposed_port(5432)),
        pg_host=postgres.get_container_host_ip(),
        pg_password="postgres",
        data_dir=data_dir,
        keys=ensure_keys(data_dir / "keys"),
        _backend=_ContainersBackend(kafka, postgres),
    )
    try:
        run_blocking(provision_topics(handle.kafka_bootstrap))
    except BaseException:
        handle.close()
        raise
    return handle


def start_test_stack(data_dir: Path) -> TestStack:
    mode = os.environ.get(INFRA_ENV, "embedded")
    if mode == "testcontainers":
        return start_container_stack(data_dir)
    if mode != "embedded":
        raise StackError(f"{INFRA_ENV} must be 'embedded' or 'testcontainers', not {mode!r}")
    return start_embedded_stack(data_dir)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestStack]:
    """PostgreSQL + Apache Kafka with the catalog's topics, once per test session."""
    handle = start_test_stack(tmp_path_factory.mktemp("stayops-stack"))
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture
def service_process(tmp_path: Path) -> Iterator[Any]:
    """A factory `service_process(name, env) -> ServiceProcess` (started); every process
    it made is terminated after the test. Output is in `<tmp_path>/<name>.log`."""
    started: list[ServiceProcess] = []

    def launch(name: str, env: dict[str, str]) -> ServiceProcess:
        process = ServiceProcess(name, env, log_file=tmp_path / f"{name}.log")
        process.start()
        started.append(process)
        return process

    yield launch
    for process in started:
        process.terminate()


@pytest.fixture
def spans() -> Iterator[Any]:
    """This process's spans, recorded in memory from here on (the provider stays
    installed for the session; what it recorded is dropped after the test)."""
    exporter = tracing.record_in_memory()
    exporter.clear()
    yield exporter
    exporter.clear()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stack: needs the embedded PostgreSQL and Apache Kafka")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the stack get the `stack` marker, so `-m "not stack"` skips them."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)
