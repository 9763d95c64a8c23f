"""Helpers for task-service's integration tests over REST, beside the kit's
(`stayops_kit.testing`): a caller's headers, a task created, a task's history."""

from __future__ import annotations

from typing import Any

import httpx


def auth(stack: Any, org: str, user: str = "owner-1", role: str = "owner", department: str | None = None,
         permissions: list[str] | None = None) -> dict[str, str]:
    """Headers of a caller in `org`, with a token the test stack mints; the grants are
    the role's unless `permissions` names them."""
    token = stack.mint_token(org, user, role, department=department, permissions=permissions)
    return {"Authorization": f"Bearer {token}"}


async def create(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    """A manual task ("Check the boiler" unless `fields` name another title), created over REST."""
    response = await client.post("/v1/tasks", json={"title": "Check the boiler", "task_type": "manual",
                                                    **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def history(client: httpx.AsyncClient, headers: dict[str, str], task_id: str) -> list[dict[str, Any]]:
    """A task's history entries, oldest first."""
    response = await client.get(f"/v1/tasks/{task_id}/history", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]
