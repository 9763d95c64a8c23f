"""`GET /v1/events`: a service's own event history, from its outbox (rows are kept
for the relay's retention, 30 days) and its inbox (which of its consumer group's
events it applied, when, in how many attempts), scoped to the caller's org. Every
service mounts it (stayops_kit.app); `stayops trace` merges the four answers into
one causal tree by `causationid`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from stayops_kit.api import CurrentCaller, Runtime
from stayops_kit.db import inbox, outbox
from stayops_kit.tenancy import OrgScope

router = APIRouter(tags=["events"])

MAX_LIMIT = 500
# An outbox row id is a PostgreSQL bigint.
MAX_CURSOR = 2**63 - 1
# Inbox records per answer: the events of one correlation a group applied.
MAX_CONSUMED = 1000
_ID = Annotated[str | None, Query(min_length=1, max_length=200)]


class HistoryEvent(BaseModel):
    """An event this service published, as its CloudEvent attributes and data."""

    id: str
    type: str
    source: str
    time: datetime
    topic: str
    subject: str | None = None
    partitionkey: str
    orgid: str
    correlationid: str | None = None
    causationid: str | None = None
    dataschema: str | None = None
    traceparent: str | None = Field(None, description="W3C trace context of the span that announced it "
                                                      "(null when tracing was off).")
    data: dict[str, Any]
    sent_at: datetime | None = Field(None, description="When the relay put it on the broker; null while it waits.")
    cursor: int = Field(description="Its position in this service's outbox: pass as `after` for the next page.")


class ConsumedEvent(BaseModel):
    """An inbox record: this service's consumer group applied that event."""

    group: str
    event_id: str
    source: str
    type: str
    time: datetime | None = Field(None, description="When the event happened, as its publisher said.")
    correlationid: str | None = None
    causationid: str | None = None
    handled_at: datetime
    attempts: int = Field(description="Tries it took: 1 when applied at once (with its batch, or alone "
                                      "after its batch failed), more after transient errors.")


class EventHistory(BaseModel):
    items: list[HistoryEvent] = Field(description="Published events, oldest first.")
    consumed: list[ConsumedEvent] = Field(description=(
        "Events of the same correlation or id this service's consumer group applied, oldest first, with the "
        f"first page (at most {MAX_CONSUMED}); for a subject or no filter, the inbox records of this page's "
        "items."))
    next_after: int | None = Field(description="Pass as `after` for the next page of items; null on the last.")
    limit: int


def _uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _published(row: Any) -> HistoryEvent:
    return HistoryEvent(
        id=str(row.event_id), type=row.event_type, source=row.source, time=row.occurred_at, topic=row.topic,
        subject=row.subject, partitionkey=row.partition_key, orgid=row.org_id, correlationid=row.correlation_id,
        causationid=row.causation_id, dataschema=row.dataschema, traceparent=row.traceparent, data=row.payload,
        sent_at=row.sent_at,
        cursor=row.id,
    )


def _consumed(row: Any) -> ConsumedEvent:
    return ConsumedEvent(group=row.consumer_group, event_id=row.event_id, source=row.source, type=row.event_type,
                         time=row.occurred_at, correlationid=row.correlation_id, causationid=row.causation_id,
                         handled_at=row.handled_at, attempts=row.attempts)


@router.get("/events", response_model=EventHistory, summary="This service's events of one correlation, "
            "event or subject, and the events it applied")
async def list_events(
    caller: CurrentCaller,
    runtime: Runtime,
    correlation_id: _ID = None,
    event_id: _ID = None,
    subject: Annotated[str | None, Query(min_length=1, max_length=200,
                                         description="A task, run or listing id: the event's subject "
                                                     "or partition key.")] = None,
    after: Annotated[int, Query(ge=0, le=MAX_CURSOR, description="Items after this cursor.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> EventHistory:
    """The caller's org only: another org's events are never returned, whatever the
    filter. With no filter, all of the org's events this service still keeps."""
    published = OrgScope(outbox, caller.org_id)
    query = published.select().where(outbox.c.id > after)
    if correlation_id is not None:
        query = query.where(outbox.c.correlation_id == correlation_id)
    if event_id is not None:
        # Outbox ids are UUIDs; another source's id (in the inbox) may be any text.
        query = query.where(outbox.c.event_id == _uuid(event_id)) if _uuid(event_id) else query.where(sa.false())
    if subject is not None:
        query = query.where(sa.or_(outbox.c.subject == subject, outbox.c.partition_key == subject))
    applied = OrgScope(inbox, caller.org_id)
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(query.order_by(outbox.c.id).limit(limit + 1))).all()
        items = [_published(row) for row in rows[:limit]]
        consumed_query = applied.select()
        if after and (correlation_id is not None or event_id is not None) and subject is None:
            consumed_query = consumed_query.where(sa.false())  # given with the first page
        if correlation_id is not None:
            consumed_query = consumed_query.where(inbox.c.correlation_id == correlation_id)
        if event_id is not None:
            consumed_query = consumed_query.where(inbox.c.event_id == event_id)
        if subject is not None or (correlation_id is None and event_id is None):
            # The inbox keeps no subject: the records of the events on this page.
            consumed_query = consumed_query.where(inbox.c.event_id.in_([item.id for item in items]))
        consumed = (await conn.execute(
            consumed_query.order_by(inbox.c.handled_at, inbox.c.event_id).limit(MAX_CONSUMED))).all()
    return EventHistory(
        items=items,
        consumed=[_consumed(row) for row in consumed],
        next_after=items[-1].cursor if len(rows) > limit else None,
        limit=limit,
    )
