"""Request body size limit, enforced while the body is read (pure ASGI middleware).

A declared ``Content-Length`` over the limit is refused with 413 before a byte of the body is
read. A body without one (chunked) is counted as it arrives; the first chunk past the limit
raises ``BodyTooLargeError`` inside the route's ``await request.body()``, which the error
handlers turn into 413. Either way the server never holds more than the limit (plus one
network chunk) of a body in memory.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tsdb.server.errors import BodyTooLargeError, error_body

__all__ = ["BodyLimitMiddleware"]


class BodyLimitMiddleware:
    """Refuse request bodies longer than ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0  # the HTTP parser has already refused a malformed length
                if declared > self.max_bytes:
                    await self._refuse(send, declared)
                    return
                break
        limit = self.max_bytes
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLargeError(limit, seen)
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send: Send, declared: int) -> None:
        body = error_body(f"request body of {declared} bytes exceeds the limit of {self.max_bytes} bytes", "body")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
