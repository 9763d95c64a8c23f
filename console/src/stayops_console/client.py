"""The four services' REST APIs, called server side with the signed-in member's token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


class ServiceError(Exception):
    """A service refused, failed or could not be reached; `status` is what it answered
    (0: no answer). A page shows it instead of failing."""

    def __init__(self, service: str, path: str, status: int, detail: str) -> None:
        super().__init__(f"{service} {path}: {status} {detail}")
        self.service = service
        self.path = path
        self.status = status
        self.detail = detail

    @property
    def not_available(self) -> bool:
        """404 on a route: this service does not offer it (yet), or the thing is not there."""
        return self.status == 404

    @property
    def signed_out(self) -> bool:
        return self.status == 401


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        for key in ("detail", "title"):
            value = body.get(key)
            if isinstance(value, str):
                return value
        return str(body.get("detail") or body)[:300]
    return str(body)[:300]


@dataclass
class Services:
    """One member's view of the services: every call carries their token."""

    urls: dict[str, str]
    http: httpx.AsyncClient
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def call(self, service: str, method: str, path: str, *, params: Any = None,
                   json: Any = None) -> Any:
        url = f"{self.urls[service]}{path}"
        try:
            response = await self.http.request(method, url, params=params, json=json, headers=self.headers)
        except httpx.HTTPError as exc:
            raise ServiceError(service, path, 0, f"cannot be reached ({exc.__class__.__name__})") from exc
        if response.status_code >= 400:
            raise ServiceError(service, path, response.status_code, _detail(response))
        return response.json() if response.content else None

    async def get(self, service: str, path: str, params: Any = None) -> Any:
        return await self.call(service, "GET", path, params=params)

    async def post(self, service: str, path: str, json: Any = None) -> Any:
        return await self.call(service, "POST", path, json=json if json is not None else {})
