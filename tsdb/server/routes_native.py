"""The native HTTP API under ``/api/native/`` (``/api/v1/`` is Prometheus's namespace).

- ``GET /api/native/query``: select + aggregate + downsample + group + fill, the engine's ``select``.
- ``GET /api/native/series``, ``/api/native/labels``, ``/api/native/label/{name}/values``: listings.
- ``POST /api/native/write``: columnar JSON batches (the fast ingest path).
- ``DELETE /api/native/series``: delete the samples of matching series, optionally in a range.

Series are chosen with ``match`` (a PromQL selector such as ``cpu{host=~"a|b"}``) and/or
``metric`` plus repeated ``label=name=value`` parameters; all conditions are ANDed. Times are
epoch seconds, RFC 3339 or ``now``; durations ``30s``, ``5m``, ``1h`` or seconds.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Final
from urllib.parse import parse_qs

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from tsdb.errors import InvalidInputError, InvalidQueryError, TSDBError
from tsdb.protocols import native_json
from tsdb.server.params import build_matchers, parse_duration_seconds, parse_range
from tsdb.server.state import ServerState, get_db, get_state, write_batch
from tsdb.timeutil import MAX_NS, MIN_NS, UNIT_NS

__all__ = ["FAST_ROUTES", "ingest_columnar", "router"]

router = APIRouter(prefix="/api/native", tags=["native"])

_PROTOCOL: Final = "native_json"
_JSON: Final = "application/json"
_FILL_WORDS: Final = frozenset({"null", "zero", "previous"})
_ERR: Final = {"content": {_JSON: {"example": {"error": "unknown aggregation 'median'", "field": "agg"}}}}

MatchParam = Annotated[
    str | None, Query(description='PromQL series selector, e.g. cpu{host=~"a|b"}', examples=['cpu{host="a"}'])
]
MetricParam = Annotated[str | None, Query(description="metric name (ANDed with match)", examples=["cpu"])]
LabelParam = Annotated[
    list[str] | None, Query(description="label equality as name=value; repeat for more", examples=[["host=a"]])
]
StartParam = Annotated[
    str | None, Query(description="inclusive start: epoch seconds, RFC 3339 or now", examples=["2025-05-14T09:00:00Z"])
]
EndParam = Annotated[str | None, Query(description="inclusive end: epoch seconds, RFC 3339 or now", examples=["now"])]


def _time_arg(ns: int, open_end: int) -> np.datetime64 | None:
    """An engine time argument: datetime64 is unambiguous (plain numbers would mean seconds)."""
    return None if ns == open_end else np.datetime64(ns, "ns")


def _fill(text: str | None) -> str | float | None:
    if text is None or text == "":
        return None
    if text in _FILL_WORDS:
        return text
    try:
        value = float(text)
    except ValueError:
        raise InvalidQueryError(
            f"invalid fill {text!r:.40}: expected null, zero, previous or a number", field="fill"
        ) from None
    if not np.isfinite(value):
        raise InvalidQueryError(f"invalid fill {text!r:.40}: the number must be finite", field="fill")
    return value


def _group_by(values: list[str] | None) -> list[str] | None:
    """None (per series), [] (all together, from ``group_by=``) or label names (comma lists allowed)."""
    if values is None:
        return None
    return [name.strip() for v in values for name in v.split(",") if name.strip()]


@router.get(
    "/query",
    summary="Query samples: raw, aggregated, downsampled, grouped",
    responses={
        200: {
            "description": "kind raw | aggregate | downsample; resolution says which tier answered",
            "content": {
                _JSON: {
                    "example": {
                        "kind": "downsample",
                        "resolution": "raw",
                        "series": [
                            {
                                "metric": "cpu",
                                "labels": {"host": "a"},
                                "timestamps": [1747213200, 1747213260],
                                "values": [0.42, 0.47],
                            }
                        ],
                    }
                }
            },
        },
        400: {"description": "Invalid parameter", **_ERR},
        422: {"description": "Result over max_points: narrow the range, add matchers or downsample"},
    },
)
async def query(
    request: Request,
    match: MatchParam = None,
    metric: MetricParam = None,
    label: LabelParam = None,
    start: StartParam = None,
    end: EndParam = None,
    agg: Annotated[
        str | None,
        Query(description="sum avg min max count first last stddev stdvar quantile(q) rate increase", examples=["avg"]),
    ] = None,
    q: Annotated[
        float | None, Query(ge=0, le=1, description="quantile for agg=quantile (or write quantile(0.9))")
    ] = None,
    downsample: Annotated[
        str | None, Query(description="bucket width: 30s, 5m, 1h or seconds (default agg: avg)", examples=["1m"])
    ] = None,
    group_by: Annotated[
        list[str] | None,
        Query(description="with agg: label names to group by (comma list or repeated); empty = all together"),
    ] = None,
    fill: Annotated[
        str | None, Query(description="empty buckets: null, zero, previous or a number (default: omitted)")
    ] = None,
) -> Response:
    """Evaluate a query with the engine's ``select`` and answer columnar JSON."""
    state = get_state(request)
    matchers = build_matchers(match, metric, label, required=True)
    start_ns, end_ns = parse_range(start, end)
    width = None if downsample is None else parse_duration_seconds(downsample, "downsample")
    kwargs: dict[str, Any] = {"agg": agg or None, "q": q, "downsample": width, "group_by": _group_by(group_by)}
    kwargs["fill"] = _fill(fill)
    db = get_db(request)
    began = time.perf_counter()
    body = await run_in_threadpool(_select, db, matchers, start_ns, end_ns, kwargs)
    state.metrics.query_duration.labels("native").observe(time.perf_counter() - began)
    return Response(body, media_type=_JSON)


def _select(db: Any, matchers: list[Any], start_ns: int, end_ns: int, kwargs: dict[str, Any]) -> bytes:
    result = db.select(matchers, _time_arg(start_ns, MIN_NS), _time_arg(end_ns, MAX_NS), **kwargs)
    return native_json.format_query_result(result)


@router.get(
    "/series",
    summary="List series matching a selector",
    responses={200: {"content": {_JSON: {"example": [{"metric": "cpu", "labels": {"host": "a"}}]}}}},
)
async def series(
    request: Request, match: MatchParam = None, metric: MetricParam = None, label: LabelParam = None
) -> Response:
    """Every stored series matching the selector (all series when none is given)."""
    matchers = build_matchers(match, metric, label)
    found = await run_in_threadpool(get_db(request).select_series, matchers)
    return Response(native_json.format_series_list(found), media_type=_JSON)


@router.get(
    "/labels",
    summary="List label names",
    responses={200: {"content": {_JSON: {"example": ["__name__", "dc", "host"]}}}},
)
async def labels(
    request: Request, match: MatchParam = None, metric: MetricParam = None, label: LabelParam = None
) -> Response:
    """Label names of the matching series (all series when no selector), ``__name__`` included."""
    db = get_db(request)
    matchers = build_matchers(match, metric, label) if (match or metric or label) else None
    names = await run_in_threadpool(db.label_names, matchers)
    return Response(native_json.format_label_list(names), media_type=_JSON)


@router.get(
    "/label/{name}/values",
    summary="List the values of one label (__name__ lists metric names)",
    responses={200: {"content": {_JSON: {"example": ["a", "b"]}}}},
)
async def label_values(
    request: Request,
    name: str,
    match: MatchParam = None,
    metric: MetricParam = None,
    label: LabelParam = None,
) -> Response:
    """Distinct values of label ``name`` over the matching series, sorted."""
    db = get_db(request)
    matchers = build_matchers(match, metric, label) if (match or metric or label) else None
    values = await run_in_threadpool(db.label_values, name, matchers)
    return Response(native_json.format_label_list(values), media_type=_JSON)


_BLOCK_SCHEMA: Final = {
    "type": "object",
    "required": ["metric", "timestamps", "values"],
    "properties": {
        "metric": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "timestamps": {"type": "array", "items": {"oneOf": [{"type": "number"}, {"type": "string"}]}},
        "values": {"type": "array", "items": {"type": "number"}},
    },
}


@router.post(
    "/write",
    summary="Write columnar batches (fast ingest)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                _JSON: {
                    "schema": {"oneOf": [_BLOCK_SCHEMA, {"type": "array", "items": _BLOCK_SCHEMA}]},
                    "example": {
                        "metric": "cpu",
                        "labels": {"host": "a"},
                        "timestamps": [1747213200, 1747213210],
                        "values": [0.5, 0.7],
                    },
                }
            },
        }
    },
    responses={
        200: {"content": {_JSON: {"example": {"accepted": 2}}}},
        400: {"description": "Invalid input; nothing stored", **_ERR},
        413: {"description": "Body over max_body_bytes"},
        422: {"description": "Series limit reached"},
    },
)
async def write(
    request: Request,
    unit: Annotated[str, Query(pattern="^(s|ms|us|ns)$", description="unit of numeric timestamps")] = "s",
) -> Response:
    """Store one block or an array of blocks atomically (all or nothing)."""
    content = await ingest_columnar(get_state(request), await request.body(), request.scope["query_string"])
    return Response(content, media_type=_JSON)


def _unit(query: bytes) -> str:
    if not query:
        return "s"
    units = parse_qs(query.decode("latin-1")).get("unit", ["s"])
    if units[-1] not in UNIT_NS:
        raise InvalidInputError(f"unknown unit {units[-1]!r:.20}: expected s, ms, us or ns", field="unit")
    return units[-1]


async def ingest_columnar(state: ServerState, body: bytes, query: bytes) -> bytes:
    """The work of ``POST /api/native/write``, shared with the fast path."""
    try:
        batch = native_json.parse_columnar(body, unit=_unit(query), limits=state.settings.limits)
    except TSDBError as exc:
        state.metrics.count_rejected(_PROTOCOL, exc)
        raise
    result = await write_batch(state, batch, _PROTOCOL)
    return b'{"accepted":%d}' % result.accepted


#: Routes the fast path serves without FastAPI's router (method, path, handler).
FAST_ROUTES: Final = (("POST", "/api/native/write", ingest_columnar),)


@router.delete(
    "/series",
    summary="Delete samples of matching series, optionally within a time range",
    responses={
        200: {"content": {_JSON: {"example": {"deleted": 1440}}}},
        400: {"description": "No selector given, or an invalid one", **_ERR},
    },
)
async def delete_series(
    request: Request,
    match: MatchParam = None,
    metric: MetricParam = None,
    label: LabelParam = None,
    start: StartParam = None,
    end: EndParam = None,
) -> Response:
    """Delete; a selector is required (deleting everything must be spelled ``match={__name__=~".+"}``)."""
    matchers = build_matchers(match, metric, label, required=True)
    start_ns, end_ns = parse_range(start, end)
    db = get_db(request)
    deleted = await run_in_threadpool(db.delete, matchers, _time_arg(start_ns, MIN_NS), _time_arg(end_ns, MAX_NS))
    return Response(b'{"deleted":%d}' % deleted, media_type=_JSON)
