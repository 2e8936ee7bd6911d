"""The ASGI application: ``create_app(settings, db=None)`` builds the FastAPI app.

Lifespan: on start-up the app opens a ``TSDB`` from the settings (unless one was passed in:
then the caller owns it and closes it), marks itself ready and starts one background task
that runs ``db.run_maintenance()`` (retention, recompression) every
``maintenance_interval_seconds`` in a worker thread. On shutdown it stops being ready, waits
for a running maintenance pass to finish, and closes the database it opened.

Middleware, outermost first: telemetry (so it also counts 401s and 413s), bearer auth (only
when a token is set), the body size limit, the ingest fast path (hot write routes served
without FastAPI's router; see ``tsdb.server.fastpath``). All are pure ASGI.

Routers: health, the spec's API, the native API, and the ecosystem protocols: InfluxDB line
protocol (``/write``, ``/api/v2/write``), Prometheus remote write/read (``/api/v1/write``,
``/api/v1/read``) and the Prometheus HTTP API (``/api/v1/query`` and friends). The hot write
routes of every protocol are also served by the fast path (``_fast_routes()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import metadata
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from tsdb.server import (
    routes_health,
    routes_influx,
    routes_native,
    routes_prom,
    routes_prom_status,
    routes_remote,
    routes_spec,
)
from tsdb.server.auth import BearerAuthMiddleware
from tsdb.server.errors import install_error_handlers
from tsdb.server.fastpath import FastPathMiddleware, Handler, RequestHandler
from tsdb.server.limits import BodyLimitMiddleware
from tsdb.server.state import ServerState
from tsdb.server.telemetry import ServerMetrics, TelemetryMiddleware
from tsdb.settings import ServerSettings

if TYPE_CHECKING:
    from tsdb.engine import TSDB

__all__ = ["create_app", "open_db"]

log = logging.getLogger("tsdb.server")

_DESCRIPTION = """\
A fast, lightweight time series database.

* **The spec's API**: `POST /data`, `GET /metrics`.
* **Native API** under `/api/native/`: queries with aggregation, downsampling, grouping and fill;
  series and label listings; columnar batch writes; deletes.
* **InfluxDB line protocol**: `POST /write` (1.x) and `POST /api/v2/write` (2.x), gzip bodies,
  partial writes answered as InfluxDB does.
* **Prometheus**: remote write `POST /api/v1/write`, remote read `POST /api/v1/read`, and the HTTP
  API Grafana's Prometheus data source uses (`/api/v1/query`, `/api/v1/query_range`,
  `/api/v1/series`, `/api/v1/labels`, ...), with Prometheus's envelopes and error types.
* **Health**: `/-/healthy`, `/-/ready`. **Self-monitoring**: `GET /metrics` with an `Accept`
  header asking for the Prometheus text format or OpenMetrics.

Errors are JSON `{"error": "...", "field": "..."}` (the Prometheus API and InfluxDB routes answer
in their own protocol's error shape): 400 invalid input (nothing stored), 401 missing or
wrong bearer token, 413 body too large, 422 a configured limit reached or an unsupported request,
503 storage unavailable, 507 disk full.
"""


def _version() -> str:
    try:
        return metadata.version("tsdb")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def open_db(settings: ServerSettings) -> TSDB:
    """Open the engine the server runs on, configured from ``settings``."""
    from tsdb.engine import TSDB

    return TSDB(settings=settings.engine_settings())


def _routers() -> list[APIRouter]:
    return [
        routes_health.router,
        routes_spec.router,
        routes_native.router,
        routes_influx.router,
        routes_remote.router,
        routes_prom.router,
        routes_prom_status.router,
    ]


async def _maintenance_loop(state: ServerState, stop: asyncio.Event) -> None:
    """Run ``db.run_maintenance`` every interval until ``stop`` is set; errors are logged, not fatal."""
    interval = state.settings.maintenance_interval_seconds
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
        db = state.db
        if db is None:
            continue
        try:
            await run_in_threadpool(db.run_maintenance)
        except Exception:
            log.exception("background maintenance failed; retrying in %.1f s", interval)


def create_app(settings: ServerSettings | None = None, db: TSDB | None = None) -> FastAPI:
    """The tsdb HTTP application. With ``db`` given the app uses it and leaves closing it to the caller."""
    settings = settings or ServerSettings()
    state = ServerState(settings=settings, metrics=ServerMetrics(lambda: state.db), db=db)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = state.db is None
        if owned:
            state.db = await run_in_threadpool(open_db, settings)
        stop = asyncio.Event()
        task = asyncio.create_task(_maintenance_loop(state, stop), name="tsdb-maintenance")
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            stop.set()
            await task  # a pass in progress finishes before the database closes
            if owned and state.db is not None:
                opened, state.db = state.db, None
                await run_in_threadpool(opened.close)

    app = FastAPI(
        title="tsdb",
        version=_version(),
        description=_DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "spec", "description": "The product spec's API, exactly as documented."},
            {"name": "native", "description": "Native query, listing, write and delete API."},
            {"name": "health", "description": "Liveness and readiness probes (never need a token)."},
            {"name": "influx", "description": "InfluxDB line protocol writes (1.x and 2.x APIs)."},
            {"name": "prometheus remote", "description": "Prometheus remote write 1.0 and remote read."},
            {"name": "prometheus", "description": "The Prometheus HTTP API: PromQL queries, listings, status."},
        ],
    )
    app.state.tsdb = state
    install_error_handlers(app)
    for router in _routers():
        app.include_router(router)
    # add_middleware wraps what is there: the last added runs first.
    app.add_middleware(FastPathMiddleware, state=state, routes=_fast_routes(), request_routes=_fast_request_routes())
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.auth_token:
        app.add_middleware(BearerAuthMiddleware, token=settings.auth_token)
        _document_bearer(app)
    app.add_middleware(TelemetryMiddleware, metrics=state.metrics)
    return app


def _documented(router: APIRouter) -> dict[tuple[str, str], APIRoute]:
    return {
        (method, route.path): route
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }


def _fast_routes() -> list[tuple[str, str, Handler, APIRoute]]:
    """The fast-path table: each module's FAST_ROUTES with the APIRoute that documents it."""
    out = []
    for module in (routes_spec, routes_native):
        documented = _documented(module.router)
        for method, path, handler in module.FAST_ROUTES:
            out.append((method, path, handler, documented[(method, path)]))
    return out


def _fast_request_routes() -> list[tuple[str, str, RequestHandler, APIRoute]]:
    """The fast path's full-request routes: FAST_REQUEST_ROUTES with their documenting APIRoute."""
    out = []
    for module in (routes_influx, routes_remote):
        documented = _documented(module.router)
        for method, path, handler in module.FAST_REQUEST_ROUTES:
            out.append((method, path, handler, documented[(method, path)]))
    return out


def _document_bearer(app: FastAPI) -> None:
    """Declare the bearer scheme in the OpenAPI document so /docs offers 'Authorize'."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
