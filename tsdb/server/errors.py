"""Exception handlers: every error leaves the server as JSON ``{"error": message, "field": name}``.

Status codes (the engine contract's mapping): InvalidInputError 400, LimitExceededError 422,
UnsupportedError 422, DiskFullError 507, any other StorageError 503; a body over the size limit
413; FastAPI's parameter validation errors 400; unknown routes 404 and wrong methods 405 keep
their codes; anything unexpected 500 (logged with its traceback, never shown to the client).
"""

from __future__ import annotations

import logging
from typing import Final

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from tsdb.errors import (
    DiskFullError,
    InvalidInputError,
    LimitExceededError,
    StorageError,
    TSDBError,
    UnsupportedError,
)

__all__ = ["BodyTooLargeError", "error_body", "error_response", "install_error_handlers", "status_for"]

log = logging.getLogger("tsdb.server")

# Most specific first: the first matching class decides the status.
_STATUS: Final[tuple[tuple[type[TSDBError], int], ...]] = (
    (InvalidInputError, 400),
    (LimitExceededError, 422),
    (UnsupportedError, 422),
    (DiskFullError, 507),
    (StorageError, 503),
)


class BodyTooLargeError(Exception):
    """A request body exceeded ``max_body_bytes``; raised while the body is being read."""

    def __init__(self, limit: int, seen: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes (at least {seen} bytes sent)")
        self.limit = limit
        self.seen = seen


def status_for(exc: TSDBError) -> int:
    """The HTTP status for a tsdb error (500 for a class with no mapping)."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(message: str, field: str | None = None) -> bytes:
    """``{"error": message, "field": field}`` as bytes."""
    return orjson.dumps({"error": message, "field": field})


def error_response(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    """A JSON error response."""
    return Response(error_body(message, field), status_code=status, media_type="application/json", headers=headers)


async def _tsdb_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TSDBError)
    status = status_for(exc)
    if status >= 500:
        log.error("storage error on %s %s: %s", request.method, request.url.path, exc.message)
    return error_response(status, exc.message, exc.field)


async def _too_large(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BodyTooLargeError)
    return error_response(413, str(exc), "body", headers={"Connection": "close"})


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
    field = ".".join(loc) or None
    raw = first.get("input")
    message = f"invalid {field or 'parameter'}"
    if raw is not None:
        message += f" {raw!r:.60}"
    message += f": {first.get('msg', 'invalid value')}"
    return error_response(400, message, field)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), None, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(TSDBError, _tsdb_error)
    app.add_exception_handler(BodyTooLargeError, _too_large)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
