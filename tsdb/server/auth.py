"""Optional bearer-token authentication (pure ASGI middleware).

When ``auth_token`` is set, every request except the health probes (``/-/healthy``,
``/-/ready``, so orchestrators need no secret) must carry ``Authorization: Bearer <token>``
(Grafana's and Prometheus's data source and remote-write settings can send it;
``Authorization: Token <token>``, as InfluxDB 2 clients send it, is accepted too). Otherwise the
answer is 401 with ``WWW-Authenticate: Bearer`` as RFC 6750 asks. The comparison is constant
time (``hmac.compare_digest``) so the token cannot be guessed byte by byte from timings.
"""

from __future__ import annotations

import hmac
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from tsdb.server.errors import error_body

__all__ = ["OPEN_PATHS", "BearerAuthMiddleware"]

OPEN_PATHS: Final = frozenset({"/-/healthy", "/-/ready"})


class BearerAuthMiddleware:
    """Answer 401 unless the request carries the configured bearer token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if header is None:
            await self._deny(send, "missing Authorization header: send 'Authorization: Bearer <token>'", None)
            return
        scheme, _, presented = header.partition(b" ")
        # "Token" is how InfluxDB 2 clients (Telegraf's influxdb_v2 output) send the same secret.
        if scheme.lower() not in (b"bearer", b"token") or not hmac.compare_digest(presented.strip(), self.token):
            await self._deny(send, "invalid bearer token", b'error="invalid_token"')
            return
        await self.app(scope, receive, send)

    async def _deny(self, send: Send, message: str, error: bytes | None) -> None:
        challenge = b'Bearer realm="tsdb"' + (b", " + error if error else b"")
        body = error_body(message, "Authorization")
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", challenge),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
