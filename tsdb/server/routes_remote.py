"""Prometheus remote write 1.0 (``POST /api/v1/write``) and remote read (``POST /api/v1/read``).

Remote write, as the spec and Prometheus's own receiver (``storage/remote/write_handler.go``)
answer:

- 204 when the request is stored. Headers: ``Content-Encoding`` must be ``snappy`` when sent
  and ``Content-Type`` ``application/x-protobuf`` (a ``proto=`` other than
  ``prometheus.WriteRequest``, i.e. remote write 2.0, is refused): else 415, as Prometheus.
  ``X-Prometheus-Remote-Write-Version`` is accepted whatever its value (1.0 senders say 0.1.0).
- 400 (the spec's "do not retry") for a body that does not decode: bad snappy, bad protobuf,
  a series without ``__name__``, invalid or reserved names, limits (details in
  docs/protocols.md). Nothing of such a request is stored.
- Samples outside the accepted time window (older than the retention window, or more than
  the future tolerance ahead): Prometheus's receiver answers 400 for such out-of-bounds
  samples (not retried, since a retry cannot succeed). tsdb answers 400 too, naming how many
  were refused and why, but stores the request's other samples first: Prometheus drops a batch
  it got a 400 for, and rolling back would lose every good sample of it (remote write 2.0
  allows exactly this partial write). Refused samples count in
  ``tsdb_samples_rejected_total{protocol="remote_write",reason="invalid_timestamp"}``.
- Samples the protocol module cannot store (NaN other than the staleness marker, infinities)
  are dropped without failing the request and counted with reason ``invalid_value``.
  Staleness markers are stored.
- 422 when a new series would exceed ``TSDB_MAX_SERIES`` (4xx: not retried), 503/507 for
  storage errors (5xx: Prometheus retries).
- Metadata-only requests (Prometheus sends metric metadata apart from samples) are remembered
  for ``/api/v1/metadata``.

Remote write is a hot route served by the ingest fast path (``FAST_REQUEST_ROUTES``).

Remote read: each query's raw samples (``select_raw``), answered as a snappy-compressed
``ReadResponse`` of SAMPLES with ``READ_RESPONSE_HEADERS``; at most ``TSDB_MAX_POINTS``
samples per request (422 beyond). Errors are the server's JSON ``{"error", "field"}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import cramjam
from fastapi import APIRouter, Request
from google.protobuf.message import DecodeError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Scope

from tsdb.errors import LimitExceededError
from tsdb.protocols import prom_remote
from tsdb.protocols.prompb import remote_pb2, types_pb2
from tsdb.server.errors import error_body
from tsdb.server.fastpath import FastResponse, header
from tsdb.server.state import MAX_METADATA, ServerState, get_db, get_state, store_batch
from tsdb.storage.interface import SeriesData

if TYPE_CHECKING:
    from tsdb.engine import TSDB, WriteResult

__all__ = ["FAST_REQUEST_ROUTES", "THREAD_BYTES", "remote_write", "router"]

log = logging.getLogger("tsdb.server")
router = APIRouter(prefix="/api/v1", tags=["prometheus remote"])

_PROTOCOL: Final = "remote_write"
#: Bodies larger than this are decoded and stored on a worker thread (a snappy body of 256 KiB
#: holds ~80,000 samples, ~40 ms of work); smaller ones inline (a thread hop costs ~200 us).
THREAD_BYTES: Final = 256 * 1024
_PROTOBUF: Final = b"application/x-protobuf"
_V1_MESSAGE: Final = b"prometheus.writerequest"
_METRIC_TYPES: Final = {
    value.number: value.name.lower()
    for value in types_pb2.MetricMetadata.DESCRIPTOR.enum_types_by_name["MetricType"].values
}


def _unsupported_media(scope: Scope) -> str | None:
    """Why the headers name something other than remote write 1.0, or None."""
    encoding = header(scope, b"content-encoding")
    if encoding is not None and encoding.strip().lower() not in (b"", b"snappy"):
        return (
            f"{encoding.decode('latin-1')!r:.40} encoding (compression) is not accepted by this server; only snappy is"
        )
    content_type = header(scope, b"content-type")
    if content_type is None or not content_type.strip():
        return None  # Prometheus assumes remote write 1.0 too
    media, *params = [p.strip() for p in content_type.lower().split(b";")]
    if media != _PROTOBUF:
        return f"expected application/x-protobuf as the media type, got {content_type.decode('latin-1')!r:.60}"
    for param in params:
        name, _, value = param.partition(b"=")
        if name.strip() == b"proto" and value.strip().strip(b'"') != _V1_MESSAGE:
            return (
                f"{value.decode('latin-1')!r:.60} protobuf message is not accepted by this server; "
                "accepted: prometheus.WriteRequest (remote write 1.0)"
            )
    return None


@dataclass(frozen=True, slots=True)
class _Stored:
    written: WriteResult | None
    metadata: list[tuple[str, dict[str, str]]]


async def remote_write(state: ServerState, body: bytes, scope: Scope) -> FastResponse:
    """``POST /api/v1/write``, shared by the fast path and the FastAPI route."""
    problem = _unsupported_media(scope)
    if problem is not None:
        return FastResponse(415, error_body(problem, "Content-Type"))
    if len(body) > THREAD_BYTES:
        stored = await run_in_threadpool(_decode_and_store, state, body)
    else:
        stored = _decode_and_store(state, body)
    if stored.metadata:
        _remember_metadata(state, stored.metadata)
    written = stored.written
    if written is None or not written.rejected:
        return FastResponse(204, content_type=None)
    message = (
        f"{written.rejected} samples outside the accepted time window were not stored "
        f"({written.accepted} were): " + "; ".join(written.errors)
    )
    return FastResponse(400, error_body(message, "timestamp"))


def _decode_and_store(state: ServerState, body: bytes) -> _Stored:
    try:
        decoded = prom_remote.decode_write_request(body, state.settings.limits)
    except Exception as exc:
        state.metrics.count_rejected(_PROTOCOL, exc)
        raise
    if decoded.dropped_samples:
        value_problem = decoded.dropped_reason is not None and "dropped: value" in decoded.dropped_reason
        reason = "invalid_value" if value_problem else "invalid_timestamp"
        state.metrics.rejected.labels(_PROTOCOL, reason).inc(decoded.dropped_samples)
        log.debug("remote write: %d samples dropped: %s", decoded.dropped_samples, decoded.dropped_reason)
    if not len(decoded.batch):
        return _Stored(None, _metadata(body) if body else [])
    return _Stored(store_batch(state, decoded.batch, _PROTOCOL, partial=True), [])


def _metadata(body: bytes) -> list[tuple[str, dict[str, str]]]:
    """Metric metadata of a request without samples (how Prometheus sends it); [] if none."""
    try:
        request = remote_pb2.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
    except (DecodeError, cramjam.DecompressionError):  # decode_write_request accepted it: cannot happen
        return []
    return [
        (m.metric_family_name, {"type": _METRIC_TYPES.get(m.type, "unknown"), "help": m.help, "unit": m.unit})
        for m in request.metadata
        if m.metric_family_name
    ]


def _remember_metadata(state: ServerState, items: list[tuple[str, dict[str, str]]]) -> None:
    """Keep the latest metadata per metric (Prometheus keeps one entry per distinct value)."""
    store = state.metric_metadata
    for name, entry in items:
        if name in store or len(store) < MAX_METADATA:
            store[name] = [entry]


@router.post(
    "/write",
    summary="Prometheus remote write 1.0 (snappy-compressed protobuf)",
    status_code=204,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        204: {"description": "Stored"},
        400: {"description": "Undecodable or invalid request (not retried), or samples outside the time window"},
        415: {"description": "Not remote write 1.0 (encoding or protobuf message)"},
        422: {"description": "Series limit reached"},
        503: {"description": "Storage unavailable (retried)"},
        507: {"description": "Disk full (retried)"},
    },
)
async def write(request: Request) -> Response:
    """Store a remote write request (the fast path normally answers before this runs)."""
    answer = await remote_write(get_state(request), await request.body(), request.scope)
    media = answer.content_type.decode() if answer.content_type else None
    return Response(answer.body, status_code=answer.status, media_type=media)


@router.post(
    "/read",
    summary="Prometheus remote read (SAMPLES responses)",
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        200: {"content": {"application/x-protobuf": {}}, "description": "snappy-compressed ReadResponse"},
        400: {"description": "Undecodable request or bad matcher"},
        422: {"description": "Only streamed chunks accepted, or more than max_points samples"},
    },
)
async def read(request: Request) -> Response:
    """Answer each query with the raw samples of the matching series."""
    state = get_state(request)
    queries = prom_remote.decode_read_request(await request.body())
    db = get_db(request)
    body = await run_in_threadpool(_read, state, db, queries)
    return Response(body, headers=prom_remote.READ_RESPONSE_HEADERS)


def _read(state: ServerState, db: TSDB, queries: Sequence[prom_remote.Query]) -> bytes:
    began = time.perf_counter()
    limit = state.settings.max_points
    results: list[list[SeriesData]] = []
    total = 0
    for q in queries:
        found = db.select_raw(q.matchers, q.start_ns, q.end_ns)
        total += sum(len(s.timestamps) for s in found)
        if limit is not None and total > limit:
            raise LimitExceededError(
                f"remote read: the queries select more than {limit} samples (TSDB_MAX_POINTS); "
                "read a shorter range or fewer series",
                field="queries",
            )
        results.append(found)
    body = prom_remote.encode_read_response(results)
    state.metrics.query_duration.labels("remote_read").observe(time.perf_counter() - began)
    return body


#: Routes the fast path serves without FastAPI's router (method, path, handler).
FAST_REQUEST_ROUTES: Final = (("POST", "/api/v1/write", remote_write),)
