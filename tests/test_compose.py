"""The production shape: docker-compose.yml, the service Dockerfiles and the topic job.

The compose file is validated by `docker compose config -q` (Compose v2) or
`docker-compose config -q` (Compose v1, Debian package `docker-compose`); neither
needs a running Docker engine. Its structure is checked with PyYAML.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = "infra/docker/service.Dockerfile"
PROVISION_SCRIPT = ROOT / "infra" / "docker" / "provision_topics.py"
TOPICS_JOB = "topics-init"

# service -> (python package, port)
SERVICES: dict[str, tuple[str, int]] = {
    "task-service": ("task_service", 8001),
    "workflow-service": ("workflow_service", 8002),
    "automation-service": ("automation_service", 8003),
    "agent-service": ("agent_service", 8004),
}

# What the compose file requires from the environment, with throwaway values.
REQUIRED_ENV = {
    "STAYOPS_POSTGRES_PASSWORD": "compose-test-password",
    "STAYOPS_SERVICE_API_KEY": "compose-test-key",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    """`depends_on` as {service: condition}; the short list form means service_started."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _named_volumes(service: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    declared = set(compose.get("volumes") or {})
    names = []
    for volume in service.get("volumes") or []:
        source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
        if source in declared:
            names.append(source)
    return names


def _database_host(service: dict[str, Any]) -> tuple[str, str]:
    url = urlsplit(_environment(service)["STAYOPS_DATABASE_URL"])
    assert url.scheme == "postgresql+asyncpg", url.scheme
    assert url.hostname, "STAYOPS_DATABASE_URL has no host"
    return url.hostname, url.path.lstrip("/")


# -- validation by the compose tool ------------------------------------------------


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=60, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def _run_config(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_config_is_valid() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip(
            "neither `docker compose` (Compose v2 plugin) nor `docker-compose` (Debian package "
            "docker-compose) is installed: cannot run `config -q` on docker-compose.yml"
        )
    env = {**os.environ, **REQUIRED_ENV}
    result = _run_config(command, env)
    assert result.returncode == 0, f"{' '.join(command)} config -q failed:\n{result.stderr}"

    # The secrets have no defaults: without them the file does not resolve.
    for name in REQUIRED_ENV:
        without = {key: value for key, value in env.items() if key != name}
        missing = _run_config(command, without)
        assert missing.returncode != 0, f"config resolved without {name}"
        assert name in missing.stderr


# -- structure -----------------------------------------------------------------------


def test_kafka_is_a_single_kraft_node(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = _environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in env["KAFKA_LISTENERS"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "test" in kafka["healthcheck"]
    volumes = _named_volumes(kafka, compose)
    assert len(volumes) == 1
    assert any(v.endswith(":" + env["KAFKA_LOG_DIRS"]) for v in kafka["volumes"])


def test_topic_job_is_one_shot_from_the_task_service_image(services: dict[str, dict[str, Any]]) -> None:
    job = services[TOPICS_JOB]
    assert job["build"]["dockerfile"] == DOCKERFILE
    assert job["image"] == services["task-service"]["image"]
    assert str(job.get("restart", "no")) == "no"
    assert _depends_on(job) == {"kafka": "service_healthy"}
    assert _environment(job)["STAYOPS_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"

    # The job runs the script the task-service image carries.
    script_in_image = next(part for part in job["command"] if part.endswith("provision_topics.py"))
    dockerfile = (ROOT / DOCKERFILE).read_text()
    assert f"COPY infra/docker/provision_topics.py {script_in_image}" in dockerfile
    assert PROVISION_SCRIPT.is_file()
    assert "all_topics" in PROVISION_SCRIPT.read_text()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service(name: str, compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    _, port = SERVICES[name]
    service = services[name]
    assert service["build"] == {"context": ".", "dockerfile": DOCKERFILE,
                                "args": {"SERVICE": name, "PORT": str(port)}}
    assert [str(p) for p in service["ports"]] == [f"{port}:{port}"]

    env = _environment(service)
    assert env["STAYOPS_HTTP_HOST"] == "0.0.0.0"
    assert env["STAYOPS_HTTP_PORT"] == str(port)
    assert env["STAYOPS_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "STAYOPS_SERVICE_API_KEY" in env
    key_file = env["STAYOPS_JWT_PUBLIC_KEY_FILE"]
    secrets = [s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])]
    assert [f"/run/secrets/{s}" for s in secrets] == [key_file]
    assert set(secrets) <= set(compose["secrets"])

    deps = _depends_on(service)
    assert deps[TOPICS_JOB] == "service_completed_successfully"
    assert deps["kafka"] == "service_healthy"

    # Its own PostgreSQL: the database URL's host is a postgres service it waits for,
    # and the database named in the URL is the one that container creates.
    host, database = _database_host(service)
    db = services[host]
    assert db["image"].split(":")[0] == "postgres"
    assert deps[host] == "service_healthy"
    assert _environment(db)["POSTGRES_DB"] == database
    assert "pg_isready" in db["healthcheck"]["test"]
    assert len(_named_volumes(db, compose)) == 1


def test_each_service_has_its_own_database(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    hosts = {name: _database_host(services[name])[0] for name in SERVICES}
    assert len(set(hosts.values())) == len(SERVICES), hosts
    volumes = [tuple(_named_volumes(services[host], compose)) for host in hosts.values()]
    assert len(set(volumes)) == len(SERVICES), volumes
    postgres = {name for name, svc in services.items() if str(svc.get("image", "")).startswith("postgres:")}
    assert postgres == set(hosts.values())


def test_every_service_waits_for_the_topic_job(services: dict[str, dict[str, Any]]) -> None:
    waiting = {name for name, svc in services.items() if TOPICS_JOB in _depends_on(svc)}
    assert set(SERVICES) <= waiting


def test_one_dockerfile_builds_every_service() -> None:
    text = (ROOT / DOCKERFILE).read_text()
    assert "python:3.11-slim" in text
    assert 'pip install "uv==' in text
    assert "--package ${SERVICE}" in text
    assert "EXPOSE ${PORT}" in text
    assert "USER stayops" in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert "exec python -m" in text
    # The packages are installed editable from these directories, which keeps each
    # service's migrations/ where app.MIGRATIONS_DIR looks for it.
    for member in ("shared-schemas", "shared-kit", "${SERVICE}"):
        assert f"COPY {member}/ {member}/" in text
    for name in SERVICES:
        assert (ROOT / name / "migrations").is_dir()


def test_dockerignore_keeps_migrations() -> None:
    patterns = (ROOT / ".dockerignore").read_text().split()
    assert not any("migrations" in pattern for pattern in patterns)
    assert "**/.venv" in patterns


# -- the topic script against a real broker --------------------------------------------


@pytest.mark.stack
def test_provision_script_against_broker(stack: Any) -> None:
    """Idempotent run against the test broker (whose topics exist already): exit 0."""
    from aiokafka.admin import AIOKafkaAdminClient

    from stayops_infra.testing import run_blocking
    from stayops_schemas.catalog import all_topics

    env = {
        **os.environ,
        "STAYOPS_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "STAYOPS_TOPIC_PROVISION_TIMEOUT_S": "60",
    }
    result = subprocess.run(
        [sys.executable, str(PROVISION_SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr

    async def topics() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    assert {topic.name for topic in all_topics()} <= run_blocking(topics())
