"""The broker configuration the embedded stack writes."""

from __future__ import annotations

from pathlib import Path

from stayops_infra.config import StackConfig
from stayops_infra.kafka.broker import new_cluster_id, server_properties


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
