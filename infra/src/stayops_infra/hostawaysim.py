"""The sync-hostaway simulator: Hostaway's reservation webhooks, quirks included,
turned into canonical `hostaway.*` events on `sync.hostaway` (source
`/sync-hostaway`).

Hostaway sends only "reservation created" and "reservation updated": a cancellation
is an update whose status is cancelled, an update may arrive before its create, and
a webhook may arrive twice. The simulator builds those webhooks as Hostaway does and
runs them through `stayops_schemas.canonical.HostawayReservations`, whose last known
state per reservation it keeps in a JSON file so that separate `stayops simulate`
runs agree. A guest's message arrives as Hostaway's `message.received` webhook and is
announced as `hostaway.message.received` (the host's own messages are not).

Sync and price requests for Hostaway listings are answered by
`stayops_infra.syncsim.SyncSimulator(platform=Platform.HOSTAWAY)`, beside sync-airbnb."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from stayops_schemas.canonical import (
    HostawayMessageWebhook,
    HostawayReservations,
    HostawayWebhook,
    KnownReservation,
    hostaway_message,
)
from stayops_schemas.catalog import event_type
from stayops_schemas.envelope import Envelope
from stayops_schemas.events.sync import ReservationStatus
from stayops_schemas.ownership import SYNC_HOSTAWAY

SOURCE = SYNC_HOSTAWAY


def reservation_webhook(event: str, *, reservation_id: str, listing_id: str, check_in: dt.date,
                        check_out: dt.date, status: str = "new", guests: int = 2,
                        total: Decimal = Decimal("360.00"), currency: str = "EUR",
                        inserted_on: dt.datetime, updated_on: dt.datetime) -> HostawayWebhook:
    """A webhook call as Hostaway makes it (camelCase, more fields than StayOps reads)."""
    return HostawayWebhook.model_validate({"event": event, "data": {
        "id": reservation_id, "listingMapId": listing_id, "channelName": "direct", "status": status,
        "arrivalDate": check_in.isoformat(), "departureDate": check_out.isoformat(),
        "numberOfGuests": guests, "totalPrice": str(total), "currency": currency,
        "guestName": "Simulated guest", "insertedOn": inserted_on.isoformat(),
        "updatedOn": updated_on.isoformat(),
    }})


def message_webhook(*, message_id: int, conversation_id: int, listing_id: str, body: str,
                    reservation_id: str | None = None, guest_name: str = "Simulated guest",
                    incoming: bool = True, inserted_on: dt.datetime) -> HostawayMessageWebhook:
    """A conversation message webhook as Hostaway sends it (numeric ids, `isIncoming`)."""
    return HostawayMessageWebhook.model_validate({"event": "message.received", "data": {
        "id": message_id, "conversationId": conversation_id, "reservationId": reservation_id,
        "listingMapId": listing_id, "body": body, "isIncoming": 1 if incoming else 0, "guestName": guest_name,
        "communicationType": "channel", "insertedOn": inserted_on.isoformat(), "status": "sent",
    }})


class _StateFile(MutableMapping[str, KnownReservation]):
    """The normaliser's state as one JSON file, rewritten on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        raw: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
        self._known = {key: KnownReservation(
            updated_on=dt.datetime.fromisoformat(value["updated_on"]), status=ReservationStatus(value["status"]),
            fingerprint=tuple(value["fingerprint"]), announced=value["announced"]) for key, value in raw.items()}

    def __getitem__(self, key: str) -> KnownReservation:
        return self._known[key]

    def __setitem__(self, key: str, value: KnownReservation) -> None:
        self._known[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({k: {**asdict(v), "updated_on": v.updated_on.isoformat()}
                                         for k, v in self._known.items()}, indent=2))

    def __delitem__(self, key: str) -> None:
        del self._known[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._known)

    def __len__(self) -> int:
        return len(self._known)


@dataclass
class HostawaySimulator:
    """Webhooks in, canonical envelopes out; `state_file` None keeps state in memory."""

    state_file: Path | None = None
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    normaliser: HostawayReservations = field(init=False)

    def __post_init__(self) -> None:
        self.normaliser = HostawayReservations(_StateFile(self.state_file) if self.state_file else None)

    def receive(self, org_id: str, webhook: HostawayWebhook) -> list[Envelope]:
        return [
            event_type(f"hostaway.{name}").envelope(
                payload, id=str(uuid.uuid4()), source=SOURCE, partitionkey=payload.listing_id,
                time=self.clock(), subject=payload.reservation_id,
            )
            for name, payload in self.normaliser.receive(org_id, webhook)
        ]

    def receive_message(self, org_id: str, webhook: HostawayMessageWebhook) -> list[Envelope]:
        """A guest's message as `hostaway.message.received`; nothing for the host's own."""
        message = hostaway_message(org_id, webhook)
        if message is None:
            return []
        return [event_type("hostaway.message.received").envelope(
            message, id=str(uuid.uuid4()), source=SOURCE, partitionkey=message.listing_id, time=self.clock(),
            subject=message.thread_id)]
