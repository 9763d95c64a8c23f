"""Events of the external sync services. sync-airbnb publishes them on `sync.airbnb`
as `airbnb.*`; sync-hostaway publishes the same payloads on `sync.hostaway` as
`hostaway.*`. Ids (`listing_id`, `reservation_id`, ...) are the platform's."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from stayops_schemas.events.base import Amount, Currency, NonEmptyStr, Payload


class Platform(StrEnum):
    """A sync service, by the platform it talks to; also the prefix of its event types."""

    AIRBNB = "airbnb"
    HOSTAWAY = "hostaway"


class ReservationStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class NightlyPrice(Payload):
    """The price of one night of a listing."""

    date: dt.date
    price: Amount
    currency: Currency


class ListingSynced(Payload):
    """`<platform>.listing.synced`: a listing as the platform now has it. The pricing
    bounds are the owner's: `min_price <= base_price <= max_price` where set."""

    listing_id: NonEmptyStr
    org_id: NonEmptyStr
    title: NonEmptyStr
    city: NonEmptyStr
    country: str | None = None
    capacity: int = Field(ge=1, description="Maximum number of guests.")
    bedrooms: int | None = Field(default=None, ge=0)
    base_price: Amount
    min_price: Amount | None = None
    max_price: Amount | None = None
    currency: Currency
    active: bool = True
    timezone: str | None = Field(
        default=None,
        description="The listing's IANA time zone: it defines the listing's today for pricing, and "
        "local times (check-in, cleaning) are planned in it. Absent: the org's zone.",
        examples=["Europe/Lisbon"],
    )
    synced_at: dt.datetime
    min_stay: int | None = Field(default=None, ge=1, description="The owner's usual minimum stay, in nights.")
    segment: str | None = Field(
        default=None, max_length=100, description="The owner's market segment of the listing.",
        examples=["luxury", "standard", "budget"])
    tags: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=50, description="The owner's labels of the listing on the platform.")

    @model_validator(mode="after")
    def _prices_within_bounds(self) -> Self:
        if self.min_price is not None and self.min_price > self.base_price:
            raise ValueError("min_price is above base_price")
        if self.max_price is not None and self.max_price < self.base_price:
            raise ValueError("max_price is below base_price")
        return self


class _Reservation(Payload):
    """A reservation as it stands after the event; nights are [check_in, check_out)."""

    reservation_id: NonEmptyStr
    listing_id: NonEmptyStr
    org_id: NonEmptyStr
    status: ReservationStatus
    check_in: dt.date
    check_out: dt.date
    guests: int = Field(ge=1)
    nightly_rate: Amount
    total: Amount
    currency: Currency
    booked_at: dt.datetime

    @model_validator(mode="after")
    def _check_out_after_check_in(self) -> Self:
        if self.check_out <= self.check_in:
            raise ValueError("check_out must be after check_in")
        return self


class ReservationCreated(_Reservation):
    """`<platform>.reservation.created`: a new booking."""


class ReservationChanged(_Reservation):
    """`<platform>.reservation.changed`: dates, guests, price or status changed."""


class ReservationCancelled(_Reservation):
    """`<platform>.reservation.cancelled`: the booking is off; its nights are free again."""

    cancelled_at: dt.datetime


class ReviewCreated(Payload):
    """`<platform>.review.created`: a guest reviewed a stay (rating 1..5)."""

    review_id: NonEmptyStr
    listing_id: NonEmptyStr
    org_id: NonEmptyStr
    reservation_id: str | None = None
    rating: int = Field(ge=1, le=5)
    text: str = ""
    submitted_at: dt.datetime


class MessageReceived(Payload):
    """`<platform>.message.received`: a guest wrote to the host in a conversation
    (thread) on the platform. The host's own messages are not announced."""

    message_id: NonEmptyStr
    thread_id: NonEmptyStr = Field(description="The platform's conversation (thread) id.")
    listing_id: NonEmptyStr
    org_id: NonEmptyStr
    reservation_id: str | None = None
    guest_name: str | None = None
    text: str = Field(max_length=10_000)
    received_at: dt.datetime


class PriceUpdated(Payload):
    """`<platform>.price.updated`: the platform applied the prices of an approved
    change (`stayops.pricing.approved`) to one listing."""

    request_id: NonEmptyStr
    listing_id: NonEmptyStr
    org_id: NonEmptyStr
    prices: list[NightlyPrice] = Field(min_length=1)
    applied_at: dt.datetime


class PriceUpdateFailed(Payload):
    """`<platform>.price.update_failed`: the platform refused or could not apply an
    approved change to one listing; the pricing run compensates."""

    request_id: NonEmptyStr
    listing_id: NonEmptyStr
    org_id: NonEmptyStr
    reason: NonEmptyStr


class SyncCounts(Payload):
    """How many records of each kind one sync wrote."""

    listings: int = Field(default=0, ge=0)
    reservations: int = Field(default=0, ge=0)
    reviews: int = Field(default=0, ge=0)
    prices: int = Field(default=0, ge=0)
    market_rates: int = Field(default=0, ge=0)


class SyncCompleted(Payload):
    """`<platform>.sync.completed`: the sync asked for by `stayops.sync.requested`
    finished; every record it wrote was published before this event."""

    request_id: NonEmptyStr
    org_id: NonEmptyStr
    listing_ids: list[str]
    counts: SyncCounts
    completed_at: dt.datetime


class SyncFailed(Payload):
    """`<platform>.sync.failed`: the sync asked for by `stayops.sync.requested` could
    not finish, so whoever waits for it stops waiting."""

    request_id: NonEmptyStr
    org_id: NonEmptyStr
    listing_ids: list[str]
    reason: NonEmptyStr


class MarketRate(Payload):
    """The market on one night: the median nightly price of comparable listings and
    their occupancy (0..1)."""

    date: dt.date
    median_price: Amount
    occupancy: float = Field(ge=0, le=1)
    sample_size: int | None = Field(default=None, ge=0)
    local_event: str | None = Field(default=None, description="A local event that night (a festival, a match).")


class MarketRatesSynced(Payload):
    """`<platform>.market.rates.synced`: market data for the comparables of one
    listing (`listing_id`) or for an area; exactly one of the two is set."""

    org_id: NonEmptyStr
    listing_id: str | None = None
    area: str | None = None
    currency: Currency
    rates: list[MarketRate] = Field(min_length=1)
    synced_at: dt.datetime

    @model_validator(mode="after")
    def _listing_or_area(self) -> Self:
        if (self.listing_id is None) == (self.area is None):
            raise ValueError("set exactly one of listing_id and area")
        return self
