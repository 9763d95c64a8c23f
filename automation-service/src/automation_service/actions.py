"""The action registry: what automation-service does for each `action` an
`automated` task names. An action either finishes at once or asks another service
and stays pending until that service answers (see `handlers`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from automation_service import store
from automation_service.domain import ActionFinish, AutomatedAction, Notification, mixed_currencies, refused_prices
from stayops_kit.claims import ResultReader
from stayops_kit.errors import PermanentError, TransientError
from stayops_kit.outbox import UnitOfWork
from stayops_kit.policies import policy_of
from stayops_schemas.claims import ResultRef, apply_price_edits
from stayops_schemas.events.automations import PriceChange, PricingApproved, SyncRequested
from stayops_schemas.events.base import Currency
from stayops_schemas.events.org import OrgPolicyUpdated
from stayops_schemas.events.sync import Platform
from stayops_schemas.guardrails import check_prices

REQUESTED_BY = "automation"


class Action(Protocol):
    name: str

    async def start(self, uow: UnitOfWork, action: AutomatedAction, results: ResultReader | None = None,
                    ) -> tuple[AutomatedAction, ActionFinish | None]:
        """Do the action's first step in the unit of work. Returns the action as it
        now stands (e.g. the listings it waits for) and how it ended, or None while
        it waits for an answer."""
        ...


class _TaskData(BaseModel):
    """A task's data as an action reads it: other keys (`action`, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")


class _SyncData(_TaskData):
    platform: Platform
    listing_ids: list[str] = Field(default_factory=list)


class _Night(_TaskData):
    """A night to publish as the workflow hands it over: any amount is read, so the
    guardrails (not a parse error) say what is wrong with a price of 0 or -5."""

    listing_id: str = Field(min_length=1)
    date: dt.date
    price: Decimal
    currency: Currency
    previous_price: Decimal | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None


class _PricesData(_TaskData):
    """Either the nights themselves, or (too many to travel) the stored pricing result
    they come from and the decider's edits to it (claim check)."""

    platform: Platform
    prices: list[_Night] = Field(default_factory=list)
    prices_ref: ResultRef | None = None
    # A batch decision approves several stored results (a portfolio's segments).
    prices_refs: list[ResultRef] = Field(default_factory=list)
    price_edits: list[dict[str, Any]] = Field(default_factory=list)
    currency: Currency | None = None
    listing_ids: list[str] | None = None
    # Filled by the workflow engine from the decision step that approved these
    # prices; never defaulted here: no approver, no publish.
    approved_by: str = Field(min_length=1)
    approval_step: str | None = None

    @model_validator(mode="after")
    def _some_prices(self) -> Self:
        if not self.prices and self.prices_ref is None and not self.prices_refs:
            raise ValueError("no prices: give prices, or prices_ref (or prices_refs) to stored pricing results")
        return self

    @property
    def refs(self) -> list[ResultRef]:
        return ([self.prices_ref] if self.prices_ref is not None else []) + list(self.prices_refs)


class _NotifyData(_TaskData):
    user_id: str | None = Field(default=None, min_length=1)
    role_id: str | None = Field(default=None, min_length=1)
    subject: str = Field(min_length=1)
    body: str = ""

    @field_validator("user_id", "role_id", mode="before")
    @classmethod
    def _blank_is_nobody(cls, value: object) -> object:
        # A workflow renders a parameter it was not given (e.g. owner_user_id) as "".
        return None if value == "" else value

    @model_validator(mode="after")
    def _someone_to_tell(self) -> Self:
        if self.user_id is None and self.role_id is None:
            raise ValueError("a notification names a user_id, a role_id or both")
        return self


PolicyLookup = Callable[[AsyncConnection, str], Awaitable[OrgPolicyUpdated]]


def _invalid(action: AutomatedAction, exc: ValidationError) -> ActionFinish:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'data'}: {e['msg']}" for e in exc.errors())
    return ActionFinish({}, error=f"task data does not fit action {action.action!r}: {problems}")


class RequestSync:
    """Ask the platform's sync service for fresh data; finishes on its
    `<platform>.sync.completed` / `.sync.failed` for this task."""

    name = "request_sync"

    async def start(self, uow: UnitOfWork, action: AutomatedAction, results: ResultReader | None = None,
                    ) -> tuple[AutomatedAction, ActionFinish | None]:
        try:
            data = _SyncData.model_validate(action.data)
        except ValidationError as exc:
            return action, _invalid(action, exc)
        await uow.announce(
            "stayops.sync.requested",
            SyncRequested(org_id=action.org_id, request_id=action.task_id, platform=data.platform,
                          listing_ids=data.listing_ids, requested_by=REQUESTED_BY,
                          workflow_run_id=action.workflow_run_id),
            org_id=action.org_id, key=action.task_id, correlation_id=action.correlation_id,
        )
        return action, None


class PublishPrices:
    """Hand approved prices to the platform's sync service, once every night passes
    the org's price guardrails; finishes once every listing answered
    `<platform>.price.updated` or `.price.update_failed`."""

    name = "publish_prices"

    def __init__(self, policies: PolicyLookup = policy_of) -> None:
        self._policies = policies

    async def start(self, uow: UnitOfWork, action: AutomatedAction, results: ResultReader | None = None,
                    ) -> tuple[AutomatedAction, ActionFinish | None]:
        try:
            data = _PricesData.model_validate(action.data)
            by_reference = bool(data.refs)
            if by_reference:
                fetched = [night for ref in data.refs
                           for night in await self._fetched_nights(data, ref, action, results)]
                data = data.model_copy(update={"prices": fetched})
        except ValidationError as exc:
            return action, _invalid(action, exc)
        if data.listing_ids:
            # Only the listings asked for (a retried publish names the ones not yet applied).
            data = data.model_copy(update={"prices": [p for p in data.prices if p.listing_id in data.listing_ids]})
        nights = [night.model_dump() for night in data.prices]
        policy = await self._policies(uow.conn, action.org_id)
        refused = mixed_currencies(nights) + check_prices(policy, nights)
        if refused:
            return action, refused_prices(refused)
        listing_ids = data.listing_ids or list(dict.fromkeys(p.listing_id for p in data.prices))
        # Prices by reference can be many: one event per listing, so none grows with the org.
        groups = [[lid] for lid in listing_ids] if by_reference else [listing_ids]
        try:
            approvals = [PricingApproved(
                org_id=action.org_id, request_id=action.task_id, platform=data.platform,
                listing_ids=group, approved_by=data.approved_by, workflow_run_id=action.workflow_run_id,
                prices=[PriceChange(listing_id=p.listing_id, date=p.date, price=p.price, currency=p.currency,
                                    previous_price=p.previous_price) for p in data.prices if p.listing_id in group],
            ) for group in groups]
        except ValidationError as exc:
            return action, _invalid(action, exc)
        for approved in approvals:
            await uow.announce("stayops.pricing.approved", approved, org_id=action.org_id,
                               key=action.task_id, correlation_id=action.correlation_id)
        return replace(action, awaiting=listing_ids), None

    @staticmethod
    async def _fetched_nights(data: _PricesData, ref: ResultRef, action: AutomatedAction,
                              results: ResultReader | None) -> list[_Night]:
        """The approved nights of a stored pricing result: its recommendations with the
        decider's edits applied. A fetch that fails is transient (the task event is
        retried); another org's result is refused."""
        if ref.org_id != action.org_id or ref.kind != "pricing":
            raise PermanentError(f"task {action.task_id}: prices_ref names a {ref.kind} result of another "
                                 "org or skill")
        if results is None:
            raise TransientError(f"task {action.task_id}: no result reader to fetch {ref.id}")
        detail = await results.fetch(ref)
        prices = apply_price_edits(detail.get("recommendations") or [], data.price_edits,
                                   data.currency or detail.get("currency"))
        return [_Night.model_validate(night) for night in prices]


class Notify:
    """Leave a notification for a user, a role's members, or both (`GET
    /v1/notifications`); finishes at once."""

    name = "notify"

    async def start(self, uow: UnitOfWork, action: AutomatedAction, results: ResultReader | None = None,
                    ) -> tuple[AutomatedAction, ActionFinish | None]:
        try:
            data = _NotifyData.model_validate(action.data)
        except ValidationError as exc:
            return action, _invalid(action, exc)
        notification = Notification(
            id=uow.ids(), org_id=action.org_id, user_id=data.user_id, role_id=data.role_id,
            subject=data.subject, body=data.body, created_at=uow.clock.now(), task_id=action.task_id,
        )
        await store.insert_notification(uow.conn, notification)
        return action, ActionFinish({"notification_id": notification.id, "user_id": data.user_id,
                                     "role_id": data.role_id})


class Noop:
    """Do nothing and succeed at once, echoing the task's `echo` (if any) as its
    result: a workflow step that only needs the round trip (benchmarks, tests, a
    placeholder while the real action is built)."""

    name = "noop"

    async def start(self, uow: UnitOfWork, action: AutomatedAction, results: ResultReader | None = None,
                    ) -> tuple[AutomatedAction, ActionFinish | None]:
        echo = action.data.get("echo")
        return action, ActionFinish({"noop": True, **({"echo": echo} if echo is not None else {})})


ActionRegistry = Mapping[str, Action]


def action_registry() -> ActionRegistry:
    actions: list[Action] = [RequestSync(), PublishPrices(), Notify(), Noop()]
    return MappingProxyType({action.name: action for action in actions})
