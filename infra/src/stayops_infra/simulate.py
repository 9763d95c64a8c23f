"""`stayops simulate`: make the sync simulators say what a platform would — a
reservation made, changed or cancelled, a review left, a guest's message — so anyone
can watch the reactive automations on a running system. Airbnb events are published as
sync-airbnb publishes them; Hostaway's go through its webhook normaliser. A message is
built in the platform's own shape and normalised to `<platform>.message.received`."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaProducer

from stayops_infra.hostawaysim import SOURCE as HOSTAWAY_SOURCE
from stayops_infra.hostawaysim import HostawaySimulator, message_webhook, reservation_webhook
from stayops_infra.syncsim import CURRENCY, guest_message
from stayops_infra.syncsim import SOURCE as AIRBNB_SOURCE
from stayops_schemas.binding import to_kafka
from stayops_schemas.canonical import airbnb_message
from stayops_schemas.catalog import event_type
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.base import Payload
from stayops_schemas.events.sync import (
    Platform,
    ReservationCancelled,
    ReservationChanged,
    ReservationCreated,
    ReservationStatus,
    ReviewCreated,
)

NIGHTLY_RATE = Decimal("120.00")


@dataclass(frozen=True)
class SimulatedStay:
    org_id: str
    listing_id: str
    reservation_id: str
    check_in: dt.date
    nights: int
    guests: int = 2

    @property
    def check_out(self) -> dt.date:
        return self.check_in + dt.timedelta(days=self.nights)

    @property
    def total(self) -> Decimal:
        return NIGHTLY_RATE * self.nights


def _airbnb(type_: str, payload: Payload, key: str, now: dt.datetime) -> Envelope:
    return event_type(type_).envelope(payload, id=str(uuid.uuid4()), source=AIRBNB_SOURCE, partitionkey=key,
                                      time=now)


def airbnb_reservation(stay: SimulatedStay, *, change: bool, cancel: bool, now: dt.datetime) -> list[Envelope]:
    """What sync-airbnb announces: created, changed or cancelled, in canonical form."""
    common = {"reservation_id": stay.reservation_id, "listing_id": stay.listing_id, "org_id": stay.org_id,
              "check_in": stay.check_in, "check_out": stay.check_out, "guests": stay.guests,
              "nightly_rate": NIGHTLY_RATE, "total": stay.total, "currency": CURRENCY, "booked_at": now}
    if cancel:
        payload: Payload = ReservationCancelled(**common, status=ReservationStatus.CANCELLED, cancelled_at=now)
        name = "reservation.cancelled"
    elif change:
        payload, name = ReservationChanged(**common, status=ReservationStatus.CONFIRMED), "reservation.changed"
    else:
        payload, name = ReservationCreated(**common, status=ReservationStatus.CONFIRMED), "reservation.created"
    return [_airbnb(f"airbnb.{name}", payload, stay.listing_id, now)]


def hostaway_reservation(simulator: HostawaySimulator, stay: SimulatedStay, *, change: bool, cancel: bool,
                         now: dt.datetime) -> list[Envelope]:
    """What Hostaway's webhook says (a create, or an update — a cancellation is an
    update with status cancelled), normalised to canonical events."""
    status = "cancelled" if cancel else "modified" if change else "new"
    webhook = reservation_webhook(
        "reservation.updated" if cancel or change else "reservation.created",
        reservation_id=stay.reservation_id, listing_id=stay.listing_id, check_in=stay.check_in,
        check_out=stay.check_out, status=status, guests=stay.guests, total=stay.total, currency=CURRENCY,
        inserted_on=now, updated_on=now,
    )
    return simulator.receive(stay.org_id, webhook)


def review(org_id: str, listing_id: str, rating: int, *, text: str, reservation_id: str | None,
           review_id: str | None, platform: Platform, now: dt.datetime) -> list[Envelope]:
    payload = ReviewCreated(review_id=review_id or f"rv-{uuid.uuid4().hex[:10]}", listing_id=listing_id,
                            org_id=org_id, reservation_id=reservation_id, rating=rating, text=text,
                            submitted_at=now)
    source = AIRBNB_SOURCE if platform is Platform.AIRBNB else HOSTAWAY_SOURCE
    return [event_type(f"{platform}.review.created").envelope(
        payload, id=str(uuid.uuid4()), source=source, partitionkey=listing_id, time=now)]


def message(org_id: str, listing_id: str, text: str, *, platform: Platform, reservation_id: str | None,
            guest_name: str, now: dt.datetime) -> list[Envelope]:
    """A guest's message: Airbnb's thread message or Hostaway's webhook, normalised
    to `<platform>.message.received`."""
    if platform is Platform.HOSTAWAY:
        number = uuid.uuid4().int % 10**9
        webhook = message_webhook(message_id=number, conversation_id=number // 7, listing_id=listing_id,
                                  body=text, reservation_id=reservation_id, guest_name=guest_name, inserted_on=now)
        return HostawaySimulator(clock=lambda: now).receive_message(org_id, webhook)
    raw = guest_message(message_id=f"msg-{uuid.uuid4().hex[:10]}", thread_id=f"thr-{listing_id}-{guest_name}",
                        listing_id=listing_id, text=text, confirmation_code=reservation_id, first_name=guest_name,
                        created_at=now)
    payload = airbnb_message(org_id, raw)
    return [] if payload is None else [_airbnb("airbnb.message.received", payload, listing_id, now)]


async def publish(bootstrap: str, envelopes: list[Envelope], *, idempotent: bool = True) -> None:
    """Publish each event on its catalog topic, in order per key, waiting for every ack."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=idempotent, acks="all")
    await producer.start()
    try:
        sent = []
        for envelope in envelopes:
            record = to_kafka(envelope)
            sent.append(await producer.send(event_type(envelope.type).topic, value=record.value, key=record.key,
                                            headers=record.headers))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def hostaway_state(data_dir: Path) -> Path:
    return data_dir / "syncsim" / "hostaway-reservations.json"

