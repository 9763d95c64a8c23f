"""The FastAPI application every service is: problem+json errors, health and
readiness, metrics, correlation-aware logs, authenticated /v1 routes (the
service's own and its event history), and a
lifespan that starts and gracefully stops the service runtime."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import sqlalchemy as sa
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stayops_kit import history
from stayops_kit.api import current_caller, require_service_key
from stayops_kit.clock import Clock, IdFactory, new_id
from stayops_kit.logs import configure_logging, correlation_scope
from stayops_kit.problems import (
    add_problem_schema,
    declare_problems,
    install_problem_handlers,
    problem,
    problem_responses,
)
from stayops_kit.runtime import ServiceRuntime, ServiceSpec, freeze_startup_heap
from stayops_kit.settings import ServiceSettings
from stayops_kit.tracing import configure_tracing


def create_app(
    spec: ServiceSpec,
    *,
    routers: list[APIRouter],
    internal_routers: list[APIRouter] | None = None,
    settings: ServiceSettings | None = None,
    clock: Clock | None = None,
    ids: IdFactory = new_id,
    title: str | None = None,
) -> FastAPI:
    """Routers in `routers` are mounted under /v1 and need a valid JWT; those in
    `internal_routers` under /internal and need the service API key. Every service
    also serves its event history, GET /v1/events (stayops_kit.history)."""
    routers = [*routers, history.router]
    settings = settings or ServiceSettings(service_name=spec.name)
    runtime = ServiceRuntime(spec, settings, clock=clock, ids=ids)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title or spec.name, version="1", lifespan=lifespan)
    app.state.runtime = runtime
    install_problem_handlers(app)
    for router in [*routers, *(internal_routers or [])]:
        # Before including: the app mounts the routers' routes as they are then.
        declare_problems(router.routes, authenticated=True)
    for router in routers:
        app.include_router(router, prefix="/v1", dependencies=[Depends(current_caller)])
    for router in internal_routers or []:
        app.include_router(router, prefix="/internal", dependencies=[Depends(require_service_key)])
    _add_operational_routes(app, runtime)
    add_problem_schema(app)
    _add_request_middleware(app, runtime)
    return app


def _add_operational_routes(app: FastAPI, runtime: ServiceRuntime) -> None:
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.spec.name}

    @app.get("/readyz", tags=["ops"], response_model=None, responses=problem_responses(503))
    async def readyz() -> Response | dict[str, object]:
        checks: dict[str, str] = {}
        try:
            async with runtime.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(sa.text("SELECT 1")), 2)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {exc}"
        try:
            await asyncio.wait_for(runtime.producer.client.fetch_all_metadata(), 2)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"unavailable: {exc}"
        checks["relay"] = runtime.relay_state()
        if all(v == "ok" for v in checks.values()):
            return {"status": "ready", "checks": checks}
        return problem(503, "not ready: " + "; ".join(f"{k} {v}" for k, v in checks.items()),
                       code="not-ready", checks=checks)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _add_request_middleware(app: FastAPI, runtime: ServiceRuntime) -> None:
    @app.middleware("http")
    async def correlate_and_count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        correlation = request.headers.get("x-correlation-id")
        started = time.perf_counter()
        # The request's span is FastAPI's own (its native OpenTelemetry telemetry, on
        # once a tracer provider is installed): a server span continuing the caller's
        # `traceparent`, with a child span per endpoint call.
        with correlation_scope(correlation):
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        runtime.metrics.http_requests.labels(request.method, path, str(response.status_code)).inc()
        response.headers["x-response-time-ms"] = f"{(time.perf_counter() - started) * 1000:.1f}"
        return response


def serve(app_factory: Callable[[], FastAPI], service_name: str) -> None:
    """Run a service: JSON logs, graceful shutdown on SIGTERM/SIGINT (uvicorn waits
    for in-flight requests, then the lifespan drains the consumer and relay)."""
    settings = ServiceSettings(service_name=service_name)
    configure_logging(service_name, settings.log_level, settings.log_json)
    configure_tracing(service_name)  # OTLP export only when OTEL_EXPORTER_OTLP_ENDPOINT is set
    app = app_factory()
    freeze_startup_heap()
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        timeout_graceful_shutdown=20,
        # Longer than clients' and proxies' own idle limits (httpx 5 s, common load
        # balancers 60 s), so a client closes an idle connection first: with the same
        # limit on both ends, a request sent just as the server closes its connection
        # fails with a reset, and a POST is not retried.
        timeout_keep_alive=75,
        access_log=False,
    )

