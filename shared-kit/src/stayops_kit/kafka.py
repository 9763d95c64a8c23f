"""Kafka clients configured the one way StayOps uses them."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

# Kafka's default limit on one record (`message.max.bytes`, `max.request.size`).
# `UnitOfWork.announce` refuses a bigger event when it is written, so no row the
# relay cannot send ever reaches the outbox.
MAX_RECORD_BYTES = 1_048_576
# zstd: JSON events (a pricing run's nights, listings) shrink several-fold, so a
# batch carries more events per request and the broker stores less.
COMPRESSION = "zstd"


# How long a request (and a batch waiting to be sent) may take before its send fails.
REQUEST_TIMEOUT_MS = 30_000


def create_producer(bootstrap_servers: str, *, client_id: str,
                    request_timeout_ms: int = REQUEST_TIMEOUT_MS) -> AIOKafkaProducer:
    """An idempotent producer with acks=all: a retried send is never duplicated
    or reordered within a partition."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        compression_type=COMPRESSION,
        linger_ms=0,  # sends queued while a request is in flight still batch up
        max_batch_size=MAX_RECORD_BYTES,
        max_request_size=MAX_RECORD_BYTES,
        request_timeout_ms=request_timeout_ms,
    )
