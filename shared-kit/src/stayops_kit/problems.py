"""RFC 9457 problem details for every error a service returns: one table maps
error kinds to statuses, so domain code never mentions HTTP, and every /v1 route
declares the problems it can answer in OpenAPI, so clients (and the contract
test) know them.

A problem's `type` is `urn:stayops:problem:<code>` and its `code` member the same
stable name (`transition-not-allowed`, `permission-missing`, `validation-failed`):
clients branch on `code`, people read `title` and `detail`."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from stayops_kit.errors import (
    Conflict,
    DomainError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    Unauthorized,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:stayops:problem:"

STATUS_OF: dict[type[Exception], int] = {
    NotFound: 404,
    Conflict: 409,
    PermissionDenied: 403,
    InvalidRequest: 422,
    PreconditionFailed: 412,
    Unauthorized: 401,
}

# Codes of the problems that no domain error class stands for.
VALIDATION_FAILED = "validation-failed"
INTERNAL_ERROR = "internal-error"
UNSTORABLE_TEXT = "unstorable-text"
# PostgreSQL refuses text it cannot store (U+0000 in text or jsonb): SQLSTATE
# untranslatable_character, character_not_in_repertoire. That is the request's fault.
_UNSTORABLE_TEXT_STATES = frozenset({"22P05", "22021"})
_HTTP_CODES: Mapping[int, str] = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}


class Problem(BaseModel):
    """An RFC 9457 problem; members beyond these say more about some problems
    (`errors` on a validation failure, `missing_permission` on a 403)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:stayops:problem:transition-not-allowed"],
                      description="urn:stayops:problem:<code>")
    title: str = Field(examples=["Transition not allowed"])
    status: int = Field(examples=[409])
    detail: str
    code: str = Field(examples=["transition-not-allowed"], description="Stable, machine-readable name.")
    instance: str | None = Field(default=None, description="The path the problem occurred on.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Each reason the request is not valid, with where it is "
        "(`loc` on validation-failed; `path` on an invalid workflow definition).")
    missing_permission: str | None = Field(default=None, description="On permission-missing: what to grant.")


_STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "code", "instance"})

# What each declared status means, in the OpenAPI document.
_DESCRIPTIONS: Mapping[int, str] = {
    401: "No valid token (problem+json, code unauthorized).",
    403: "The caller's role lacks the permission named in missing_permission, or may not act on "
         "this object.",
    404: "No such object in the caller's organisation.",
    400: "The body could not be read as JSON (problem+json, code bad-request).",
    409: "Refused in the object's current state (e.g. a forbidden transition).",
    412: "A precondition on the request failed.",
    422: "The request is well-formed JSON but not valid; errors says why.",
    503: "Not ready: a dependency is unavailable.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses, each a problem+json body; pass as a
    route's `responses=` for a status the kit cannot infer (a 409)."""
    return {
        status: {
            "description": _DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def code_of(exc: BaseException) -> str:
    """The class's declared code (its kind's, if it declares none)."""
    code = getattr(type(exc), "code", None)
    return code if isinstance(code, str) else INTERNAL_ERROR


def problem(
    status: int, detail: str, *, code: str | None = None, title: str | None = None,
    instance: str | None = None, headers: Mapping[str, str] | None = None, **extra: Any,
) -> JSONResponse:
    code = code or _HTTP_CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "-")
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    sent = dict(headers or {})
    if status == 401:
        sent.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=sent or None)


def status_for(exc: Exception) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return 500


def install_problem_handlers(app: FastAPI) -> None:
    async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
        title = getattr(exc, "title", None)
        extra: dict[str, Any] = {}
        permission = getattr(exc, "permission", None)
        if permission is not None:
            extra["missing_permission"] = str(permission)
        errors = getattr(exc, "errors", None)
        if isinstance(errors, list):
            extra["errors"] = errors
        # Members a problem names beyond the standard ones (the tasks of a cycle, ...).
        members = getattr(exc, "problem_members", None)
        if isinstance(members, dict):
            extra.update({k: v for k, v in members.items() if k not in _STANDARD_MEMBERS})
        return problem(status_for(exc), str(exc), code=code_of(exc), title=title,
                       instance=request.url.path, **extra)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
             "msg": str(e.get("msg")), "type": str(e.get("type"))}
            for e in exc.errors()
        ]
        return problem(422, "the request is not valid; see errors", code=VALIDATION_FAILED,
                       title="Invalid request", instance=request.url.path, errors=errors)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of one matching route; a path has several.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return problem(exc.status_code, str(exc.detail), instance=request.url.path, headers=headers)

    async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
        state = getattr(getattr(exc, "orig", None), "sqlstate", None) or getattr(
            getattr(getattr(exc, "orig", None), "__cause__", None), "sqlstate", None)
        if state in _UNSTORABLE_TEXT_STATES:
            return problem(422, "the request holds text that cannot be stored (a NUL character, U+0000); "
                           "remove it and send again", code=UNSTORABLE_TEXT, title="Invalid request",
                           instance=request.url.path)
        return await on_unexpected(request, exc)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "an unexpected error occurred; it has been logged", code=INTERNAL_ERROR,
                       instance=request.url.path)

    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(Unauthorized, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(Exception, on_unexpected)


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document gives the request's path. A path written out
    in the document (`/v1/tasks/count`) is that resource alone, not also the template
    it happens to match (`/v1/tasks/{task_id}`)."""
    paths = request.app.openapi().get("paths", {})
    exact = paths.get(request.url.path)
    if exact is not None:
        return sorted({m.upper() for m in exact if m in _METHODS})
    allowed: set[str] = set()
    for template, operations in paths.items():
        if compile_path(template)[0].match(request.url.path):
            allowed |= {m.upper() for m in operations if m in _METHODS}
    return sorted(allowed)


def declare_problems(routes: Iterable[object], *, authenticated: bool) -> None:
    """Declare on each route the problems the kit itself can answer: 401 (token),
    403 (a `require(...)` dependency), 404 (an object named in the path), 422 (a
    parameter or body that does not validate). A route adds any other status it
    answers (a 409) with `responses=problem_responses(409)`."""
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        statuses: list[int] = []
        if authenticated:
            statuses.append(401)
        if any(getattr(d.call, "permission", None) is not None for d in _dependants(route.dependant)):
            statuses.append(403)
        if route.dependant.path_params:
            statuses.append(404)
        if route.body_field is not None or (route.openapi_extra or {}).get("requestBody"):
            statuses.append(400)  # a body that is not JSON at all
        if _takes_input(route):
            statuses.append(422)
        declared = problem_responses(*statuses)
        # A status the route declared itself stays as the route said it.
        route.responses = {**declared, **{k: v for k, v in route.responses.items()}}


def add_problem_schema(app: FastAPI) -> None:
    """Put the Problem schema among the OpenAPI components the declared responses
    refer to (FastAPI lists only the models of success responses)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def _takes_input(route: APIRoute) -> bool:
    flat = route.dependant
    params = [*flat.path_params, *flat.query_params, *flat.header_params, *flat.cookie_params]
    for sub in _dependants(flat):
        params += [*sub.query_params, *sub.header_params, *sub.cookie_params]
    return bool(params or route.body_field or (route.openapi_extra or {}).get("requestBody"))


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependants(sub)
