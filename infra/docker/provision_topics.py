"""Create the Kafka topics StayOps declares, before any service starts.

The one-shot `topics-init` job of docker-compose.yml runs this with the task-service
image, which has `stayops_schemas` installed: the declared list is
`stayops_schemas.catalog.all_topics()` (names and partition counts, dead-letter
topics included), so the containers provision exactly what the embedded stack does.

It waits until the broker answers, creates the missing topics (existing ones are
left alone; a topic with fewer partitions than declared is reported, not changed),
waits until every partition has a leader, and exits 0. It exits 1 if the broker
does not answer or the topics are not ready within the timeout.

Environment:
  STAYOPS_KAFKA_BOOTSTRAP_SERVERS     broker list (default 127.0.0.1:9092)
  STAYOPS_TOPIC_REPLICATION_FACTOR    replication factor of new topics (default 1)
  STAYOPS_TOPIC_PROVISION_TIMEOUT_S   overall deadline in seconds (default 180)
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from stayops_schemas.catalog import Topic, all_topics

log = logging.getLogger("provision-topics")

RETRY_DELAY_S = 2.0


class ProvisionError(Exception):
    """The broker refused a topic or the topics did not become ready in time."""


async def _existing_partitions(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    described = await admin.describe_topics(names)
    return {entry["topic"]: len(entry["partitions"]) for entry in described if not entry["error_code"]}


async def _create_missing(admin: AIOKafkaAdminClient, wanted: list[Topic], replication: int) -> None:
    existing = set(await admin.list_topics())
    missing = [topic for topic in wanted if topic.name not in existing]
    if not missing:
        log.info("all %d declared topics exist", len(wanted))
        return
    response = await admin.create_topics([NewTopic(t.name, t.partitions, replication) for t in missing])
    for name, code, *rest in response.topic_errors:
        if not code:
            log.info("created topic %s", name)
            continue
        error = for_code(code)
        # Another provisioner may have created it between the listing and the request.
        if error is TopicAlreadyExistsError:
            continue
        message = rest[0] if rest and rest[0] else ""
        raise ProvisionError(f"cannot create topic {name!r}: {error.__name__} {message}".rstrip())


async def _ready(admin: AIOKafkaAdminClient, wanted: list[Topic]) -> list[str]:
    """The declared topics that are not yet usable: unknown, or a partition without a leader."""
    expected = {topic.name: topic.partitions for topic in wanted}
    described = await admin.describe_topics(list(expected))
    pending = [
        entry["topic"]
        for entry in described
        if entry["error_code"] or not entry["partitions"] or any(p["leader"] < 0 for p in entry["partitions"])
    ]
    for entry in described:
        have = len(entry["partitions"])
        if not entry["error_code"] and 0 < have < expected[entry["topic"]]:
            log.warning(
                "topic %s has %d partitions, %d declared: increase it by hand",
                entry["topic"],
                have,
                expected[entry["topic"]],
            )
    return pending


async def provision(bootstrap: str, replication: int, timeout_s: float) -> None:
    wanted = list(all_topics())
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    created = False
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
        try:
            await admin.start()
            if not created:
                await _create_missing(admin, wanted, replication)
                created = True
            pending = await _ready(admin, wanted)
            if not pending:
                log.info("%d topics ready on %s", len(wanted), bootstrap)
                return
            last_error = ProvisionError(f"topics without a partition leader: {pending}")
        except ProvisionError:
            raise
        except Exception as exc:  # the broker is not up yet, or went away: try again
            last_error = exc
            log.info("waiting for the broker at %s: %s", bootstrap, exc)
        finally:
            await admin.close()
        await asyncio.sleep(RETRY_DELAY_S)
    raise ProvisionError(f"topics not ready after {timeout_s:.0f}s: {last_error}")


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("STAYOPS_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stdout,
    )
    # aiokafka logs every refused connection as an error while the broker starts;
    # the retry loop reports the reason once per attempt instead.
    if log.getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    bootstrap = os.environ.get("STAYOPS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    replication = int(os.environ.get("STAYOPS_TOPIC_REPLICATION_FACTOR", "1"))
    timeout_s = float(os.environ.get("STAYOPS_TOPIC_PROVISION_TIMEOUT_S", "180"))
    try:
        asyncio.run(provision(bootstrap, replication, timeout_s))
    except ProvisionError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
