"""The Prometheus HTTP query API under ``/api/v1`` (what Grafana's Prometheus data source calls).

- ``GET|POST /api/v1/query``: PromQL instant query (``query``, ``time``, ``timeout``).
- ``GET|POST /api/v1/query_range``: range query (``query``, ``start``, ``end``, ``step``, ``timeout``).
- ``GET|POST /api/v1/series``: series matching ``match[]`` (required).
- ``GET|POST /api/v1/labels``: label names (``match[]`` optional).
- ``GET|POST /api/v1/label/{name}/values``: values of one label (``__name__``: metric names).
- ``GET|POST /api/v1/query_exemplars``: always empty (tsdb stores no exemplars).

Parameters come from the URL or a form-encoded body (``prom_params``); answers and errors are
Prometheus's envelopes (``prom_response``, ``tsdb.protocols.prom_api``). Listings take
``start``/``end`` (validated) and ``limit`` (truncates, with a warning, as Prometheus 2.49+).
Listings answer from the series index, i.e. every series tsdb holds (raw retention and rollup
history included), not only those with samples between ``start`` and ``end``: a documented
difference from Prometheus, whose own granularity is its 2-hour blocks.

``timeout`` is validated and not enforced. Query evaluation runs on a worker thread and is
timed in ``tsdb_query_duration_seconds{api="prometheus"}``. A result of more than
``TSDB_MAX_POINTS`` points is refused (422, errorType execution).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from tsdb.errors import InvalidQueryError, LimitExceededError
from tsdb.labels import LabelSet, Matcher
from tsdb.protocols import prom_api
from tsdb.query.promql import InstantVector, Matrix, QueryResult, instant_query, parse_query, range_query
from tsdb.server.prom_params import PromParams, read_params
from tsdb.server.prom_response import ok, ok_bytes, prometheus_api, route
from tsdb.server.state import ServerState, get_db, get_state

if TYPE_CHECKING:
    from tsdb.engine import TSDB

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["prometheus"])

_API: Final = "prometheus"
_NS_PER_MS: Final = 1_000_000
_LABEL_NAME_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TRUNCATED: Final = "results truncated due to limit"
_BOTH: Final = ["GET", "POST"]


def _param_docs(*specs: tuple[str, str, bool]) -> dict[str, Any]:
    """OpenAPI parameters (name, description, required) for routes that read them by hand."""
    return {
        "parameters": [
            {"name": name, "in": "query", "required": required, "schema": {"type": "string"}, "description": text}
            for name, text, required in specs
        ]
    }


_TIME_DOC: Final = "Unix seconds (float) or RFC 3339"
_MATCH_DOC: Final = ("match[]", 'series selector, e.g. up{job="tsdb"}; repeat for more (ORed)', False)
_RANGE_DOCS: Final = (("start", _TIME_DOC, False), ("end", _TIME_DOC, False), ("limit", "maximum answers", False))
_EXAMPLE_VECTOR: Final = {
    "status": "success",
    "data": {
        "resultType": "vector",
        "result": [{"metric": {"__name__": "up", "job": "tsdb"}, "value": [1747213200, "1"]}],
    },
}


def _now_ms_ns() -> int:
    """Now, truncated to the millisecond as Prometheus's clock is (int ns)."""
    now = time.time_ns()
    return now - now % _NS_PER_MS


def _check_size(result: QueryResult, limit: int | None) -> None:
    if limit is None:
        return
    if isinstance(result, Matrix):
        points = sum(len(s.timestamps) for s in result.series)
    elif isinstance(result, InstantVector):
        points = len(result.samples)
    else:
        return
    if points > limit:
        raise LimitExceededError(
            f"the query result has {points} points, more than TSDB_MAX_POINTS={limit}: "
            "narrow the range, add matchers, or use a larger step",
            field="query",
        )


def _instant(state: ServerState, db: TSDB, expr: str, at_ns: int) -> bytes:
    with state.metrics.time_query(_API):
        result = instant_query(db, expr, at_ns)
        _check_size(result, state.settings.max_points)
        return prom_api.query_success_body(result)


def _range(state: ServerState, db: TSDB, expr: str, start_ns: int, end_ns: int, step_ns: int) -> bytes:
    with state.metrics.time_query(_API):
        result = range_query(db, expr, start_ns, end_ns, step_ns)
        _check_size(result, state.settings.max_points)
        return prom_api.query_success_body(result)


def _query_param(params: PromParams) -> str:
    return params.get("query") or ""


@route(
    router,
    "/query",
    _BOTH,
    summary="PromQL instant query",
    openapi_extra=_param_docs(
        ("query", "PromQL expression", True),
        ("time", _TIME_DOC + "; default now", False),
        ("timeout", "ignored", False),
    ),
    responses={200: {"content": {"application/json": {"example": _EXAMPLE_VECTOR}}}},
)
@prometheus_api
async def query(request: Request) -> Response:
    """Evaluate ``query`` at ``time`` (default: now)."""
    params = await read_params(request)
    at_ns = params.time("time", default=_now_ms_ns())
    params.duration("timeout")
    state = get_state(request)
    body = await run_in_threadpool(_instant, state, get_db(request), _query_param(params), at_ns)
    return ok_bytes(body)


@route(
    router,
    "/query_range",
    _BOTH,
    summary="PromQL range query",
    openapi_extra=_param_docs(
        ("query", "PromQL expression", True),
        ("start", _TIME_DOC, True),
        ("end", _TIME_DOC, True),
        ("step", "seconds (float) or a duration such as 15s", True),
        ("timeout", "ignored", False),
    ),
)
@prometheus_api
async def query_range(request: Request) -> Response:
    """Evaluate ``query`` at ``start, start + step, ...`` up to ``end``."""
    params = await read_params(request)
    start_ns = params.time("start")
    end_ns = params.time("end")
    if end_ns < start_ns:
        raise InvalidQueryError("end timestamp must not be before start time", field="end")
    step_ns = params.duration("step")
    if step_ns is None:
        raise InvalidQueryError('invalid parameter "step": cannot parse "" to a valid duration', field="step")
    params.duration("timeout")
    state = get_state(request)
    expr = _query_param(params)
    body = await run_in_threadpool(_range, state, get_db(request), expr, start_ns, end_ns, step_ns)
    return ok_bytes(body)


def _range_params(params: PromParams) -> None:
    """Validate ``start``/``end`` of a listing (see the module docstring for their effect)."""
    start = params.time("start") if params.get("start") else None
    end = params.time("end") if params.get("end") else None
    if start is not None and end is not None and end < start:
        raise InvalidQueryError("end timestamp must not be before start time", field="end")


def _limited(items: list[Any], limit: int | None) -> Response:
    if limit is not None and len(items) > limit:
        return ok(items[:limit], [_TRUNCATED])
    return ok(items)


def _series_labels(metric: str, labels: LabelSet) -> dict[str, str]:
    """A series as Prometheus lists it: all labels, ``__name__`` included, sorted by name."""
    return dict(sorted([("__name__", metric), *labels]))


def _union_series(db: TSDB, sets: Sequence[Sequence[Matcher]]) -> list[dict[str, str]]:
    found: set[tuple[str, LabelSet]] = set()
    for matchers in sets:
        found.update(db.select_series(matchers))
    rows = [_series_labels(metric, labels) for metric, labels in found]
    rows.sort(key=lambda r: list(r.items()))
    return rows


@route(
    router,
    "/series",
    _BOTH,
    summary="Series matching selectors",
    openapi_extra=_param_docs(("match[]", _MATCH_DOC[1], True), *_RANGE_DOCS),
)
@prometheus_api
async def series(request: Request) -> Response:
    """Every series matching any ``match[]``, as label maps sorted by labels."""
    params = await read_params(request)
    sets = params.match_sets(required=True)
    _range_params(params)
    limit = params.limit()
    rows = await run_in_threadpool(_union_series, get_db(request), sets)
    return _limited(rows, limit)


def _union(lists: Iterable[list[str]]) -> list[str]:
    out: set[str] = set()
    for values in lists:
        out.update(values)
    return sorted(out)


@route(router, "/labels", _BOTH, summary="Label names", openapi_extra=_param_docs(_MATCH_DOC, *_RANGE_DOCS))
@prometheus_api
async def labels(request: Request) -> Response:
    """Label names (``__name__`` included) of all series, or of those matching ``match[]``."""
    params = await read_params(request)
    sets = params.match_sets(required=False)
    _range_params(params)
    limit = params.limit()
    db = get_db(request)
    names = _union(db.label_names(m) for m in sets) if sets else db.label_names(None)
    return _limited(names, limit)


@route(
    router,
    "/label/{name}/values",
    _BOTH,
    summary="Values of one label (__name__: metric names)",
    openapi_extra=_param_docs(_MATCH_DOC, *_RANGE_DOCS),
)
@prometheus_api
async def label_values(request: Request, name: str) -> Response:
    """Sorted values of label ``name`` over all series or those matching ``match[]``."""
    if not _LABEL_NAME_RE.fullmatch(name):
        raise InvalidQueryError(f"invalid label name: {json.dumps(name)}", field="name")
    params = await read_params(request)
    sets = params.match_sets(required=False)
    _range_params(params)
    limit = params.limit()
    db = get_db(request)
    values = _union(db.label_values(name, m) for m in sets) if sets else db.label_values(name, None)
    return _limited(values, limit)


@route(
    router,
    "/query_exemplars",
    _BOTH,
    summary="Exemplars (always empty: tsdb stores none)",
    openapi_extra=_param_docs(
        ("query", "PromQL expression", True), ("start", _TIME_DOC, False), ("end", _TIME_DOC, False)
    ),
)
@prometheus_api
async def query_exemplars(request: Request) -> Response:
    """An empty list once the parameters check out (Grafana's Explore asks for exemplars)."""
    params = await read_params(request)
    _range_params(params)
    parse_query(_query_param(params))
    return ok([])
