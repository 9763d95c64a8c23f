"""Kafka clients configured the one way StayOps uses them."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer


def create_producer(bootstrap_servers: str, *, client_id: str) -> AIOKafkaProducer:
    """An idempotent producer with acks=all: a retried send is never duplicated
    or reordered within a partition."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,  # sends queued while a request is in flight still batch up
        max_batch_size=1_048_576,
        request_timeout_ms=30_000,
    )
