"""Fixtures for the messaging kit's integration tests: a fresh database per test,
built like a service's, on the session's embedded PostgreSQL and Apache Kafka."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stayops_kit.db import create_engine
from stayops_kit.outbox import UnitOfWorkFactory
from stayops_kit.testing import ProbeDb, ensure_topic, prepare_database


@pytest.fixture
async def probe(stack: Any) -> AsyncIterator[ProbeDb]:
    name = f"kit_{uuid.uuid4().hex[:10]}"
    url = await stack.create_database(name)
    engine = create_engine(url)
    await prepare_database(engine)
    group = f"probe-{uuid.uuid4().hex[:8]}"
    await ensure_topic(stack.kafka_bootstrap, f"{group}.dlq")
    yield ProbeDb(url, engine, UnitOfWorkFactory(engine, "/probe"), str(uuid.uuid4()),
                  stack.kafka_bootstrap, group)
    await engine.dispose()
