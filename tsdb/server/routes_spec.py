"""The spec's REST API: ``POST /data`` and ``GET /metrics``, exactly as the spec documents them.

``GET /metrics`` serves two audiences (DESIGN.md decision 8): by default the spec's JSON listing
of stored series; to a client whose ``Accept`` header asks for the Prometheus text format or
OpenMetrics (as Prometheus's scraper does) the server's own metrics, so the default scrape
config works.

The listing is paged by points: at most ``limit`` points per answer (default ``page_size``,
at most ``max_points``), series ordered by metric then labels, points by time. When more may
follow, the answer carries ``Link: <...&cursor=...>; rel="next"`` and ``X-Next-Cursor``;
request the same URL with ``cursor`` set to continue. The cursor records the last series and
timestamp sent, so pages stay consistent while data is written.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Query, Request
from prometheus_client import exposition
from prometheus_client.openmetrics import exposition as om_exposition
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from tsdb._types import is_stale
from tsdb.errors import InvalidQueryError, InvalidTimestampError, LimitExceededError, StorageError, TSDBError
from tsdb.labels import LabelSet, Matcher
from tsdb.protocols import spec_json
from tsdb.server.params import build_matchers, parse_range
from tsdb.server.state import ServerState, get_db, get_state, write_batch, writes_wait_for_disk
from tsdb.storage.interface import SeriesData

__all__ = ["FAST_ROUTES", "ingest_data", "negotiate_exposition", "router"]

router = APIRouter(tags=["spec"])

_PROTOCOL: Final = "spec_json"
_JSON: Final = "application/json"

_POINT_SCHEMA: Final = {
    "type": "object",
    "required": ["timestamp", "value"],
    "additionalProperties": False,
    "properties": {
        "timestamp": {
            "oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
            "description": "RFC 3339 string or epoch seconds",
        },
        "value": {"type": "number", "description": "finite number; booleans and strings are refused"},
        "metric": {"type": "string", "description": "metric name; the server's default_metric when absent"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_DATA_BODY: Final = {
    "required": True,
    "content": {
        _JSON: {
            "schema": {"oneOf": [_POINT_SCHEMA, {"type": "array", "items": _POINT_SCHEMA}]},
            "examples": {
                "spec": {"summary": "The spec's example", "value": {"timestamp": "2025-05-14T09:00:00Z", "value": 42}},
                "labelled": {
                    "summary": "Metric and labels",
                    "value": {"timestamp": 1747213200, "value": 0.5, "metric": "cpu", "labels": {"host": "a"}},
                },
                "array": {
                    "summary": "An atomic batch",
                    "value": [{"timestamp": 1747213200, "value": 1}, {"timestamp": 1747213210, "value": 2}],
                },
            },
        }
    },
}
_ERROR_EXAMPLE: Final = {
    "content": {_JSON: {"example": {"error": "point 3: value must be a number, got boolean True", "field": "value"}}}
}


@router.post(
    "/data",
    summary="Ingest one data point or an atomic array of points",
    openapi_extra={"requestBody": _DATA_BODY},
    responses={
        200: {
            "description": "Stored",
            "content": {
                _JSON: {
                    "examples": {
                        "one": {"value": {"message": "Data point ingested successfully"}},
                        "array": {"value": {"message": "2 data points ingested successfully"}},
                    }
                }
            },
        },
        400: {"description": "Invalid input; nothing stored", **_ERROR_EXAMPLE},
        413: {"description": "Body over max_body_bytes"},
        422: {"description": "Series limit reached"},
    },
)
async def post_data(request: Request) -> Response:
    """Store the point(s). An array is all-or-nothing: one bad point and nothing is stored."""
    content = await ingest_data(get_state(request), await request.body(), b"")
    return Response(content, media_type=_JSON)


async def ingest_data(state: ServerState, body: bytes, query: bytes) -> bytes:
    """The work of ``POST /data``, shared with the fast path (``tsdb.server.fastpath``).

    One point goes through the engine's single-sample ``write`` (its series cache makes a
    repeated series cheap); an array becomes one atomic Batch.
    """
    try:
        doc = spec_json.decode(body)
        if type(doc) is dict:
            point = spec_json.single_point(doc, default_metric=state.settings.default_metric)
            db = state.db
            if db is None:
                raise StorageError("the database is not open: the server is starting up or shutting down")
            _check_future(point.timestamp_ns, state.settings.future_tolerance_seconds)
            if writes_wait_for_disk(state):
                await run_in_threadpool(
                    db.write, point.metric, point.timestamp_ns, point.value, point.labels, unit="ns"
                )
            else:
                db.write(point.metric, point.timestamp_ns, point.value, point.labels, unit="ns")
            state.metrics.count_ingested(_PROTOCOL, 1)
            return spec_json.INGESTED_ONE
        parsed = spec_json.parse_document(
            doc, default_metric=state.settings.default_metric, limits=state.settings.limits
        )
    except TSDBError as exc:
        state.metrics.count_rejected(_PROTOCOL, exc)
        raise
    await write_batch(state, parsed.batch, _PROTOCOL)
    return spec_json.ingested_message(len(parsed.batch))


def _check_future(ts_ns: int, tolerance_s: float | None) -> None:
    """Refuse a point too far ahead of the clock before the engine sees it.

    The engine refuses it too, but its single-sample ``write`` creates a new series before
    checking the timestamp, which would leave an empty series behind a refused point.
    """
    if tolerance_s is not None and ts_ns > time.time_ns() + tolerance_s * 1e9:
        raise InvalidTimestampError(
            f"timestamp {ts_ns / 1e9:.3f} s is more than {tolerance_s:g} s in the future (future_tolerance_seconds)",
            field="timestamp",
        )


#: Routes the fast path serves without FastAPI's router (method, path, handler).
FAST_ROUTES: Final = (("POST", "/data", ingest_data),)


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    out = []
    for part in accept.split(","):
        media, *params = part.strip().split(";")
        q = 1.0
        for p in params:
            key, _, val = p.strip().partition("=")
            if key.strip() == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        out.append((media.strip().lower(), q))
    return out


def negotiate_exposition(accept: str | None) -> str | None:
    """``"openmetrics"``, ``"text"`` or None (the JSON listing) for an Accept header.

    Exposition formats must be named explicitly (wildcards never select them); on a tie
    they win over a wildcard but lose to an explicit ``application/json``.
    """
    if not accept:
        return None
    om = text = wild = json_q = 0.0
    for media, q in _media_ranges(accept):
        if media == "application/openmetrics-text":
            om = max(om, q)
        elif media == "text/plain":
            text = max(text, q)
        elif media == _JSON:
            json_q = max(json_q, q)
        elif media in ("*/*", "application/*"):
            wild = max(wild, q)
    best = max(om, text)
    if best <= 0 or best <= json_q or best < wild:
        return None
    return "openmetrics" if om >= text else "text"


def _exposition(request: Request, kind: str) -> Response:
    registry = get_state(request).metrics.registry
    if kind == "openmetrics":
        return Response(om_exposition.generate_latest(registry), media_type=om_exposition.CONTENT_TYPE_LATEST)
    return Response(exposition.generate_latest(registry), media_type=exposition.CONTENT_TYPE_LATEST)


def _encode_cursor(metric: str, labels: LabelSet, ts_ns: int) -> str:
    raw = orjson.dumps([metric, [list(p) for p in labels], ts_ns])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(token: str) -> tuple[tuple[str, LabelSet], int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        metric, labels, ts_ns = orjson.loads(raw)
        key = (str(metric), tuple((str(n), str(v)) for n, v in labels))
        return key, int(ts_ns)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        raise InvalidQueryError(
            f"invalid cursor {token!r:.80}: pass the X-Next-Cursor of a previous page", field="cursor"
        ) from None


def _exact(metric: str, labels: LabelSet) -> list[Matcher]:
    return [Matcher.eq("__name__", metric), *(Matcher.eq(n, v) for n, v in labels)]


def _page(
    db: Any, matchers: list[Matcher], start_ns: int, end_ns: int, limit: int, cursor: str | None
) -> tuple[list[SeriesData], str | None]:
    """One page of the listing and the cursor of the next (None when this is the last)."""
    keys = sorted(db.select_series(matchers))
    after: tuple[str, LabelSet] | None = None
    after_ts = 0
    if cursor:
        after, after_ts = _decode_cursor(cursor)
        keys = [k for k in keys if k >= after]
    out: list[SeriesData] = []
    remaining = limit
    for metric, labels in keys:
        lo = max(start_ns, after_ts + 1) if (metric, labels) == after else start_ns
        if lo > end_ns:
            continue
        found = [s for s in db.select_raw(_exact(metric, labels), lo, end_ns) if s.labels == labels]
        if not found:
            continue
        s = found[0]
        keep = ~is_stale(s.values)  # staleness markers are protocol plumbing, not data
        ts, vals = s.timestamps[keep], s.values[keep]
        if not len(ts):
            continue
        if len(ts) >= remaining:
            ts, vals = ts[:remaining], vals[:remaining]
            out.append(SeriesData(metric, labels, ts, vals))
            return out, _encode_cursor(metric, labels, int(ts[-1]))
        out.append(SeriesData(metric, labels, ts, vals))
        remaining -= len(ts)
    return out, None


def _listing(
    db: Any, matchers: list[Matcher], start_ns: int, end_ns: int, limit: int, cursor: str | None
) -> tuple[bytes, str | None]:
    series, next_cursor = _page(db, matchers, start_ns, end_ns, limit, cursor)
    return spec_json.format_listing(series), next_cursor


@router.get(
    "/metrics",
    summary="List stored series and their points (or, to scrapers, the server's own metrics)",
    responses={
        200: {
            "description": "The spec's listing; Prometheus text or OpenMetrics when the Accept header asks for it",
            "content": {
                _JSON: {
                    "example": [
                        {
                            "metric": "m1",
                            "labels": {},
                            "data": [{"timestamp": 1684050000, "value": 42}, {"timestamp": 1684050600, "value": 45}],
                        }
                    ]
                },
                "text/plain": {
                    "example": "# HELP tsdb_series Series in memory.\n# TYPE tsdb_series gauge\ntsdb_series 1.0\n"
                },
            },
        },
        400: {"description": "Invalid parameter", **_ERROR_EXAMPLE},
        422: {"description": "limit over the server's max_points"},
    },
)
async def get_metrics(
    request: Request,
    metric: Annotated[str | None, Query(description="only this metric name", examples=["m1"])] = None,
    match: Annotated[
        str | None, Query(description='PromQL series selector, e.g. cpu{host=~"a|b"}', examples=['cpu{host="a"}'])
    ] = None,
    start: Annotated[
        str | None, Query(description="inclusive start: epoch seconds, RFC 3339 or now", examples=["1684050000"])
    ] = None,
    end: Annotated[str | None, Query(description="inclusive end: epoch seconds, RFC 3339 or now")] = None,
    limit: Annotated[int | None, Query(ge=1, description="most points in this page (default: page_size)")] = None,
    cursor: Annotated[str | None, Query(description="X-Next-Cursor of the previous page")] = None,
) -> Response:
    """The stored series matching the filters, one page at a time (see the module docstring)."""
    kind = negotiate_exposition(request.headers.get("accept"))
    if kind is not None:
        return _exposition(request, kind)
    state = get_state(request)
    settings = state.settings
    page = settings.page_size if limit is None else limit
    if settings.max_points is not None and page > settings.max_points:
        raise LimitExceededError(
            f"limit {page} exceeds the server's max_points {settings.max_points}; page with a smaller limit",
            field="limit",
        )
    matchers = build_matchers(match, metric)
    start_ns, end_ns = parse_range(start, end)
    db = get_db(request)
    began = time.perf_counter()
    body, next_cursor = await run_in_threadpool(_listing, db, matchers, start_ns, end_ns, page, cursor)
    state.metrics.query_duration.labels("spec").observe(time.perf_counter() - began)
    headers = {}
    if next_cursor is not None:
        headers["X-Next-Cursor"] = next_cursor
        headers["Link"] = f'<{request.url.include_query_params(cursor=next_cursor)}>; rel="next"'
    return Response(body, media_type=_JSON, headers=headers)
