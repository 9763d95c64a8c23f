"""Apache Kafka 4 in KRaft mode: one combined broker/controller node with storage on disk."""

from __future__ import annotations

import base64
import subprocess
import uuid
from importlib import resources
from pathlib import Path

from stayops_infra.config import KAFKA_VERSION, StackConfig
from stayops_infra.errors import StackError
from stayops_infra.kafka.jars import ensure_kafka_jars, find_java
from stayops_infra.kafka.process import DetachedProcess, port_in_use, wait_for_broker
from stayops_kit.settings import BrokerKind

HEAP = "-Xmx768m"


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka rejects ids starting with '-', which would read as a command-line flag.
        if not candidate.startswith("-"):
            return candidate


def server_properties(config: StackConfig, log_dirs: Path) -> str:
    ctrl = config.controller_port
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # --standalone formatting records this node as the only voter; the bootstrap
        # servers form replaces controller.quorum.voters for dynamic quorums.
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{ctrl}",
        "listeners": f"PLAINTEXT://127.0.0.1:{config.kafka_port},CONTROLLER://127.0.0.1:{ctrl}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{config.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dirs),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        # Fewer offsets partitions than the default 50: a single node starts groups faster.
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Topics are provisioned from the catalog; a typo must fail, not create a topic.
        "auto.create.topics.enable": "false",
        "log.retention.hours": "168",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class ApacheKafka:
    """The real broker, run by the local JDK from jars resolved into the cache."""

    description = f"Apache Kafka {KAFKA_VERSION} (KRaft)"
    kind: BrokerKind = "kafka"

    def __init__(self, config: StackConfig, java: str | None = None) -> None:
        self.config = config
        self._java = java
        self.kafka_dir = config.data_dir / "kafka"
        self.log_dirs = self.kafka_dir / "data"
        self.properties = self.kafka_dir / "server.properties"
        self.log_file = config.logs_dir / "kafka.log"
        self._process = DetachedProcess(self.kafka_dir / "kafka.pid", config.logs_dir / "kafka.out")

    @property
    def bootstrap(self) -> str:
        return self.config.kafka_bootstrap

    def is_running(self) -> bool:
        return self._process.running() is not None

    def start(self) -> None:
        """Format the storage on first start, then start the broker (a running one is reused)."""
        if self.is_running():
            return
        for port in (self.config.kafka_port, self.config.controller_port):
            if port_in_use(port):
                raise StackError(
                    f"port {port} is taken by another process; stop it or choose another "
                    "Kafka port with STAYOPS_KAFKA_PORT (the controller uses port + 1)"
                )
        java = self._java or find_java()
        libs = ensure_kafka_jars(self.config.kafka_cache)
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        self.config.logs_dir.mkdir(parents=True, exist_ok=True)
        self.properties.write_text(server_properties(self.config, self.log_dirs))
        if not (self.log_dirs / "meta.properties").exists():
            self._format(java, libs)
        self._process.spawn(
            [
                java,
                HEAP,
                "-Xms256m",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                *self._jvm_logging(),
                "-cp",
                f"{libs}/*",
                "kafka.Kafka",
                str(self.properties),
            ],
            cwd=self.kafka_dir,
        )

    async def wait_ready(self, timeout_s: float = 120) -> None:
        await wait_for_broker(self.bootstrap, timeout_s, self.is_running, self._failure_report)

    def stop(self, timeout_s: float = 30) -> None:
        self._process.stop(timeout_s)

    def _format(self, java: str, libs: Path) -> None:
        cluster_id_file = self.kafka_dir / "cluster-id"
        if not cluster_id_file.exists():
            cluster_id_file.write_text(new_cluster_id())
        result = subprocess.run(
            [
                java,
                "-Xmx256m",
                *self._jvm_logging(),
                "-cp",
                f"{libs}/*",
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "--ignore-formatted",
                "-t",
                cluster_id_file.read_text().strip(),
                "-c",
                str(self.properties),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"formatting the Kafka storage in {self.log_dirs} failed:\n{result.stdout}{result.stderr}")

    def _jvm_logging(self) -> list[str]:
        config = resources.files(__package__).joinpath("log4j2.properties")
        return [f"-Dlog4j2.configurationFile={config}", f"-Dkafka.logs.dir={self.config.logs_dir}"]

    def _failure_report(self) -> str:
        return (
            f"--- {self._process.log_file} ---\n{self._process.log_tail()}\n"
            f"--- {self.log_file} (last lines) ---\n{_tail(self.log_file)}"
        )


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log yet)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
