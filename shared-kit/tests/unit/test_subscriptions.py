"""A consumer group handles exactly the event types `stayops_schemas.subscriptions`
declares for it (what the AsyncAPI document publishes): an undeclared type, or a
declared one left without a handler, fails at start-up (each service's
`consumers.subscriptions()` ends with `complete()`)."""

from __future__ import annotations

from typing import Any

import pytest

from stayops_kit.consumer import EventContext, Subscriptions
from stayops_schemas.subscriptions import TASK_SERVICE


async def handler(ctx: EventContext, payload: Any) -> None:
    return None


def test_a_group_may_not_handle_a_type_it_does_not_declare() -> None:
    subs = Subscriptions(TASK_SERVICE)
    with pytest.raises(ValueError, match=r"does not declare stayops\.task\.created"):
        subs.on("stayops.task.created")(handler)


def test_a_declared_type_without_a_handler_is_refused() -> None:
    subs = Subscriptions(TASK_SERVICE)
    subs.on("stayops.task.requested")(handler)
    with pytest.raises(ValueError, match=r"org\.member\.joined"):
        subs.complete()
