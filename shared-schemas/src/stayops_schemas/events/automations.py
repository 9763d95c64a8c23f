"""Automation events, produced by automation-service on `stayops.automations`: its
automations firing and finishing, and the commands it sends to the sync services
(`stayops.sync.requested`, `stayops.pricing.approved`) when it executes an
`automated` task."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, Self

from pydantic import Field, model_validator

from stayops_schemas.events.base import Amount, Currency, NonEmptyStr, Payload
from stayops_schemas.events.sync import Platform


class AutomationType(StrEnum):
    SCHEDULED = "scheduled"
    EVENT = "event"
    CONDITIONAL = "conditional"


class ExecutionOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


class AutomationTriggered(Payload):
    """`stayops.automation.triggered`: an automation fired and an execution began.
    A scheduled firing names its `scheduled_for`; an event firing names the event."""

    automation_id: NonEmptyStr
    execution_id: NonEmptyStr
    org_id: NonEmptyStr
    automation_type: AutomationType
    triggered_at: dt.datetime
    scheduled_for: dt.datetime | None = None
    trigger_event_id: str | None = None
    trigger_event_type: str | None = None


class AutomationExecuted(Payload):
    """`stayops.automation.executed`: an execution finished; a failure says why."""

    automation_id: NonEmptyStr
    execution_id: NonEmptyStr
    org_id: NonEmptyStr
    outcome: ExecutionOutcome
    duration_ms: int = Field(ge=0)
    error: str | None = None

    @model_validator(mode="after")
    def _failure_has_error(self) -> Self:
        if self.outcome is ExecutionOutcome.FAILURE and not self.error:
            raise ValueError("a failed execution says why in error")
        if self.outcome is ExecutionOutcome.SUCCESS and self.error is not None:
            raise ValueError("a successful execution has no error")
        return self


class ActionFinished(Payload):
    """`stayops.automation.action.finished`: automation-service finished the action of
    an `automated` task; task-service completes or fails the task from it."""

    org_id: NonEmptyStr
    task_id: NonEmptyStr
    action: NonEmptyStr
    outcome: ExecutionOutcome
    result: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    workflow_run_id: str | None = None
    workflow_step: str | None = None

    @model_validator(mode="after")
    def _failure_has_error(self) -> Self:
        if self.outcome is ExecutionOutcome.FAILURE and not self.error:
            raise ValueError("a failed action says why in error")
        return self


class SyncRequested(Payload):
    """`stayops.sync.requested`: ask a sync service for fresh data. It answers with
    `<platform>.sync.completed` or `.sync.failed` carrying the same `request_id`.
    An empty `listing_ids` means every listing of the organisation."""

    org_id: NonEmptyStr
    request_id: NonEmptyStr
    platform: Platform
    listing_ids: list[str] = Field(default_factory=list)
    requested_by: NonEmptyStr
    workflow_run_id: str | None = None


class PriceChange(Payload):
    """One approved nightly price; `previous_price` is what it replaces, if known."""

    listing_id: NonEmptyStr
    date: dt.date
    price: Amount
    currency: Currency
    previous_price: Amount | None = None


class PricingApproved(Payload):
    """`stayops.pricing.approved`: prices approved by a person or by rule, for the
    sync service of `platform` to apply. It answers per listing with
    `<platform>.price.updated` or `.price.update_failed` carrying the same `request_id`."""

    org_id: NonEmptyStr
    request_id: NonEmptyStr
    platform: Platform
    listing_ids: list[str] = Field(min_length=1)
    prices: list[PriceChange] = Field(min_length=1)
    approved_by: NonEmptyStr = Field(
        description="User id of the approver, or the rule that approved it (e.g. `rule:max_change_10pct`)."
    )
    workflow_run_id: str | None = None

    @model_validator(mode="after")
    def _prices_belong_to_listings(self) -> Self:
        unknown = {price.listing_id for price in self.prices} - set(self.listing_ids)
        if unknown:
            raise ValueError(f"prices for listings not in listing_ids: {sorted(unknown)}")
        return self
