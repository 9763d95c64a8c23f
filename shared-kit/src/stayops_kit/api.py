"""FastAPI dependencies every service's routes use: the caller, the unit of work,
the org scope, the internal API key."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stayops_kit.auth import Caller
from stayops_kit.errors import Unauthorized
from stayops_kit.runtime import ServiceRuntime

_bearer = HTTPBearer(auto_error=False, description="JWT issued by org-service")


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]


def current_caller(
    request: Request,
    runtime: Runtime,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    cached: Caller | None = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <JWT>'")
    caller = runtime.verifier.verify(credentials.credentials)
    request.state.caller = caller
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]


def require_service_key(request: Request, runtime: Runtime) -> None:
    """Internal endpoints (replay, admin) take the service API key, not a user token."""
    given = request.headers.get("x-api-key", "")
    expected = runtime.settings.service_api_key.get_secret_value()
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("internal endpoint: send the service API key in X-API-Key")


def correlation_id(request: Request) -> str | None:
    value: Any = request.headers.get("x-correlation-id")
    return str(value) if value else None


CorrelationId = Annotated[str | None, Depends(correlation_id)]


# Pages start at most this far in: a deeper offset is refused (422) rather than
# handed to PostgreSQL, whose OFFSET is a 64-bit integer.
MAX_OFFSET = 1_000_000
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many items to skip.")]

# The largest value a PostgreSQL `integer` column holds: versions and counters that
# reach the database are bounded by it, so an oversized one is a 422, not a 500.
MAX_INT32 = 2**31 - 1
