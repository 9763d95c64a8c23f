"""Dead-letter topics: inspect what a consumer group parked, and redrive it to the
original topic. A redriven event goes back through the group's inbox, so it still
applies at most once; each redrive increments `stayops_redrive_count`, and a record
already redriven `MAX_REDRIVES` times is left parked (no endless loops)."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stayops_kit.consumer import REDRIVE_HEADER
from stayops_schemas.catalog import dead_letter_topic

MAX_REDRIVES = 3


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str:
        return next((v.decode(errors="replace") for k, v in self.headers if k == name), "")

    @property
    def redrives(self) -> int:
        value = self.header(REDRIVE_HEADER)
        return int(value) if value.isdigit() else 0

    def describe(self) -> dict[str, str]:
        return {
            "offset": str(self.offset),
            "type": self.header("ce_type") or "(not a CloudEvent)",
            "id": self.header("ce_id"),
            "orgid": self.header("dlq_orgid"),
            "reason": self.header("dlq_reason"),
            "error_type": self.header("dlq_error_type"),
            "original": f"{self.header('dlq_original_topic')}[{self.header('dlq_original_partition')}]"
                        f"@{self.header('dlq_original_offset')}",
            "attempts": self.header("dlq_attempts"),
            "redrives": str(self.redrives),
        }


async def read_dead_letters(bootstrap: str, group: str, *, group_id: str | None = None,
                            limit: int = 1000) -> tuple[AIOKafkaConsumer, list[DeadLetter]]:
    """Read what is parked for `group` (from the start, or from `group_id`'s position)."""
    consumer = AIOKafkaConsumer(dead_letter_topic(group), bootstrap_servers=bootstrap, group_id=group_id,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    letters: list[DeadLetter] = []
    while len(letters) < limit:
        batch = await consumer.getmany(timeout_ms=1000, max_records=limit - len(letters))
        if not batch:
            break
        for records in batch.values():
            letters.extend(DeadLetter(r.offset, r.key, r.value, list(r.headers)) for r in records)
    return consumer, letters


async def list_dead_letters(bootstrap: str, group: str, limit: int = 1000) -> list[dict[str, str]]:
    consumer, letters = await read_dead_letters(bootstrap, group, limit=limit)
    await consumer.stop()
    return [letter.describe() for letter in letters]


async def redrive(bootstrap: str, group: str, limit: int = 1000) -> tuple[int, int]:
    """Send parked records back to their original topics; returns (redriven, left parked).
    The redrive position is kept by the group `<group>.redrive`, so a record is
    redriven once per redrive run that reaches it."""
    consumer, letters = await read_dead_letters(bootstrap, group, group_id=f"{group}.redrive", limit=limit)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    sent = parked = 0
    try:
        for letter in letters:
            topic = letter.header("dlq_original_topic")
            if not topic or letter.redrives >= MAX_REDRIVES:
                parked += 1
                continue
            headers = [(k, v) for k, v in letter.headers if not k.startswith("dlq_") and k != REDRIVE_HEADER]
            headers.append((REDRIVE_HEADER, str(letter.redrives + 1).encode()))
            await producer.send_and_wait(topic, letter.value, key=letter.key, headers=headers)
            sent += 1
        if letters:
            await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    return sent, parked
