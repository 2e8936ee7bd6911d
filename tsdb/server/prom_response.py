"""Answers of the Prometheus HTTP API routes: envelopes, errors and the route decorator.

Every ``/api/v1`` JSON route answers as Prometheus does, errors included:
``{"status":"error","errorType":"bad_data","error":"..."}`` with the status of the error type
(``tsdb.protocols.prom_api``): bad_data 400, execution 422 (limits, unsupported features,
failed evaluation), unavailable 503 (storage), internal 500. ``prometheus_api`` wraps a route
so any error it raises leaves in that shape instead of the server's ``{"error", "field"}``.
A body over the size limit still answers the server's 413.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, ParamSpec, TypeVar

from fastapi import APIRouter
from starlette.responses import Response

from tsdb.errors import InvalidQueryError, TSDBError
from tsdb.protocols import prom_api
from tsdb.query.promql import QueryExecutionError
from tsdb.server.errors import BodyTooLargeError

__all__ = ["JSON", "ok", "ok_bytes", "prometheus_api", "route"]

log = logging.getLogger("tsdb.server")
JSON: Final = "application/json"
_P = ParamSpec("_P")
_F = TypeVar("_F", bound=Callable[..., Any])


def route(router: APIRouter, path: str, methods: Sequence[str], **kwargs: Any) -> Callable[[_F], _F]:
    """Register ``fn`` for each method separately, each with its own OpenAPI operation id
    (one route for several methods would give them all the same id)."""

    def register(fn: _F) -> _F:
        for method in methods:
            operation = f"prometheus_{fn.__name__}_{method.lower()}"
            router.add_api_route(path, fn, methods=[method], operation_id=operation, **kwargs)
        return fn

    return register


def ok(data: Any, warnings: Iterable[str] | None = None) -> Response:
    """``{"status":"success","data":...}`` (plain data, Go-style JSON escaping)."""
    return Response(prom_api.success_body(data, warnings), media_type=JSON)


def ok_bytes(body: bytes) -> Response:
    """A prebuilt success body."""
    return Response(body, media_type=JSON)


def error_response(exc: BaseException) -> Response:
    """The Prometheus error envelope for ``exc`` with its HTTP status."""
    parse_error = isinstance(exc, InvalidQueryError) and not isinstance(exc, QueryExecutionError)
    if parse_error and exc.field == "query" and not exc.message.startswith("invalid parameter"):
        # Prometheus prefixes query parse errors with the parameter, as for other parameters.
        exc = InvalidQueryError(f'invalid parameter "query": {exc.message}', field="query")
    status, body = prom_api.error_for_exception(exc)
    if status >= 500:
        log.error("Prometheus API error (%d): %s", status, getattr(exc, "message", exc))
    return Response(body, status_code=status, media_type=JSON)


def prometheus_api(fn: Callable[_P, Awaitable[Response]]) -> Callable[_P, Awaitable[Response]]:
    """Decorate a route: TSDBError and unexpected errors become Prometheus error envelopes."""

    @functools.wraps(fn)
    async def route(*args: _P.args, **kwargs: _P.kwargs) -> Response:
        try:
            return await fn(*args, **kwargs)
        except BodyTooLargeError:
            raise  # the server's 413
        except TSDBError as exc:
            return error_response(exc)
        except Exception as exc:
            log.exception("unhandled error in a Prometheus API route", exc_info=exc)
            return error_response(RuntimeError("internal server error; the server log has the details"))

    return route
