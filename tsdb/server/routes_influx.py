"""InfluxDB line protocol over HTTP: ``POST /write`` (InfluxDB 1.x) and ``POST /api/v2/write``.

Both parse the body with ``tsdb.protocols.influx_line`` (mapping in docs/protocols.md) and
answer as InfluxDB does, so Telegraf and the InfluxDB client libraries work unchanged:

- 204 with no body when every line was stored.
- Partial writes: valid lines are stored; the answer is 400 naming the first bad line (its text
  and number, and why) and how many lines were rejected. InfluxDB 1.x's shape
  ``{"error": "partial write: unable to parse '<line>': <reason>... dropped=N"}`` on ``/write``,
  InfluxDB 2.x's ``{"code": "invalid", "message": "partial write error (N samples written):
  ..."}`` on ``/api/v2/write``. Without any line stored the message starts with
  ``unable to parse`` instead (Telegraf recognises both phrases and does not retry).
  ``dropped=`` counts rejected lines plus samples refused for their timestamp (older than the
  retention window or too far in the future).
- ``Content-Encoding: gzip`` bodies are decompressed; their decompressed size is capped at the
  body limit (413 beyond); another encoding is 415.
- Parameters: ``precision`` (v1: ``n``/``ns``, ``u``/``us``, ``ms``, ``s``, ``m``, ``h``; v2:
  ``ns``, ``us``, ``ms``, ``s``; default ns). ``db``, ``rp``, ``u``, ``p``, ``consistency``
  (v1) and ``bucket``, ``org``, ``orgID`` (v2) are accepted and ignored: tsdb has one
  namespace, and authentication is the server's bearer token (``Authorization: Token ...``
  works too, as InfluxDB 2 clients send it).
- Errors of the store keep the engine contract's codes (422 series limit, 503, 507), in the
  dialect's error shape.

Both are hot routes served by the ingest fast path (``FAST_REQUEST_ROUTES``); the FastAPI
routes below document them and serve the same handler if the fast path is bypassed. Bodies
over ``THREAD_BYTES`` (decompressed) are parsed and stored on a worker thread so one big body
does not stall other connections; smaller ones run inline (a thread hop costs ~200 us).
``GET``/``HEAD /ping`` answers 204 as InfluxDB's ping does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Scope

from tsdb.errors import InvalidInputError, TSDBError
from tsdb.protocols.influx_line import PRECISION_NS, ParseResult, parse_lines
from tsdb.server.bodies import UnsupportedEncodingError, decode_body
from tsdb.server.errors import BodyTooLargeError, status_for
from tsdb.server.fastpath import FastResponse, header
from tsdb.server.state import ServerState, get_state, store_batch, writes_wait_for_disk

if TYPE_CHECKING:
    from tsdb.engine import WriteResult

__all__ = ["FAST_REQUEST_ROUTES", "THREAD_BYTES", "ingest_v1", "ingest_v2", "router"]

router = APIRouter(tags=["influx"])

_PROTOCOL: Final = "influx"
#: Decompressed bodies larger than this are parsed and stored on a worker thread (~15 ms of
#: parsing and up on the reference machine; below it the thread hop costs more than it saves).
THREAD_BYTES: Final = 256 * 1024
#: Longest excerpt of a bad line quoted in an error message.
_LINE_EXCERPT: Final = 120
_V2_CODES: Final = {
    400: "invalid",
    413: "request too large",
    415: "unsupported media type",
    422: "unprocessable entity",
    503: "unavailable",
}


def _version() -> str:
    try:
        return metadata.version("tsdb")
    except metadata.PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True, slots=True)
class _Dialect:
    """What differs between InfluxDB 1.x's /write and 2.x's /api/v2/write."""

    name: str
    precisions: frozenset[str]

    def error(self, status: int, message: str) -> FastResponse:
        """An error answer in this dialect's JSON shape."""
        if self.name == "v1":
            # InfluxDB 1.x repeats the message in X-Influxdb-Error (latin-1 safe, one line).
            shown = message.encode("latin-1", "replace").replace(b"\n", b" ")[:512]
            return FastResponse(status, orjson.dumps({"error": message}), headers=((b"x-influxdb-error", shown),))
        code = _V2_CODES.get(status, "internal error")
        return FastResponse(status, orjson.dumps({"code": code, "message": message}))


_V1: Final = _Dialect("v1", frozenset(PRECISION_NS))
_V2: Final = _Dialect("v2", frozenset({"ns", "us", "ms", "s"}))


@dataclass(frozen=True, slots=True)
class _Outcome:
    parsed: ParseResult
    written: WriteResult | None


async def ingest_v1(state: ServerState, body: bytes, scope: Scope) -> FastResponse:
    """``POST /write`` (InfluxDB 1.x), shared by the fast path and the FastAPI route."""
    return await _ingest(state, body, scope, _V1)


async def ingest_v2(state: ServerState, body: bytes, scope: Scope) -> FastResponse:
    """``POST /api/v2/write`` (InfluxDB 2.x), shared by the fast path and the FastAPI route."""
    return await _ingest(state, body, scope, _V2)


async def _ingest(state: ServerState, body: bytes, scope: Scope, dialect: _Dialect) -> FastResponse:
    limit = state.settings.max_body_bytes
    try:
        precision = _precision(scope["query_string"], dialect)
        try:
            raw = decode_body(body, header(scope, b"content-encoding"), limit)
        except InvalidInputError as exc:
            state.metrics.count_rejected(_PROTOCOL, exc)  # a corrupt gzip body counts as one
            raise
        if len(raw) > THREAD_BYTES or writes_wait_for_disk(state):
            outcome = await run_in_threadpool(_parse_and_store, state, raw, precision)
        else:
            outcome = _parse_and_store(state, raw, precision)
    except UnsupportedEncodingError as exc:
        return dialect.error(415, str(exc))
    except BodyTooLargeError:
        return dialect.error(413, f"the decompressed body exceeds the limit of {limit} bytes (TSDB_MAX_BODY_BYTES)")
    except TSDBError as exc:  # counted where raised (store_batch counts its own)
        return dialect.error(status_for(exc), exc.message)
    message = _problem(outcome, raw, dialect)
    if message is None:
        return FastResponse(204, content_type=None)
    return dialect.error(400, message)


def _precision(query: bytes, dialect: _Dialect) -> str:
    if not query:
        return "ns"
    values = parse_qs(query.decode("latin-1")).get("precision")
    if not values:
        return "ns"
    precision = values[-1]
    if precision not in dialect.precisions:
        accepted = ", ".join(sorted(dialect.precisions))
        raise InvalidInputError(f"invalid precision {precision!r:.20}: expected one of {accepted}", field="precision")
    return precision


def _parse_and_store(state: ServerState, raw: bytes, precision: str) -> _Outcome:
    """Parse (lines without a timestamp get the server's clock) and store the valid lines."""
    parsed = parse_lines(raw, precision, default_time_ns=time.time_ns(), limits=state.settings.limits)
    if parsed.rejected:
        state.metrics.rejected.labels(_PROTOCOL, "invalid_input").inc(len(parsed.rejected))
    written = store_batch(state, parsed.batch, _PROTOCOL, partial=True) if len(parsed.batch) else None
    return _Outcome(parsed, written)


def _problem(outcome: _Outcome, raw: bytes, dialect: _Dialect) -> str | None:
    """The 400 message for what was not stored, or None when everything was."""
    parsed, written = outcome.parsed, outcome.written
    refused = written.rejected if written is not None else 0
    rejected = parsed.rejected_lines
    if not rejected and not refused:
        return None
    parts = []
    if rejected:
        number, reason = parsed.rejected[0]
        total = parsed.accepted_lines + rejected
        parts.append(f"unable to parse '{_line_text(raw, number)}': {reason}; {rejected} of {total} lines rejected")
    if refused:
        assert written is not None
        parts.append(f"{refused} samples refused: " + "; ".join(written.errors))
    text = "; ".join(parts)
    stored = written.accepted if written is not None else 0
    if dialect.name == "v1":
        return f"{'partial write: ' if stored else ''}{text} dropped={rejected + refused}"
    return f"partial write error ({stored} samples written): {text}" if stored else text


def _line_text(raw: bytes, number: int) -> str:
    """Physical line ``number`` (1-based) of the body, shortened for a message."""
    lines = raw.split(b"\n", number)
    line = lines[number - 1] if number - 1 < len(lines) else b""
    text = line.rstrip(b"\r").decode("utf-8", "replace")
    return text if len(text) <= _LINE_EXCERPT else text[: _LINE_EXCERPT - 3] + "..."


def _to_response(answer: FastResponse) -> Response:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in answer.headers}
    media = answer.content_type.decode("latin-1") if answer.content_type is not None else None
    return Response(answer.body, status_code=answer.status, media_type=media, headers=headers)


_LP_BODY: Final = {
    "required": True,
    "content": {
        "text/plain": {
            "schema": {"type": "string"},
            "example": "cpu,host=a usage_user=1.5,usage_system=2i 1747213200000000000\nmem,host=a used=42i",
        }
    },
}
_PARTIAL_V1: Final = {
    "error": "partial write: unable to parse 'cpu,host=a msg=\"disk full\"': line 2: field 'msg' has a string "
    "value ('disk full'); tsdb stores numbers only (...); 1 of 2 lines rejected dropped=1"
}
_PARTIAL_V2: Final = {
    "code": "invalid",
    "message": "partial write error (1 samples written): unable to parse 'cpu,host=a msg=\"disk full\"': line 2: "
    "field 'msg' has a string value ('disk full'); ...; 1 of 2 lines rejected",
}


@router.post(
    "/write",
    summary="Write InfluxDB line protocol (InfluxDB 1.x API)",
    status_code=204,
    openapi_extra={
        "requestBody": _LP_BODY,
        "parameters": [
            {"name": "precision", "in": "query", "schema": {"type": "string", "enum": sorted(_V1.precisions)}},
            {"name": "db", "in": "query", "schema": {"type": "string"}, "description": "accepted, ignored"},
        ],
    },
    responses={
        204: {"description": "Every line stored"},
        400: {
            "description": "Bad lines (valid ones are stored)",
            "content": {"application/json": {"example": _PARTIAL_V1}},
        },
        413: {"description": "Body (or decompressed body) over max_body_bytes"},
        415: {"description": "Content-Encoding other than gzip"},
    },
)
async def write_v1(request: Request) -> Response:
    """Store line protocol; gzip bodies accepted. Partial writes store the valid lines."""
    return _to_response(await ingest_v1(get_state(request), await request.body(), request.scope))


@router.post(
    "/api/v2/write",
    summary="Write InfluxDB line protocol (InfluxDB 2.x API)",
    status_code=204,
    openapi_extra={
        "requestBody": _LP_BODY,
        "parameters": [
            {"name": "precision", "in": "query", "schema": {"type": "string", "enum": sorted(_V2.precisions)}},
            {"name": "bucket", "in": "query", "schema": {"type": "string"}, "description": "accepted, ignored"},
            {"name": "org", "in": "query", "schema": {"type": "string"}, "description": "accepted, ignored"},
        ],
    },
    responses={
        204: {"description": "Every line stored"},
        400: {
            "description": "Bad lines (valid ones are stored)",
            "content": {"application/json": {"example": _PARTIAL_V2}},
        },
        413: {"description": "Body (or decompressed body) over max_body_bytes"},
        415: {"description": "Content-Encoding other than gzip"},
    },
)
async def write_v2(request: Request) -> Response:
    """Store line protocol; gzip bodies accepted. Partial writes store the valid lines."""
    return _to_response(await ingest_v2(get_state(request), await request.body(), request.scope))


async def ping() -> Response:
    """204 with ``X-Influxdb-Version``/``X-Influxdb-Build``, as InfluxDB clients expect."""
    return Response(status_code=204, headers={"X-Influxdb-Version": _version(), "X-Influxdb-Build": "tsdb"})


for _method in ("GET", "HEAD"):
    router.add_api_route(
        "/ping", ping, methods=[_method], status_code=204, summary="InfluxDB-style ping", operation_id=f"ping_{_method}"
    )


#: Routes the fast path serves without FastAPI's router (method, path, handler).
FAST_REQUEST_ROUTES: Final = (("POST", "/write", ingest_v1), ("POST", "/api/v2/write", ingest_v2))
