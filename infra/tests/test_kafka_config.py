"""The broker configuration the embedded stack writes, and how services are told which broker runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stayops_infra.config import StackConfig
from stayops_infra.kafka.broker import ApacheKafka, new_cluster_id, server_properties
from stayops_infra.kafka.tansu import TansuBroker
from stayops_infra.services import service_env
from stayops_kit.settings import ServiceSettings


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_single_node_kraft_settings(tmp_path: Path) -> None:
    config = StackConfig(data_dir=tmp_path, kafka_port=19092, kafka_cache=tmp_path / "cache")

    settings = _properties(server_properties(config, tmp_path / "kafka" / "data"))

    assert settings["process.roles"] == "broker,controller"
    # --standalone formatting requires the bootstrap-servers form, not static voters.
    assert settings["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert "controller.quorum.voters" not in settings
    assert settings["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert settings["auto.create.topics.enable"] == "false"
    assert settings["offsets.topic.replication.factor"] == "1"
    assert settings["transaction.state.log.min.isr"] == "1"
    assert settings["group.initial.rebalance.delay.ms"] == "0"


def test_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {new_cluster_id() for _ in range(50)}

    assert len(ids) == 50
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ServiceSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return ServiceSettings()  # type: ignore[call-arg]  # every field comes from the environment


@pytest.mark.parametrize(("broker", "wait_ms"), [(ApacheKafka, 500), (TansuBroker, 10)])
def test_services_long_poll_on_kafka_and_not_on_tansu(
    broker: type[ApacheKafka | TansuBroker], wait_ms: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kafka answers a fetch when data arrives, so a long wait only spares empty fetches;
    # Tansu holds a fetch for the whole wait, a delay at every hop of a saga.
    monkeypatch.delenv("STAYOPS_CONSUMER_FETCH_MAX_WAIT_MS", raising=False)
    env = service_env("task-service", database_url="postgresql+asyncpg://x@127.0.0.1/task_service",
                      http_port=8001, kafka_bootstrap="127.0.0.1:9092",
                      jwt_public_key_file=tmp_path / "public.pem", kafka_broker=broker.kind)

    assert _settings_from(env, monkeypatch).fetch_max_wait_ms() == wait_ms


def test_the_fetch_wait_can_be_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = service_env("task-service", database_url="postgresql+asyncpg://x@127.0.0.1/task_service",
                      http_port=8001, kafka_bootstrap="127.0.0.1:9092",
                      jwt_public_key_file=tmp_path / "public.pem", kafka_broker="kafka")

    assert _settings_from({**env, "STAYOPS_CONSUMER_FETCH_MAX_WAIT_MS": "50"}, monkeypatch).fetch_max_wait_ms() == 50
