"""The ingest fast path: hot write routes served without FastAPI's router (pure ASGI).

FastAPI's routing and dependency machinery costs ~100 us per request, as much as parsing and
storing a point; for one-point-per-request clients that halves throughput. This middleware
answers the routes listed in the route modules' ``FAST_ROUTES`` directly: it reads the body
(through the size limit), calls the same handler the FastAPI endpoint calls, and maps errors
exactly as ``tsdb.server.errors`` does. The FastAPI routes stay registered, so OpenAPI
documents them, and ``scope["route"]`` is set to them so telemetry labels stay route templates.

Two kinds of handler: a ``Handler`` gets the query string and answers JSON with 200 (the spec's
and the native API); a ``RequestHandler`` gets the whole ASGI scope (headers such as
``Content-Encoding``) and chooses status, headers and body itself (``FastResponse``), for
protocols with their own success codes and error shapes (InfluxDB's 204, remote write).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from tsdb.errors import TSDBError
from tsdb.server.errors import BodyTooLargeError, error_body, status_for
from tsdb.server.state import ServerState

__all__ = ["FastPathMiddleware", "FastResponse", "Handler", "RequestHandler", "header"]

log = logging.getLogger("tsdb.server")

#: ``handler(state, body, query_string) -> JSON bytes`` answered with 200; raises TSDBError.
Handler = Callable[[ServerState, bytes, bytes], Awaitable[bytes]]
_JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(frozen=True, slots=True)
class FastResponse:
    """A complete answer: status, body and headers (latin-1 byte pairs, lower-case names).

    ``content_type`` is sent unless None (a 204 has no body and no content type)."""

    status: int
    body: bytes = b""
    content_type: bytes | None = b"application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ()


#: ``handler(state, body, scope) -> FastResponse``; may raise TSDBError (mapped as for Handler).
RequestHandler = Callable[[ServerState, bytes, Scope], Awaitable[FastResponse]]


def header(scope: Scope, name: bytes) -> bytes | None:
    """The value of request header ``name`` (lower-case bytes), or None; the first one wins."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class FastPathMiddleware:
    """Serve ``(method, path) -> handler`` routes directly; everything else goes to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        state: ServerState,
        routes: Iterable[tuple[str, str, Handler, Any]],
        request_routes: Iterable[tuple[str, str, RequestHandler, Any]] = (),
    ) -> None:
        self.app = app
        self.state = state
        self.table: dict[tuple[str, str], tuple[Any, Any, bool]] = {
            (method, path): (handler, route, False) for method, path, handler, route in routes
        }
        for method, path, handler, route in request_routes:
            self.table[(method, path)] = (handler, route, True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self.table.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        if entry is None:
            await self.app(scope, receive, send)
            return
        handler, route, full = entry
        scope["route"] = route
        extra: tuple[tuple[bytes, bytes], ...] = ()
        content_type: bytes | None = b"application/json"
        try:
            body = await _read_body(receive)
            if full:
                answer: FastResponse = await handler(self.state, body, scope)
                status, content, content_type, extra = answer.status, answer.body, answer.content_type, answer.headers
            else:
                content = await handler(self.state, body, scope["query_string"])
                status = 200
        except _Disconnected:
            return
        except TSDBError as exc:
            status = status_for(exc)
            if status >= 500:
                log.error("storage error on %s %s: %s", scope["method"], scope["path"], exc.message)
            content = error_body(exc.message, exc.field)
        except BodyTooLargeError as exc:
            status, content = 413, error_body(str(exc), "body")
        if content_type == b"application/json" and not extra:
            headers = [*_JSON_HEADERS, (b"content-length", b"%d" % len(content))]
        else:
            headers = [*extra]
            if content_type is not None:
                headers.append((b"content-type", content_type))
            if status != 204:
                headers.append((b"content-length", b"%d" % len(content)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content if status != 204 else b""})
