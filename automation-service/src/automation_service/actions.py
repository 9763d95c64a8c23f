"""The action registry: what automation-service does for each `action` an
`automated` task names. An action either finishes at once or asks another service
and stays pending until that service answers (see `handlers`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from automation_service import store
from automation_service.domain import ActionFinish, AutomatedAction, Notification
from stayops_kit.outbox import UnitOfWork
from stayops_schemas.events.automations import PriceChange, PricingApproved, SyncRequested
from stayops_schemas.events.sync import Platform

REQUESTED_BY = "automation"


class Action(Protocol):
    name: str

    async def start(self, uow: UnitOfWork, action: AutomatedAction) -> tuple[AutomatedAction, ActionFinish | None]:
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


class _PricesData(_TaskData):
    platform: Platform
    prices: list[PriceChange] = Field(min_length=1)
    listing_ids: list[str] | None = None
    approved_by: str | None = Field(default=None, min_length=1)


class _NotifyData(_TaskData):
    user_id: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    body: str = ""


def _invalid(action: AutomatedAction, exc: ValidationError) -> ActionFinish:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'data'}: {e['msg']}" for e in exc.errors())
    return ActionFinish({}, error=f"task data does not fit action {action.action!r}: {problems}")


class RequestSync:
    """Ask the platform's sync service for fresh data; finishes on its
    `<platform>.sync.completed` / `.sync.failed` for this task."""

    name = "request_sync"

    async def start(self, uow: UnitOfWork, action: AutomatedAction) -> tuple[AutomatedAction, ActionFinish | None]:
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
    """Hand approved prices to the platform's sync service; finishes once every
    listing answered `<platform>.price.updated` or `.price.update_failed`."""

    name = "publish_prices"

    async def start(self, uow: UnitOfWork, action: AutomatedAction) -> tuple[AutomatedAction, ActionFinish | None]:
        try:
            data = _PricesData.model_validate(action.data)
            listing_ids = data.listing_ids or list(dict.fromkeys(p.listing_id for p in data.prices))
            approved = PricingApproved(
                org_id=action.org_id, request_id=action.task_id, platform=data.platform,
                listing_ids=listing_ids, prices=data.prices,
                # Workflows name the approver; a task without one was approved by its run.
                approved_by=data.approved_by or f"workflow-run:{action.workflow_run_id or action.task_id}",
                workflow_run_id=action.workflow_run_id,
            )
        except ValidationError as exc:
            return action, _invalid(action, exc)
        await uow.announce("stayops.pricing.approved", approved, org_id=action.org_id,
                           key=action.task_id, correlation_id=action.correlation_id)
        return replace(action, awaiting=listing_ids), None


class Notify:
    """Leave a notification for a user (`GET /v1/notifications`); finishes at once."""

    name = "notify"

    async def start(self, uow: UnitOfWork, action: AutomatedAction) -> tuple[AutomatedAction, ActionFinish | None]:
        try:
            data = _NotifyData.model_validate(action.data)
        except ValidationError as exc:
            return action, _invalid(action, exc)
        notification = Notification(
            id=uow.ids(), org_id=action.org_id, user_id=data.user_id, subject=data.subject,
            body=data.body, created_at=uow.clock.now(), task_id=action.task_id,
        )
        await store.insert_notification(uow.conn, notification)
        return action, ActionFinish({"notification_id": notification.id, "user_id": data.user_id})


ActionRegistry = Mapping[str, Action]


def action_registry() -> ActionRegistry:
    actions: list[Action] = [RequestSync(), PublishPrices(), Notify()]
    return MappingProxyType({action.name: action for action in actions})
