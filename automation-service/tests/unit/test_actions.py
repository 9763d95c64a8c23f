"""The action registry: what each action asks of the sync services, and task data
that does not fit an action failing it with the reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from automation_service.actions import PublishPrices, RequestSync, action_registry
from automation_service.domain import AutomatedAction
from stayops_schemas.events.automations import ExecutionOutcome, PricingApproved, SyncRequested
from stayops_schemas.events.org import OrgPolicyUpdated, PriceGuardrails
from stayops_schemas.guardrails import default_policy

AT = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class AnnouncingUnitOfWork:
    """Records what an action announces; actions that only announce need no more."""

    announced: list[tuple[str, Any, str | None]] = field(default_factory=list)
    conn: Any = None  # the policy lookup below needs no database

    async def announce(self, event_type: str, payload: Any, *, org_id: str, key: str,
                       correlation_id: str | None = None) -> None:
        self.announced.append((event_type, payload, correlation_id))


def task(action: str, **data: Any) -> AutomatedAction:
    return AutomatedAction(task_id="t-1", org_id="org-1", action=action, data={"action": action, **data},
                           received_at=AT, workflow_run_id="run-1", workflow_step="publish",
                           correlation_id="run-1")


def policies(policy: OrgPolicyUpdated | None = None) -> Any:
    async def lookup(conn: Any, org_id: str) -> OrgPolicyUpdated:
        return policy or default_policy(org_id)

    return lookup


def test_the_registry_knows_the_four_actions_by_name() -> None:
    assert sorted(action_registry()) == ["noop", "notify", "publish_prices", "request_sync"]


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
    started, finish = await PublishPrices(policies()).start(  # type: ignore[arg-type]
        uow, task("publish_prices", platform="airbnb", prices=prices, approved_by="u-owner"))
    assert finish is None
    assert started.awaiting == ["l-1", "l-2"]
    [(event_type, payload, _)] = uow.announced
    assert event_type == "stayops.pricing.approved"
    assert isinstance(payload, PricingApproved)
    assert (payload.request_id, payload.approved_by, payload.listing_ids) == ("t-1", "u-owner", ["l-1", "l-2"])


async def test_task_data_that_does_not_fit_fails_the_action_saying_what_is_wrong() -> None:
    uow = AnnouncingUnitOfWork()
    _, finish = await PublishPrices(policies()).start(  # type: ignore[arg-type]
        uow, task("publish_prices", platform="airbnb", approved_by="u-owner"))
    assert finish is not None and finish.outcome is ExecutionOutcome.FAILURE
    assert finish.error is not None and "prices" in finish.error
    assert uow.announced == []


async def test_publish_prices_needs_an_approver_and_never_invents_one() -> None:
    uow = AnnouncingUnitOfWork()
    prices = [{"listing_id": "l-1", "date": "2025-04-01", "price": "120.00", "currency": "EUR"}]
    _, finish = await PublishPrices(policies()).start(  # type: ignore[arg-type]
        uow, task("publish_prices", platform="airbnb", prices=prices))
    assert finish is not None and finish.error is not None and "approved_by" in finish.error
    assert uow.announced == []


NIGHT = {"listing_id": "l-1", "date": "2025-04-01", "currency": "EUR", "previous_price": "100.00",
         "min_price": "70.00", "max_price": "160.00"}


@pytest.mark.parametrize(
    ("nights", "says"),
    [
        ([{**NIGHT, "price": "0.00"}], "l-1 2025-04-01 at 0.00: price 0.00 is not above zero"),
        ([{**NIGHT, "price": "-5"}], "price -5 is not above zero"),
        ([{**NIGHT, "price": "165.00"}], "above the listing's maximum of 160.00"),
        ([{**NIGHT, "price": "69.00"}], "below the listing's minimum of 70.00"),
        ([{**NIGHT, "price": "120.00"}, {**NIGHT, "date": "2025-04-02", "price": "120.00", "currency": "USD"}],
         "l-1 2025-04-02 at 120.00: listing l-1 is priced in EUR in the same publish, not USD"),
        ([{**NIGHT, "listing_id": "l-2", "price": "120.00"}], "the listing is priced in USD, not EUR"),
        ([{**NIGHT, "price": "130.00"}], "a change of +30.0 % from 100.00 is more than the 25 %"),
    ],
)
async def test_a_night_the_guardrails_refuse_fails_the_publish_with_a_per_night_report(
    nights: list[dict[str, str]], says: str
) -> None:
    uow = AnnouncingUnitOfWork()
    policy = OrgPolicyUpdated(org_id="org-1", updated_at=AT, pricing=PriceGuardrails(max_change_pct=25),
                              listings={"l-2": PriceGuardrails(currency="USD")})
    _, finish = await PublishPrices(policies(policy)).start(  # type: ignore[arg-type]
        uow, task("publish_prices", platform="airbnb", prices=nights, approved_by="u-owner"))
    assert finish is not None and finish.outcome is ExecutionOutcome.FAILURE
    assert finish.error is not None and says in finish.error, finish.error
    assert "nothing published" in finish.error
    assert finish.result["refused"] and all(set(r) == {"listing_id", "date", "price", "reason"}
                                            for r in finish.result["refused"])
    assert uow.announced == []
