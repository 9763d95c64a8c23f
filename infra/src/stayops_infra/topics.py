"""Provision the catalog's topics before any consumer starts, and list what the broker has."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from stayops_infra.errors import StackError
from stayops_schemas.catalog import Topic, all_topics

REPLICATION_FACTOR = 1


async def provision_topics(bootstrap: str, topics: Iterable[Topic] | None = None, timeout_s: float = 60) -> None:
    """Create the missing topics (existing ones are left alone) and wait until every
    partition has a leader, so a consumer that starts next sees all of them."""
    wanted = list(all_topics() if topics is None else topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in wanted if topic.name not in existing]
        if missing:
            response = await admin.create_topics([NewTopic(t.name, t.partitions, REPLICATION_FACTOR) for t in missing])
            for name, code, *rest in response.topic_errors:
                error = for_code(code)
                # A concurrent provisioner may have created it between list and create.
                if code and error is not TopicAlreadyExistsError:
                    message = rest[0] if rest else ""
                    raise StackError(f"cannot create topic {name!r}: {error.__name__} {message}")
        await _wait_for_leaders(admin, wanted, timeout_s)
    finally:
        await admin.close()


async def topic_partitions(bootstrap: str) -> dict[str, int]:
    """Every non-internal topic with its partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {
        entry["topic"]: len(entry["partitions"])
        for entry in described
        if not entry.get("is_internal") and not entry["topic"].startswith("__")
    }


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[Topic], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    names = [topic.name for topic in topics]
    expected = {topic.name: topic.partitions for topic in topics}
    pending: list[str] = names
    while time.monotonic() < deadline:
        described = await admin.describe_topics(names)
        pending = [
            entry["topic"]
            for entry in described
            if entry["error_code"]
            or len(entry["partitions"]) < expected[entry["topic"]]
            or any(p["leader"] < 0 for p in entry["partitions"])
        ]
        if not pending:
            return
        await asyncio.sleep(0.2)
    raise StackError(f"topics without a partition leader after {timeout_s:.0f}s: {pending}")
