"""Canonical events at the edge: one language for what every platform says.

Consumers match on canonical names (`reservation.created`, `review.created`,
`listing.synced`, ...) whichever sync service sent the fact; `canonical_of` maps a
platform's event to it, keeping the platform and the platform's ids. Hostaway's
webhook speaks differently (only "reservation created" and "reservation updated", a
cancellation is an update whose status is cancelled, an update may come before the
create or twice): `HostawayReservations` keeps the last known state per reservation
and yields each canonical event once. A guest's message is `message.received`
whichever platform's shape it came in (`airbnb_message`, `hostaway_message`); the
host's own messages are not announced. Pure: no I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stayops_schemas.envelope import Envelope
from stayops_schemas.events.sync import (
    MessageReceived,
    Platform,
    ReservationCancelled,
    ReservationChanged,
    ReservationCreated,
    ReservationStatus,
)

# The facts every platform reports, by their canonical name.
CANONICAL_SYNC_EVENTS: frozenset[str] = frozenset({
    "listing.synced",
    "reservation.created",
    "reservation.changed",
    "reservation.cancelled",
    "review.created",
    "message.received",
})


@dataclass(frozen=True)
class CanonicalEvent:
    """An event as consumers reason about it: `type` is canonical for a platform's
    fact (`reservation.created`) and the event's own type otherwise
    (`stayops.task.completed`); `platform` names the sync service it came from."""

    id: str
    type: str
    source: str
    org_id: str
    time: dt.datetime
    data: Mapping[str, Any]
    platform: str | None = None
    platform_type: str | None = None

    def as_names(self) -> dict[str, Any]:
        """The event as plain JSON-like data, for expressions."""
        return {"id": self.id, "type": self.type, "source": self.source, "org_id": self.org_id,
                "time": self.time.isoformat(), "platform": self.platform, "data": dict(self.data)}


def canonical_of(envelope: Envelope) -> CanonicalEvent:
    """The canonical form of any event: `airbnb.reservation.created` and
    `hostaway.reservation.created` are both `reservation.created`."""
    prefix, _, rest = envelope.type.partition(".")
    platform = prefix if prefix in {p.value for p in Platform} else None
    is_fact = platform is not None and rest in CANONICAL_SYNC_EVENTS
    data = dict(envelope.data)
    if is_fact:
        data.setdefault("platform", platform)
    return CanonicalEvent(
        id=envelope.id, type=rest if is_fact else envelope.type, source=envelope.source,
        org_id=envelope.orgid, time=envelope.time, data=data, platform=platform,
        platform_type=envelope.type if is_fact else None,
    )


# --- Hostaway ----------------------------------------------------------------------

HostawayEventName = Literal["reservation.created", "reservation.updated"]


class HostawayReservation(BaseModel):
    """A reservation as Hostaway's webhook sends it (the fields StayOps reads; Hostaway
    sends many more). Statuses: new, modified, cancelled, pending, inquiry, ..."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int | str
    listingMapId: int | str
    status: str
    arrivalDate: dt.date
    departureDate: dt.date
    numberOfGuests: int = Field(ge=1)
    totalPrice: Decimal = Field(ge=0)
    currency: str
    insertedOn: dt.datetime
    updatedOn: dt.datetime


class HostawayWebhook(BaseModel):
    """One webhook call: `{"event": "reservation.updated", "data": {...}}`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event: HostawayEventName
    data: HostawayReservation


@dataclass(frozen=True)
class KnownReservation:
    """What the normaliser last said about a reservation: its canonical status and
    the fields whose change is a `reservation.changed`."""

    updated_on: dt.datetime
    status: ReservationStatus
    fingerprint: tuple[str, ...]
    announced: bool


CanonicalReservation = tuple[str, ReservationCreated | ReservationChanged | ReservationCancelled]

# Hostaway's statuses that mean the stay is on; anything else that is not cancelled
# (an inquiry, a pending request) is not a booking yet.
_BOOKED = {"new", "modified", "confirmed", "ownerstay", "accepted"}
_CANCELLED = {"cancelled", "canceled", "declined", "expired"}


def _status_of(raw: str) -> ReservationStatus:
    status = raw.lower()
    if status in _CANCELLED:
        return ReservationStatus.CANCELLED
    if status in _BOOKED:
        return ReservationStatus.CONFIRMED
    return ReservationStatus.PENDING


class HostawayReservations:
    """Hostaway's webhooks in, canonical reservation events out, each once.

    `known` is the last state per reservation id (a dict in the simulator, a table
    in a real sync service). A webhook older than the last one seen (by
    `updatedOn`) is stale and ignored; one that changes nothing is a duplicate; the
    first booked state is `reservation.created` whether it came as a create or an
    update; a later cancelled status is `reservation.cancelled`."""

    def __init__(self, known: MutableMapping[str, KnownReservation] | None = None) -> None:
        self.known: MutableMapping[str, KnownReservation] = {} if known is None else known

    def receive(self, org_id: str, webhook: HostawayWebhook) -> list[CanonicalReservation]:
        raw = webhook.data
        reservation_id = str(raw.id)
        status = _status_of(raw.status)
        fingerprint = (status.value, raw.arrivalDate.isoformat(), raw.departureDate.isoformat(),
                       str(raw.numberOfGuests), str(raw.totalPrice))
        before = self.known.get(reservation_id)
        if before is not None and raw.updatedOn < before.updated_on:
            return []  # stale: a newer state was already applied
        if before is not None and before.fingerprint == fingerprint:
            return []  # a duplicate delivery, or an update that changes nothing StayOps reads
        announced = before is not None and before.announced
        name: str | None
        if status is ReservationStatus.CANCELLED:
            name = "reservation.cancelled" if announced else None
        elif status is ReservationStatus.CONFIRMED:
            name = "reservation.changed" if announced else "reservation.created"
        else:
            name = None  # an inquiry or pending request is not a booking
        self.known[reservation_id] = KnownReservation(
            updated_on=raw.updatedOn, status=status, fingerprint=fingerprint,
            announced=announced or name == "reservation.created",
        )
        if name is None:
            return []
        nights = max(1, (raw.departureDate - raw.arrivalDate).days)
        common: dict[str, Any] = {
            "reservation_id": reservation_id, "listing_id": str(raw.listingMapId), "org_id": org_id,
            "status": status, "check_in": raw.arrivalDate, "check_out": raw.departureDate,
            "guests": raw.numberOfGuests,
            "nightly_rate": (raw.totalPrice / nights).quantize(Decimal("0.01")),
            "total": raw.totalPrice, "currency": raw.currency, "booked_at": raw.insertedOn,
        }
        if name == "reservation.created":
            return [(name, ReservationCreated(**common))]
        if name == "reservation.changed":
            return [(name, ReservationChanged(**common))]
        return [(name, ReservationCancelled(**common, cancelled_at=raw.updatedOn))]


# --- Guest messages ----------------------------------------------------------------


class AirbnbSender(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    role: str  # "guest" or "host" (a co-host is a host)
    first_name: str | None = None


class AirbnbMessage(BaseModel):
    """A message of an Airbnb thread as its messaging API sends it (the fields StayOps
    reads): the thread, the listing and the booking's confirmation code."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    thread_id: str
    listing_id: str
    confirmation_code: str | None = None
    sender: AirbnbSender
    message: str
    created_at: dt.datetime


class HostawayConversationMessage(BaseModel):
    """A conversation message as Hostaway's webhook sends it: `isIncoming` 1 is the
    guest's, 0 the host's; ids are numbers."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int | str
    conversationId: int | str
    reservationId: int | str | None = None
    listingMapId: int | str
    body: str
    isIncoming: int
    insertedOn: dt.datetime
    guestName: str | None = None


class HostawayMessageWebhook(BaseModel):
    """One webhook call: `{"event": "message.received", "data": {...}}`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event: Literal["message.received"]
    data: HostawayConversationMessage


def airbnb_message(org_id: str, raw: AirbnbMessage) -> MessageReceived | None:
    """A guest's Airbnb message as `message.received`; None for the host's own."""
    if raw.sender.role.lower() != "guest":
        return None
    return MessageReceived(
        message_id=raw.id, thread_id=raw.thread_id, listing_id=raw.listing_id, org_id=org_id,
        reservation_id=raw.confirmation_code, guest_name=raw.sender.first_name, text=raw.message,
        received_at=raw.created_at,
    )


def hostaway_message(org_id: str, webhook: HostawayMessageWebhook) -> MessageReceived | None:
    """A guest's Hostaway message as `message.received`; None for an outgoing one."""
    raw = webhook.data
    if raw.isIncoming != 1:
        return None
    return MessageReceived(
        message_id=str(raw.id), thread_id=str(raw.conversationId), listing_id=str(raw.listingMapId),
        org_id=org_id, reservation_id=None if raw.reservationId is None else str(raw.reservationId),
        guest_name=raw.guestName, text=raw.body, received_at=raw.insertedOn,
    )
