"""The server's own metrics (prometheus-client), exposed on ``GET /metrics`` to scrapers.

Each app has its own ``CollectorRegistry`` (no global state, so tests can build many apps):

- ``tsdb_http_requests_total{route,method,status}`` and ``tsdb_http_request_duration_seconds{route}``,
  recorded by ``TelemetryMiddleware``. ``route`` is the route *template* (``/api/native/label/{name}/values``),
  never the raw path, and ``<unmatched>`` for requests that reached no route (404s, and 401/413
  answered before routing), so label cardinality stays bounded whatever clients send.
- ``tsdb_samples_ingested_total{protocol}``, ``tsdb_samples_rejected_total{protocol,reason}``
  and ``tsdb_query_duration_seconds{api}``, recorded by the routes through ``ServerMetrics``.
- Gauges read from ``db.stats()`` at scrape time by ``EngineCollector``: ``tsdb_series``,
  ``tsdb_head_samples``, ``tsdb_sealed_samples``, ``tsdb_chunks``, ``tsdb_compressed_bytes``,
  and the counter ``tsdb_chunks_sealed_total``; nothing is computed on the write path.
- The standard ``process_*``, ``python_gc_*`` and ``python_info`` collectors.

Cost on the hot path: one dict lookup for cached label children, one counter increment and one
histogram observation per request (a few microseconds), in a pure ASGI middleware (no
``BaseHTTPMiddleware``, whose task-and-stream machinery costs far more).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tsdb.errors import (
    InvalidNameError,
    InvalidQueryError,
    InvalidTimestampError,
    InvalidValueError,
    LimitExceededError,
    StorageError,
    TSDBError,
)

__all__ = ["UNMATCHED", "EngineCollector", "ServerMetrics", "TelemetryMiddleware", "reject_reason"]

UNMATCHED: Final = "<unmatched>"

# Request latencies on loopback run from ~100 us (a single point) to seconds (big queries).
_HTTP_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# (stats key, metric name, help); gauges of what is in memory now.
_GAUGES: Final = (
    ("series", "tsdb_series", "Series in memory."),
    ("head_samples", "tsdb_head_samples", "Samples in uncompressed head buffers."),
    ("sealed_samples", "tsdb_sealed_samples", "Samples in sealed, compressed chunks."),
    ("chunks", "tsdb_chunks", "Sealed chunks in memory."),
    ("compressed_bytes", "tsdb_compressed_bytes", "Bytes held by compressed chunks."),
)
_SEALED_KEYS: Final = ("chunks_sealed_total", "chunks_sealed")

# Most specific first; the reason label has this fixed, small set of values.
_REASONS: Final[tuple[tuple[type[TSDBError], str], ...]] = (
    (InvalidNameError, "invalid_name"),
    (InvalidTimestampError, "invalid_timestamp"),
    (InvalidValueError, "invalid_value"),
    (InvalidQueryError, "invalid_query"),
    (LimitExceededError, "limit_exceeded"),
    (StorageError, "storage_error"),
)


def reject_reason(exc: BaseException) -> str:
    """The ``reason`` label for a rejected write: one of a small fixed set."""
    for cls, reason in _REASONS:
        if isinstance(exc, cls):
            return reason
    return "invalid_input" if isinstance(exc, TSDBError) else "other"


class EngineCollector(Collector):
    """Reads ``db.stats()`` at scrape time; yields nothing while no database is open."""

    def __init__(self, get_db: Callable[[], Any]) -> None:
        self._get_db = get_db

    def describe(self) -> Iterator[Metric]:
        """The metric names, without reading the database (used at registration)."""
        for _, name, doc in _GAUGES:
            yield GaugeMetricFamily(name, doc)
        yield CounterMetricFamily("tsdb_chunks_sealed", "Chunks sealed since start.")

    def collect(self) -> Iterator[Metric]:
        db = self._get_db()
        if db is None:
            return
        stats = db.stats()
        for key, name, doc in _GAUGES:
            if key in stats:
                yield GaugeMetricFamily(name, doc, value=float(stats[key]))
        for key in _SEALED_KEYS:
            if key in stats:
                yield CounterMetricFamily("tsdb_chunks_sealed", "Chunks sealed since start.", value=float(stats[key]))
                break
        yield from _tier_metrics(stats.get("tiers") or [])
        wal = stats.get("wal")
        if wal:
            yield from _wal_metrics(wal)


def _tier_metrics(tiers: list[dict[str, Any]]) -> Iterator[Metric]:
    """Buckets and bytes held by each rollup tier."""
    buckets = GaugeMetricFamily("tsdb_rollup_buckets", "Buckets held by each rollup tier.", labels=["tier"])
    nbytes = GaugeMetricFamily("tsdb_rollup_bytes", "Bytes held by each rollup tier.", labels=["tier"])
    for tier in tiers:
        buckets.add_metric([tier["tier"]], float(tier["buckets"]))
        nbytes.add_metric([tier["tier"]], float(tier["bytes"]))
    yield buckets
    yield nbytes


#: db.stats()["wal"] key -> (metric name without _total, help, counter?)
_WAL_METRICS: Final = (
    ("bytes_written", "tsdb_wal_bytes", "Bytes appended to the write-ahead log since start.", True),
    ("fsyncs", "tsdb_wal_fsyncs", "fsync calls on the write-ahead log (group commit shares them).", True),
    ("write_errors", "tsdb_wal_write_errors", "Failed write-ahead log appends.", True),
    ("fsync_errors", "tsdb_wal_fsync_errors", "Failed write-ahead log fsyncs.", True),
    ("torn_tails", "tsdb_wal_torn_tails", "Torn or corrupt WAL tails cut off at the last recovery.", True),
    ("snapshot_errors", "tsdb_snapshot_failures", "Snapshots that failed.", True),
    ("segments", "tsdb_wal_segments", "Write-ahead log segment files on disk.", False),
    ("bytes", "tsdb_wal_disk_bytes", "Bytes of write-ahead log on disk.", False),
    ("last_snapshot_bytes", "tsdb_snapshot_last_bytes", "Size of the newest snapshot.", False),
    ("recovery_seconds", "tsdb_recovery_seconds", "Seconds the last start-up spent recovering.", False),
)


def _wal_metrics(wal: dict[str, Any]) -> Iterator[Metric]:
    """The durability layer's counters and gauges from ``db.stats()["wal"]``."""
    for key, name, doc, counter in _WAL_METRICS:
        value = wal.get(key)
        if value is None:
            continue
        family = CounterMetricFamily if counter else GaugeMetricFamily
        yield family(name, doc, value=float(value))
    yield GaugeMetricFamily(
        "tsdb_snapshot_last_success_timestamp_seconds",
        "Unix time of the newest snapshot written by this process (0: none yet).",
        value=float(wal.get("last_snapshot_time") or 0),
    )


class ServerMetrics:
    """The registry and instruments of one app; see the module docstring for the names."""

    def __init__(self, get_db: Callable[[], Any]) -> None:
        # The *_created series double every scrape's size for no use here; process-wide switch.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "tsdb_http_requests", "HTTP requests by route template, method and status.",
            ["route", "method", "status"], registry=reg,
        )  # fmt: skip
        self.duration = Histogram(
            "tsdb_http_request_duration_seconds", "HTTP request latency by route template.",
            ["route"], buckets=_HTTP_BUCKETS, registry=reg,
        )  # fmt: skip
        self.ingested = Counter("tsdb_samples_ingested", "Samples stored, by protocol.", ["protocol"], registry=reg)
        self.rejected = Counter(
            "tsdb_samples_rejected", "Samples refused, by protocol and reason.", ["protocol", "reason"], registry=reg
        )
        self.query_duration = Histogram(
            "tsdb_query_duration_seconds", "Query evaluation time by API.", ["api"], buckets=_HTTP_BUCKETS, registry=reg
        )
        reg.register(EngineCollector(get_db))
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        self._req_children: dict[tuple[str, str, int], Any] = {}
        self._dur_children: dict[str, Any] = {}
        self._ingest_children: dict[str, Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and record its latency (label children are cached)."""
        key = (route, method, status)
        child = self._req_children.get(key)
        if child is None:
            child = self._req_children[key] = self.requests.labels(route, method, str(status))
        child.inc()
        hist = self._dur_children.get(route)
        if hist is None:
            hist = self._dur_children[route] = self.duration.labels(route)
        hist.observe(seconds)

    def count_ingested(self, protocol: str, samples: int) -> None:
        """Add ``samples`` stored through ``protocol``."""
        child = self._ingest_children.get(protocol)
        if child is None:
            child = self._ingest_children[protocol] = self.ingested.labels(protocol)
        child.inc(samples)

    def count_rejected(self, protocol: str, exc: BaseException, samples: int = 1) -> None:
        """Add ``samples`` refused through ``protocol`` because of ``exc``."""
        self.rejected.labels(protocol, reject_reason(exc)).inc(samples)

    @contextmanager
    def time_query(self, api: str) -> Iterator[None]:
        """Record the duration of the enclosed query evaluation under ``api``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.query_duration.labels(api).observe(time.perf_counter() - start)


class TelemetryMiddleware:
    """Pure ASGI middleware recording every HTTP request in ``ServerMetrics``.

    Starlette's router writes the matched route into ``scope["route"]`` (the same dict this
    middleware holds), so after the call the template is known without matching again.
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app raises before starting a response, the client sees a 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - start)
