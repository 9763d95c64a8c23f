"""Reading a claim check: fetch a stored result over its owner's REST API
(`GET /internal/results/{org_id}/{id}` with the service API key), with timeouts and
retries, and check its digest. A fetch that keeps failing is a `TransientError`, so
the event that needed it is retried (then dead-lettered, redrivable), never dropped;
detail whose digest is not the ref's is a `PermanentError`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from stayops_kit.errors import PermanentError, TransientError
from stayops_schemas.claims import DetailMismatch, ResultRef


class ResultReader(Protocol):
    async def fetch(self, ref: ResultRef) -> dict[str, Any]:
        """The stored result `ref` names, its digest checked."""
        ...


class _Retry(Exception):
    pass


class HttpResultReader:
    """Fetches stored results from the services that own them. `base_urls` maps a
    service name (`agent-service`) to its base URL."""

    def __init__(self, base_urls: Mapping[str, str], api_key: str, *, timeout_s: float = 10.0,
                 attempts: int = 3, backoff_s: float = 0.2,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._base_urls = dict(base_urls)
        self._api_key = api_key
        self._timeout = httpx.Timeout(timeout_s)
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._transport = transport

    async def fetch(self, ref: ResultRef) -> dict[str, Any]:
        base = self._base_urls.get(ref.service)
        if not base:
            raise TransientError(f"no base URL for {ref.service}: set STAYOPS_{_env(ref.service)}_URL")
        url = f"{base.rstrip('/')}/internal/results/{ref.org_id}/{ref.id}"
        try:
            body = await self._get(url)
        except _Retry as exc:
            raise TransientError(f"could not fetch result {ref.id} from {ref.service}: {exc}") from exc
        detail = body.get("result")
        try:
            ref.verify(detail)
        except DetailMismatch as exc:
            raise PermanentError(str(exc)) from exc
        assert isinstance(detail, dict)
        return detail

    async def _get(self, url: str) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport,
                                     headers={"X-API-Key": self._api_key}) as client:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(self._attempts),
                                               wait=wait_exponential(multiplier=self._backoff_s, max=2),
                                               retry=retry_if_exception_type(_Retry), reraise=True):
                with attempt:
                    try:
                        response = await client.get(url)
                    except httpx.HTTPError as exc:
                        raise _Retry(f"{type(exc).__name__}: {exc}") from exc
                    if response.status_code == 404:
                        # Not there (yet, or not for this org): the owner may still be committing.
                        raise _Retry(f"{url} answered 404")
                    if response.status_code >= 400:
                        raise _Retry(f"{url} answered {response.status_code}: {response.text[:200]}")
                    body: dict[str, Any] = response.json()
                    return body
        raise AssertionError("unreachable")


def _env(service: str) -> str:
    return service.upper().replace("-", "_")


def result_reader(settings: Any) -> HttpResultReader:
    """The reader a service's settings describe."""
    return HttpResultReader({"agent-service": settings.agent_service_url},
                            settings.service_api_key.get_secret_value(),
                            timeout_s=settings.result_fetch_timeout_s)
