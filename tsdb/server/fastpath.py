"""The ingest fast path: hot write routes served without FastAPI's router (pure ASGI).

FastAPI's routing and dependency machinery costs ~100 us per request, as much as parsing and
storing a point; for one-point-per-request clients that halves throughput. This middleware
answers the routes listed in the route modules' ``FAST_ROUTES`` directly: it reads the body
(through the size limit), calls the same handler the FastAPI endpoint calls, and maps errors
exactly as ``tsdb.server.errors`` does. The FastAPI routes stay registered, so OpenAPI
documents them, and ``scope["route"]`` is set to them so telemetry labels stay route templates.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from tsdb.errors import TSDBError
from tsdb.server.errors import BodyTooLargeError, error_body, status_for
from tsdb.server.state import ServerState

__all__ = ["FastPathMiddleware", "Handler"]

log = logging.getLogger("tsdb.server")

#: ``handler(state, body, query_string) -> JSON bytes`` answered with 200; raises TSDBError.
Handler = Callable[[ServerState, bytes, bytes], Awaitable[bytes]]
_JSON_HEADERS = [(b"content-type", b"application/json")]


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

    def __init__(self, app: ASGIApp, state: ServerState, routes: Iterable[tuple[str, str, Handler, Any]]) -> None:
        self.app = app
        self.state = state
        self.table = {(method, path): (handler, route) for method, path, handler, route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self.table.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        if entry is None:
            await self.app(scope, receive, send)
            return
        handler, route = entry
        scope["route"] = route
        try:
            body = await _read_body(receive)
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
        headers = [*_JSON_HEADERS, (b"content-length", b"%d" % len(content))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
