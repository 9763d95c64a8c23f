"""The action registry: what each action asks of the sync services, and task data
that does not fit an action failing it with the reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from automation_service.actions import PublishPrices, RequestSync, action_registry
from automation_service.domain import AutomatedAction
from stayops_schemas.events.automations import ExecutionOutcome, PricingApproved, SyncRequested

AT = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class AnnouncingUnitOfWork:
    """Records what an action announces; actions that only announce need no more."""

    announced: list[tuple[str, Any, str | None]] = field(default_factory=list)

    async def announce(self, event_type: str, payload: Any, *, org_id: str, key: str,
                       correlation_id: str | None = None) -> None:
        self.announced.append((event_type, payload, correlation_id))


def task(action: str, **data: Any) -> AutomatedAction:
    return AutomatedAction(task_id="t-1", org_id="org-1", action=action, data={"action": action, **data},
                           received_at=AT, workflow_run_id="run-1", workflow_step="publish",
                           correlation_id="run-1")


def test_the_registry_knows_the_three_actions_by_name() -> None:
    assert sorted(action_registry()) == ["notify", "publish_prices", "request_sync"]


async def test_request_sync_asks_for_the_listings_with_the_task_id_as_request_id() -> None:
    uow = AnnouncingUnitOfWork()
    _, finish = await RequestSync().start(uow, task("request_sync", platform="airbnb",  # type: ignore[arg-type]
                                                     listing_ids=["l-1"]))
    assert finish is None
    [(event_type, payload, correlation)] = uow.announced
    assert event_type == "stayops.sync.requested"
    assert payload == SyncRequested(org_id="org-1", request_id="t-1", platform="airbnb", listing_ids=["l-1"],
                                    requested_by="automation", workflow_run_id="run-1")
    assert correlation == "run-1"


async def test_publish_prices_waits_for_every_listing_it_priced() -> None:
    uow = AnnouncingUnitOfWork()
    prices = [{"listing_id": listing, "date": "2025-04-01", "price": "120.00", "currency": "EUR"}
              for listing in ("l-1", "l-2", "l-1")]
    started, finish = await PublishPrices().start(  # type: ignore[arg-type]
        uow, task("publish_prices", platform="airbnb", prices=prices, approved_by="u-owner"))
    assert finish is None
    assert started.awaiting == ["l-1", "l-2"]
    [(event_type, payload, _)] = uow.announced
    assert event_type == "stayops.pricing.approved"
    assert isinstance(payload, PricingApproved)
    assert (payload.request_id, payload.approved_by, payload.listing_ids) == ("t-1", "u-owner", ["l-1", "l-2"])


async def test_task_data_that_does_not_fit_fails_the_action_saying_what_is_wrong() -> None:
    uow = AnnouncingUnitOfWork()
    _, finish = await PublishPrices().start(uow, task("publish_prices", platform="airbnb"))  # type: ignore[arg-type]
    assert finish is not None and finish.outcome is ExecutionOutcome.FAILURE
    assert finish.error is not None and "prices" in finish.error
    assert uow.announced == []
