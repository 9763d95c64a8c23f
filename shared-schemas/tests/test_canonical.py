"""Platform events become canonical ones, Hostaway's quirks included: a cancellation
sent as an update, an update before the create, the same webhook twice."""

from __future__ import annotations

import datetime as dt
from typing import Any

from stayops_schemas.canonical import (
    AirbnbMessage,
    HostawayMessageWebhook,
    HostawayReservations,
    HostawayWebhook,
    airbnb_message,
    canonical_of,
    hostaway_message,
)
from stayops_schemas.envelope import Envelope

T0 = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)


def webhook(event: str, *, status: str = "new", departure: str = "2025-04-05", minutes: int = 0) -> HostawayWebhook:
    return HostawayWebhook.model_validate({"event": event, "data": {
        "id": 9001, "listingMapId": 42, "status": status, "arrivalDate": "2025-04-01",
        "departureDate": departure, "numberOfGuests": 2, "totalPrice": "400.00", "currency": "EUR",
        "insertedOn": T0.isoformat(), "updatedOn": (T0 + dt.timedelta(minutes=minutes)).isoformat(),
        "guestName": "Ana", "channelName": "direct",
    }})


def names(normaliser: HostawayReservations, *hooks: HostawayWebhook) -> list[str]:
    return [name for hook in hooks for name, _ in normaliser.receive("org-1", hook)]


def test_create_then_update_then_cancel_as_update_is_created_changed_cancelled() -> None:
    normaliser = HostawayReservations()
    assert names(normaliser, webhook("reservation.created"),
                 webhook("reservation.updated", status="modified", departure="2025-04-06", minutes=1),
                 webhook("reservation.updated", status="cancelled", departure="2025-04-06", minutes=2)) == [
        "reservation.created", "reservation.changed", "reservation.cancelled"]


def test_an_update_before_the_create_creates_once_and_the_late_create_is_ignored() -> None:
    normaliser = HostawayReservations()
    assert names(normaliser, webhook("reservation.updated", status="modified", minutes=1),
                 webhook("reservation.created")) == ["reservation.created"]


def test_the_same_webhook_twice_announces_once_and_keeps_the_platform_ids() -> None:
    normaliser = HostawayReservations()
    first = normaliser.receive("org-1", webhook("reservation.created"))
    assert normaliser.receive("org-1", webhook("reservation.created")) == []
    [(_, created)] = first
    assert (created.reservation_id, created.listing_id, str(created.nightly_rate)) == ("9001", "42", "100.00")


def test_a_cancellation_of_a_reservation_never_announced_announces_nothing() -> None:
    assert names(HostawayReservations(), webhook("reservation.updated", status="cancelled")) == []


def envelope(type_: str, data: dict[str, Any]) -> Envelope:
    return Envelope(id="e-1", type=type_, source="/sync-hostaway", orgid="org-1", partitionkey="k",
                    data=data, time=T0)


def test_platform_facts_get_their_canonical_name_and_keep_the_platform() -> None:
    event = canonical_of(envelope("hostaway.reservation.cancelled", {"reservation_id": "9001"}))
    assert (event.type, event.platform, event.data["platform"]) == ("reservation.cancelled", "hostaway", "hostaway")
    assert canonical_of(envelope("stayops.task.completed", {})).type == "stayops.task.completed"
    assert canonical_of(envelope("airbnb.price.updated", {})).type == "airbnb.price.updated"


def test_a_guest_message_on_either_platform_is_message_received_with_the_platform_ids() -> None:
    on_airbnb = airbnb_message("org-1", AirbnbMessage.model_validate({
        "id": "m-77", "thread_id": "t-5", "listing_id": "lst-1", "confirmation_code": "HMX42",
        "sender": {"role": "guest", "first_name": "Ana"}, "message": "Where do I park?",
        "created_at": T0.isoformat(), "attachments": []}))
    on_hostaway = hostaway_message("org-1", HostawayMessageWebhook.model_validate({
        "event": "message.received", "data": {
            "id": 123, "conversationId": 456, "reservationId": 9001, "listingMapId": 42, "body": "Late check-in?",
            "isIncoming": 1, "insertedOn": T0.isoformat(), "guestName": "Bo", "communicationType": "email"}}))

    assert on_airbnb is not None and on_hostaway is not None
    assert (on_airbnb.message_id, on_airbnb.thread_id, on_airbnb.reservation_id, on_airbnb.text) == (
        "m-77", "t-5", "HMX42", "Where do I park?")
    assert (on_hostaway.message_id, on_hostaway.thread_id, on_hostaway.reservation_id, on_hostaway.listing_id) == (
        "123", "456", "9001", "42")
    event = canonical_of(envelope("hostaway.message.received", on_hostaway.model_dump(mode="json")))
    assert (event.type, event.platform) == ("message.received", "hostaway")


def test_the_hosts_own_messages_are_not_announced() -> None:
    assert airbnb_message("org-1", AirbnbMessage.model_validate({
        "id": "m-78", "thread_id": "t-5", "listing_id": "lst-1", "sender": {"role": "host"},
        "message": "Welcome!", "created_at": T0.isoformat()})) is None
    assert hostaway_message("org-1", HostawayMessageWebhook.model_validate({
        "event": "message.received", "data": {"id": 124, "conversationId": 456, "listingMapId": 42,
                                              "body": "Sure", "isIncoming": 0,
                                              "insertedOn": T0.isoformat()}})) is None
