"""Reading a claim check over HTTP: retried, digest-checked, and a failure that
keeps the event for a retry instead of losing it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stayops_kit.claims import HttpResultReader
from stayops_kit.errors import PermanentError, TransientError
from stayops_schemas.claims import make_ref

DETAIL: dict[str, Any] = {"recommendations": [{"listing_id": "L1", "price": "100.00"}], "max_abs_change_pct": 1.0}
REF = make_ref(DETAIL, service="agent-service", kind="pricing", id="r-1", org_id="org-1", summary={"nights": 1})


def reader(answers: list[httpx.Response], seen: list[httpx.Request]) -> HttpResultReader:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return HttpResultReader({"agent-service": "http://agents"}, "key-1", backoff_s=0.001,
                            transport=httpx.MockTransport(answer))


async def test_the_detail_is_fetched_with_the_service_key_after_a_failed_attempt() -> None:
    seen: list[httpx.Request] = []
    got = await reader([httpx.Response(503), httpx.Response(200, json={"result": DETAIL})], seen).fetch(REF)

    assert got == DETAIL
    assert [str(r.url) for r in seen] == ["http://agents/internal/results/org-1/r-1"] * 2
    assert seen[-1].headers["x-api-key"] == "key-1"


async def test_an_owner_that_keeps_failing_is_a_transient_error_so_the_event_is_retried() -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(TransientError, match="r-1"):
        await reader([httpx.Response(404)], seen).fetch(REF)
    assert len(seen) == 3


async def test_detail_with_another_digest_is_refused() -> None:
    forged = {**DETAIL, "max_abs_change_pct": 0.0}
    with pytest.raises(PermanentError, match="digest"):
        await reader([httpx.Response(200, json={"result": forged})], []).fetch(REF)
