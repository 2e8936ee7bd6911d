"""Prometheus API status, metadata and admin routes under ``/api/v1``.

- ``GET /api/v1/status/buildinfo``: Prometheus's six fields. ``version`` is the Prometheus
  API level tsdb speaks (``PROMETHEUS_API_VERSION``, the release its parity tests run
  against), because Grafana and other clients read it as a Prometheus version to decide which
  API features to use; ``revision`` names tsdb and its own version. No ``features`` key:
  Grafana reads its presence as "Mimir".
- ``GET /api/v1/status/runtimeinfo``: start time, working directory, thread count, retention.
- ``GET /api/v1/status/tsdb``: cardinality as Prometheus computes it from its postings:
  ``headStats`` and the top ``limit`` (default 10) metric names by series count, label names
  by value count and by total value length, and label pairs by series count.
- ``GET /api/v1/metadata``: metric metadata Prometheus sent by remote write (``limit``,
  ``limit_per_metric``, ``metric``); ``{}`` until it has sent some.
- ``POST|PUT /api/v1/admin/tsdb/delete_series``: delete samples of the series matching
  ``match[]`` (required) between ``start`` and ``end`` (default: all time); 204.
- ``GET /api/v1/rules``, ``/api/v1/alerts``: empty (tsdb evaluates no rules); Grafana's
  alerting pages list them for every Prometheus data source.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from tsdb.errors import InvalidQueryError
from tsdb.server.params import ALL_SERIES
from tsdb.server.prom_params import read_params
from tsdb.server.prom_response import ok, prometheus_api, route
from tsdb.server.state import get_db, get_state
from tsdb.storage.chunk import I_MAXT, I_MINT
from tsdb.timeutil import MAX_NS, MIN_NS

if TYPE_CHECKING:
    from tsdb.engine import TSDB

__all__ = ["PROMETHEUS_API_VERSION", "router", "tsdb_status"]

router = APIRouter(prefix="/api/v1", tags=["prometheus"])

#: The Prometheus release whose HTTP API tsdb answers like (tests/interop run against it).
PROMETHEUS_API_VERSION: Final = "2.42.0"
_NS_PER_MS: Final = 1_000_000
_INT64_MAX: Final = 2**63 - 1
_INT64_MIN: Final = -(2**63)


def _version() -> str:
    try:
        return metadata.version("tsdb")
    except metadata.PackageNotFoundError:
        return "0.0.0"


@router.get("/status/buildinfo", summary="Build information (Prometheus's fields)")
@prometheus_api
async def buildinfo() -> Response:
    """The Prometheus API version tsdb emulates, and tsdb's own version as the revision."""
    return ok(
        {
            "version": PROMETHEUS_API_VERSION,
            "revision": f"tsdb-{_version()}",
            "branch": "tsdb",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        }
    )


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _duration(seconds: float) -> str:
    """A retention in Prometheus's duration spelling (``15d``, ``1h30m``, ``60s`` -> ``1m``)."""
    if seconds <= 0:
        return "unlimited"
    ms = round(seconds * 1000)
    out = ""
    for unit, size in (("y", 31_536_000_000), ("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000),
                       ("m", 60_000), ("s", 1000), ("ms", 1)):  # fmt: skip
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return out


@router.get("/status/runtimeinfo", summary="Runtime information")
@prometheus_api
async def runtimeinfo(request: Request) -> Response:
    """Prometheus's runtime fields that mean something for tsdb."""
    state = get_state(request)
    started = _rfc3339(state.started_at)
    return ok(
        {
            "startTime": started,
            "CWD": os.getcwd(),
            "reloadConfigSuccess": True,
            "lastConfigTime": started,
            "corruptionCount": 0,
            "goroutineCount": threading.active_count(),
            "GOMAXPROCS": os.cpu_count() or 1,
            "GOGC": "",
            "GODEBUG": "",
            "storageRetention": _duration(state.settings.retention_seconds),
        }
    )


def _top(counts: dict[str, int], limit: int) -> list[dict[str, Any]]:
    """The ``limit`` largest entries as Prometheus's ``[{"name", "value"}]``, largest first."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return [{"name": name, "value": value} for name, value in ranked]


def _time_bounds(db: TSDB) -> tuple[int, int]:
    """Oldest and newest raw sample times held (int ns), or (MAX_NS, MIN_NS) when empty.

    O(series): reads each series' chunk statistics and head (a status page, not a hot path).
    """
    lo, hi = MAX_NS, MIN_NS
    for shard in db.shards:
        for view in shard.views(ALL_SERIES):
            if len(view.istats):
                lo = min(lo, int(view.istats[0, I_MINT]))
                hi = max(hi, int(view.istats[-1, I_MAXT]))
            if len(view.head_ts):
                lo = min(lo, int(np.min(view.head_ts)))
                hi = max(hi, int(np.max(view.head_ts)))
    cutoff = db.raw_cutoff
    if cutoff is not None and lo < cutoff <= hi:
        lo = cutoff  # older raw samples are past retention and no longer answered
    return lo, hi


def tsdb_status(db: TSDB, limit: int) -> dict[str, Any]:
    """The ``data`` of ``/api/v1/status/tsdb`` (see the module docstring)."""
    pairs: dict[tuple[str, str], int] = {}
    for shard in db.shards:
        for key, count in shard.pair_counts().items():
            pairs[key] = pairs.get(key, 0) + count
    per_metric: dict[str, int] = {}
    values_per_name: dict[str, int] = {}
    bytes_per_name: dict[str, int] = {}
    per_pair: dict[str, int] = {}
    for (name, value), count in pairs.items():
        if name == "__name__":
            per_metric[value] = count
        values_per_name[name] = values_per_name.get(name, 0) + 1
        bytes_per_name[name] = bytes_per_name.get(name, 0) + len(value.encode())
        per_pair[f"{name}={value}"] = count
    stats = db.stats()
    lo, hi = _time_bounds(db)
    empty = lo > hi
    return {
        "headStats": {
            "numSeries": int(stats["series"]),
            "numLabelPairs": len(pairs),
            "chunkCount": int(stats["chunks"]),
            "minTime": _INT64_MAX if empty else lo // _NS_PER_MS,
            "maxTime": _INT64_MIN if empty else hi // _NS_PER_MS,
        },
        "seriesCountByMetricName": _top(per_metric, limit),
        "labelValueCountByLabelName": _top(values_per_name, limit),
        "memoryInBytesByLabelName": _top(bytes_per_name, limit),
        "seriesCountByLabelValuePair": _top(per_pair, limit),
    }


@router.get("/status/tsdb", summary="Cardinality statistics")
@prometheus_api
async def status_tsdb(request: Request) -> Response:
    """Series counts by metric name and label pair, label value counts, head statistics."""
    params = await read_params(request)
    limit = params.limit() or 10
    return ok(await run_in_threadpool(tsdb_status, get_db(request), limit))


@router.get("/metadata", summary="Metric metadata (from remote write)")
@prometheus_api
async def metric_metadata(request: Request) -> Response:
    """``{"<metric>": [{"type", "help", "unit"}]}``, as Prometheus's target metadata."""
    params = await read_params(request)
    limit = params.limit()
    per_metric_text = params.get("limit_per_metric")
    per_metric = None
    if per_metric_text:
        try:
            per_metric = int(per_metric_text) or None
        except ValueError:
            raise InvalidQueryError(
                f'invalid parameter "limit_per_metric": cannot parse "{per_metric_text:.40}" to a valid limit',
                field="limit_per_metric",
            ) from None
    wanted = params.get("metric")
    store = get_state(request).metric_metadata
    names = [wanted] if wanted else sorted(store)
    out: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        if name in store:
            out[name] = store[name][:per_metric] if per_metric else store[name]
            if limit is not None and len(out) >= limit:
                break
    return ok(out)


@route(
    router,
    "/admin/tsdb/delete_series",
    ["POST", "PUT"],
    status_code=204,
    summary="Delete series samples (match[] required; start/end optional)",
)
@prometheus_api
async def delete_series(request: Request) -> Response:
    """Delete the samples of every series matching a ``match[]`` within [start, end]."""
    params = await read_params(request)
    sets = params.match_sets(required=True)
    start = params.time("start") if params.get("start") else None
    end = params.time("end") if params.get("end") else None
    if start is not None and end is not None and end < start:
        raise InvalidQueryError("end timestamp must not be before start time", field="end")
    db = get_db(request)
    s = None if start is None else np.datetime64(start, "ns")
    e = None if end is None else np.datetime64(end, "ns")
    for matchers in sets:
        await run_in_threadpool(db.delete, matchers, s, e)
    return Response(status_code=204)


@router.get("/rules", summary="Recording and alerting rules (none)")
@prometheus_api
async def rules() -> Response:
    """No rule groups: tsdb evaluates no rules."""
    return ok({"groups": []})


@router.get("/alerts", summary="Active alerts (none)")
@prometheus_api
async def alerts() -> Response:
    """No alerts: tsdb evaluates no rules."""
    return ok({"alerts": []})
