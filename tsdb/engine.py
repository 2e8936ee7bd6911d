"""The embedded database: ``TSDB`` owns the shards, admits writes, plans queries, runs maintenance.

Everything the server does goes through this class, and users embed it directly::

    db = TSDB()
    db.write("cpu", 1700000000, 0.5, labels={"host": "a"})
    db.query("cpu", 1700000000, 1700003600, agg="avg", downsample=60)

Thread-safe: each shard has its own lock, so writers to different shards run side by side
(as far as the GIL allows) and readers only hold a lock long enough to snapshot a series.

Durability: with ``data_dir`` set, ``TSDB(...)`` locks the directory and recovers (newest
snapshot + WAL replay) before it returns; every write, delete and retention pass is logged under
the shard lock before it is applied, and ``write``/``write_batch``/``write_columns``/``delete``
return only once their log records are durable under the ``fsync`` policy (``always``: fsynced,
shared by concurrent writers; ``interval:<s>``/``never``: written to the OS). Snapshots are taken
by ``snapshot()``, by ``run_maintenance`` every ``snapshot_interval_seconds`` and by ``close``.
Without ``data_dir`` no durability code runs at all.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from tsdb import codec
from tsdb._types import Batch, check_value, check_values
from tsdb.errors import InvalidInputError, InvalidQueryError, InvalidTimestampError, LimitExceededError
from tsdb.labels import (
    DEFAULT_LIMITS,
    LabelSet,
    Limits,
    Matcher,
    canonical_key,
    make_labelset,
    shard_of,
    validate_metric_name,
)
from tsdb.query.aggregate import parse_agg
from tsdb.query.planner import QueryPlan, run_query
from tsdb.query.result import QueryResult
from tsdb.query.selector import matchers_of
from tsdb.storage import decoded_cache
from tsdb.storage.durable import Durability, ShardLog
from tsdb.storage.interface import SeriesData
from tsdb.storage.rollup import RollupListener, parse_rollups
from tsdb.storage.series import Series
from tsdb.storage.shard import Shard
from tsdb.timeutil import MAX_NS, MIN_NS, NS_PER_S, ns_to_seconds, parse_duration_ns, to_ns, to_ns_array
from tsdb.wal import FsyncPolicy, WalPosition

__all__ = ["EngineSettings", "TSDB", "WriteResult"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Engine configuration; immutable, validated on construction.

    ``retention_seconds``: raw samples older than (newest sample - retention) are dropped a
    whole chunk at a time and refused on write; 0 keeps them forever.
    ``future_tolerance_seconds``: samples newer than wall clock + this are refused (None: no
    check). ``max_series``: new series beyond this count are refused. ``max_points``: a query
    answer larger than this is refused with advice to narrow it.
    ``data_dir``: directory for the write-ahead log and snapshots (None or "": memory only).
    ``fsync``: ``always`` | ``interval:<seconds>`` | ``never`` (see ``tsdb.wal.log``).
    ``snapshot_interval_seconds``: ``run_maintenance`` snapshots when this long has passed
    since the last snapshot (0: every pass).
    """

    chunk_size: int = 500
    retention_seconds: float = 0
    num_shards: int = 4
    future_tolerance_seconds: float | None = 600
    max_series: int | None = None
    max_points: int | None = None
    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)
    data_dir: str | None = None
    fsync: str = "always"
    rollups: str = ""
    #: Fast-sealed chunks recompressed at the strong level per maintenance pass and shard.
    recompress_budget: int = 2000
    snapshot_interval_seconds: float = 300
    #: Budget of the process-wide cache of decoded chunks (bytes; 0 disables it). Repeated
    #: wide reads (dashboard refreshes) skip decompression while their chunks stay cached.
    decoded_cache_bytes: int = decoded_cache.DEFAULT_BYTES

    def __post_init__(self) -> None:
        def bad(name: str, value: Any, accepted: str) -> InvalidInputError:
            return InvalidInputError(f"{name}={value!r} is invalid: {accepted}", field=name)

        if (
            isinstance(self.chunk_size, bool)
            or not isinstance(self.chunk_size, int)
            or not 2 <= self.chunk_size <= 1_000_000
        ):
            raise bad("chunk_size", self.chunk_size, "expected an integer in [2, 1000000]")
        if (
            isinstance(self.num_shards, bool)
            or not isinstance(self.num_shards, int)
            or not 1 <= self.num_shards <= 1024
        ):
            raise bad("num_shards", self.num_shards, "expected an integer in [1, 1024]")
        if (
            not isinstance(self.retention_seconds, (int, float))
            or isinstance(self.retention_seconds, bool)
            or not 0 <= self.retention_seconds < 1e10
        ):
            raise bad("retention_seconds", self.retention_seconds, "expected a number >= 0 (0 keeps data forever)")
        if self.future_tolerance_seconds is not None and not 0 <= self.future_tolerance_seconds < 1e10:
            raise bad("future_tolerance_seconds", self.future_tolerance_seconds, "expected a number >= 0 or None")
        for name in ("max_series", "max_points"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise bad(name, v, "expected a positive integer or None")
        if self.data_dir is not None:
            if not isinstance(self.data_dir, (str, os.PathLike)):
                raise bad("data_dir", self.data_dir, "expected a directory path, or None for memory only")
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir) or None)
        FsyncPolicy.parse(self.fsync)  # raises InvalidInputError naming the field
        interval = self.snapshot_interval_seconds
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 <= interval < 1e10:
            raise bad("snapshot_interval_seconds", interval, "expected a number of seconds >= 0")


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of a batch write: rows stored, rows refused, and the first few reasons."""

    accepted: int
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


class TSDB:
    """An in-memory time series database; see the module docstring and ENGINE_API in docs."""

    def __init__(
        self,
        chunk_size: int = 500,
        retention_seconds: float = 0,
        num_shards: int = 4,
        *,
        settings: EngineSettings | None = None,
        **other_settings: Any,
    ) -> None:
        if settings is None:
            settings = EngineSettings(
                chunk_size=chunk_size, retention_seconds=retention_seconds, num_shards=num_shards, **other_settings
            )
        elif other_settings:
            settings = replace(settings, **other_settings)
        self.settings = settings
        self._shards = [Shard(i, settings.chunk_size, codec.FAST_LEVEL) for i in range(settings.num_shards)]
        decoded_cache.cache.configure(settings.decoded_cache_bytes)
        self.tiers = parse_rollups(settings.rollups)
        if self.tiers:
            listener = RollupListener(self.tiers)
            for shard in self._shards:
                shard.rollups = listener
                shard.on_seal = listener
        self._retention_ns = round(settings.retention_seconds * NS_PER_S)
        tol = settings.future_tolerance_seconds
        self._future_ns = None if tol is None else round(tol * NS_PER_S)
        #: Cached "now + future tolerance" (ns): only a timestamp above it reads the clock,
        #: so the hot write path makes no clock call at all.
        self._admit_hi = MAX_NS if self._future_ns is None else MIN_NS
        #: Newest sample timestamp ever admitted (ns); retention counts back from it.
        self._newest = MIN_NS
        #: metric, or (metric, label items) as the caller spelled them -> series: the write fast path.
        self._cache: dict[Any, Series] = {}
        #: (metric, labelset) -> series: the batch write path's equivalent of ``_cache``.
        self._refs: dict[tuple[str, LabelSet], Series] = {}
        self._create_lock = threading.Lock()
        self._maintenance_lock = threading.Lock()
        self._closed = False
        #: The durability layer (None: memory only). Checked once per write; see module docstring.
        self._wal: Durability | None = None
        if settings.data_dir is not None:
            self._wal = Durability.open(settings.data_dir, self._shards, self.tiers, fsync=settings.fsync)
            self._newest = max(MIN_NS, self._wal.newest)
            # Dropped without close(): release the files and the lock when collected (or at exit)
            # so this process can open the directory again; no snapshot, like a crash.
            weakref.finalize(self, self._wal.abandon)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Release resources. Idempotent. With a data directory: snapshot (best effort), make
        the WAL durable, close it and release the directory lock; later writes raise
        StorageError."""
        self._closed = True
        if self._wal is not None:
            with self._maintenance_lock:  # a running maintenance pass finishes first
                self._wal.close()

    def snapshot(self) -> dict[str, float] | None:
        """Write a snapshot of every shard now and drop the WAL it covers; returns the bytes
        written and the seconds taken (None without a data directory)."""
        return None if self._wal is None else self._wal.snapshot()

    def __enter__(self) -> TSDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def shards(self) -> Sequence[Shard]:
        """The shards (read-only use: stats, tests, tooling)."""
        return tuple(self._shards)

    # -- series resolution --------------------------------------------------------------

    def _resolve(self, metric: Any, labels: Any) -> Series:
        """Find or create the series for a metric and labels as the caller gave them, and
        remember it under that spelling for the write fast path."""
        if type(labels) is dict:
            items = tuple(labels.items())
            metric = validate_metric_name(metric, self.settings.limits)
            # The label set reuses the (name, value) tuples of the cache key: stored once.
            series = self._series_for(metric, make_labelset(items, self.settings.limits))
            self._cache[(metric, items) if items else metric] = series
            return series
        metric = validate_metric_name(metric, self.settings.limits)
        series = self._series_for(metric, make_labelset(labels, self.settings.limits))
        if labels is None:
            self._cache[metric] = series
        return series

    def _series_for(self, metric: str, labelset: LabelSet) -> Series:
        """Find or create a series from validated parts, enforcing ``max_series``."""
        key = canonical_key(metric, labelset)
        shard = self._shards[shard_of(key, len(self._shards))]
        series = shard.lookup(key)
        if series is not None and not series.dead:
            return series
        limit = self.settings.max_series
        if limit is None:
            return shard.get_or_create(key, metric, labelset)[0]
        with self._create_lock:
            if shard.lookup(key) is None and self.num_series() >= limit:
                raise LimitExceededError(
                    f"series limit reached: {limit} series exist and {key!r:.120} would be new; "
                    "existing series still accept writes (raise max_series to allow more)",
                    field="labels",
                )
            return shard.get_or_create(key, metric, labelset)[0]

    def _forget_cached_series(self) -> None:
        """Drop the write caches (after series were removed)."""
        self._cache.clear()
        self._refs.clear()

    def _batch_refs(self, batch: Batch) -> list[Series]:
        """The series of a batch's entries, through a cache keyed by (metric, labelset): a
        protocol batch names thousands of known series, and building each canonical key
        and hash again would cost more than appending their samples."""
        cache = self._refs
        out = []
        for ref in batch.series:
            series = cache.get(ref)
            if series is None or series.dead:
                series = cache[ref] = self._series_for(*ref)
            out.append(series)
        return out

    def num_series(self) -> int:
        """Number of series stored."""
        return sum(s.series_count() for s in self._shards)

    # -- admission ----------------------------------------------------------------------

    def _check_one(self, ts: int) -> None:
        """Raise unless ``ts`` lies in the accepted window; refreshes the cached upper bound."""
        if self._future_ns is not None:
            self._admit_hi = time.time_ns() + self._future_ns
        if self._future_ns is not None and ts > self._admit_hi:
            raise InvalidTimestampError(
                f"timestamp {ns_to_seconds(ts)} s is more than {self._future_ns / NS_PER_S:g} s in the future "
                "(future_tolerance_seconds)",
                field="timestamp",
            )
        if self._retention_ns and ts < max(self._newest, ts) - self._retention_ns:
            raise InvalidTimestampError(
                f"timestamp {ns_to_seconds(ts)} s is older than the retention window: the newest sample is at "
                f"{ns_to_seconds(self._newest)} s and retention_seconds={self.settings.retention_seconds:g}",
                field="timestamp",
            )

    def _admissible(self, ts: I64) -> tuple[npt.NDArray[np.bool_] | None, list[str]]:
        """Mask of rows inside the accepted time window (None when all are) and reasons."""
        if len(ts) == 0:
            return None, []
        bad = np.zeros(len(ts), dtype=bool)
        reasons = []
        if self._future_ns is not None:
            limit = time.time_ns() + self._future_ns
            future = ts > limit
            if future.any():
                i = int(np.flatnonzero(future)[0])
                reasons.append(
                    f"{int(future.sum())} samples more than {self._future_ns / NS_PER_S:g} s in the future "
                    f"(first: row {i}, {ns_to_seconds(int(ts[i]))} s)"
                )
                bad |= future
        if self._retention_ns:
            ok_ts = ts[~bad]
            newest = max(self._newest, int(ok_ts.max())) if len(ok_ts) else self._newest
            old = ts < newest - self._retention_ns
            if old.any():
                i = int(np.flatnonzero(old)[0])
                reasons.append(
                    f"{int(old.sum())} samples older than the retention window of "
                    f"{self.settings.retention_seconds:g} s before the newest sample (first: row {i}, "
                    f"{ns_to_seconds(int(ts[i]))} s)"
                )
                bad |= old
        return (~bad if bad.any() else None), reasons

    def _note_newest(self, ts_max: int) -> None:
        if ts_max > self._newest:
            self._newest = ts_max

    # -- writes -------------------------------------------------------------------------

    def write(
        self, metric: str, timestamp: Any, value: Any, labels: Mapping[str, str] | None = None, *, unit: str = "s"
    ) -> None:
        """Store one sample.

        ``timestamp``: number in ``unit`` (default seconds), RFC 3339 string, datetime or
        datetime64. ``value``: a finite real number (booleans refused). ``labels``: str -> str.
        Raises an InvalidInputError subclass naming the field; nothing is stored then.
        """
        # The hot path of the embedded API: every line here runs per sample, so common cases
        # (cached series, int/float seconds, float value, timestamp inside the window) are
        # inlined and anything unusual falls back to the general, fully checked helpers.
        tp = type(timestamp)
        if tp is int and unit == "s" and -4_000_000_000 < timestamp < 4_000_000_000:
            ts = timestamp * 1_000_000_000
        elif tp is float and unit == "s" and -4e9 < timestamp < 4e9:
            whole = int(timestamp)  # whole and fraction apart: exact to the float's precision
            ts = whole * 1_000_000_000 + round((timestamp - whole) * 1e9)
        else:
            ts = to_ns(timestamp, unit)
        v = value if type(value) is float and value - value == 0.0 else check_value(value)
        # Admission before series lookup: a refused sample must not leave a new empty series.
        if ts > self._admit_hi or (self._retention_ns and ts < self._newest - self._retention_ns):
            self._check_one(ts)
        series = None
        if labels is None:
            if type(metric) is str:
                series = self._cache.get(metric)
        elif type(labels) is dict:
            try:
                series = self._cache.get((metric, tuple(labels.items())) if labels else metric)
            except TypeError:
                series = None
        if series is None:
            series = self._resolve(metric, labels)
        if self._wal is not None:
            self._write_logged(series, ts, v)
            return
        shard = series.shard
        lock = shard.lock
        lock.acquire()  # explicit acquire/release: half the cost of a with-statement here
        try:
            if series.dead:
                series = shard._live(series)
            # Series.append, inlined: a method call is a measurable share of this path.
            hts = series.head_ts
            if hts is None:
                n = series.append(ts, v)
            else:
                if ts > series.last:
                    series.last = ts
                else:
                    series.in_order = False
                hts.append(ts)
                series.head_vals.append(v)  # type: ignore[union-attr]
                n = len(hts)
            if n >= shard.chunk_size:
                shard.chunks_sealed_total += series.seal(shard.chunk_size, shard.seal_level, shard.on_seal)
        finally:
            lock.release()
        if ts > self._newest:
            self._newest = ts

    def _write_logged(self, series: Series, ts: int, v: float) -> None:
        """``write`` with a data directory: log under the shard lock, wait for durability after."""
        shard = series.shard
        pos = shard.append_one(series, ts, v)
        if ts > self._newest:
            self._newest = ts
        if pos is not None:
            shard.log.wait_durable(pos)

    def write_columns(
        self, metric: str, timestamps: Any, values: Any, labels: Mapping[str, str] | None = None, *, unit: str = "s"
    ) -> int:
        """Store columns of samples for one series (numpy arrays, lists, pandas columns).

        Atomic: every row is validated first; returns the number of rows stored.
        """
        ts = to_ns_array(timestamps, unit)
        vals = check_values(values)
        if len(ts) != len(vals):
            raise InvalidInputError(f"{len(ts)} timestamps but {len(vals)} values", field="values")
        metric = validate_metric_name(metric, self.settings.limits)
        labelset = make_labelset(labels, self.settings.limits)
        return self.write_batch(Batch.single(metric, labelset, ts, vals)).accepted

    def write_batch(self, batch: Batch, *, partial: bool = False) -> WriteResult:
        """Store a columnar batch (from a protocol parser or ``Batch.single``).

        ``partial=False``: all or nothing; any row outside the accepted time window raises
        InvalidTimestampError and nothing is stored. ``partial=True``: rows in the window are
        stored and the result reports the rest. Series names must already be validated.
        """
        batch.validate()
        n = len(batch)
        if n == 0:
            return WriteResult(0)
        mask, reasons = self._admissible(batch.timestamps)
        if mask is not None and not partial:
            raise InvalidTimestampError("; ".join(reasons), field="timestamp")
        refs = self._batch_refs(batch)
        idx, ts, vals = batch.series_idx, batch.timestamps, batch.values
        if mask is not None:
            idx, ts, vals = idx[mask], ts[mask], vals[mask]
        waits = self._append(refs, idx, ts, vals)
        if len(ts):
            self._note_newest(int(ts.max()))
        if waits:
            self._wal.wait(waits)  # type: ignore[union-attr]
        return WriteResult(len(ts), n - len(ts), reasons)

    def _append(self, refs: Sequence[Series], idx: I64, ts: I64, vals: F64) -> list[tuple[ShardLog, WalPosition]]:
        """Route rows to their series, one lock hold per shard; returns the WAL positions to
        wait for (none without a data directory)."""
        if len(refs) > 1 and len(idx) < 4 * len(refs):
            return self._append_rows(refs, idx, ts, vals)
        return self._append_columns(refs, idx, ts, vals)

    def _append_rows(self, refs: Sequence[Series], idx: I64, ts: I64, vals: F64) -> list[tuple[ShardLog, WalPosition]]:
        """``_append`` for sparse batches (a few rows per series): rows go to each shard in
        batch order and are appended one by one (``Shard.append_rows``)."""
        refs, idx = _unique_refs(refs, idx)
        # Rows grouped by shard, then by series, each series' rows in batch order: the WAL
        # record then holds one run per series, which replay applies exactly like this call.
        per_ref_shard = np.fromiter((s.shard.number for s in refs), np.int64, len(refs))
        order = np.argsort(per_ref_shard[idx] * len(refs) + idx, kind="stable")
        idx, ts, vals = idx[order], ts[order], vals[order]
        shard_no = per_ref_shard[idx]
        bounds = [0, *(np.flatnonzero(np.diff(shard_no)) + 1).tolist(), len(idx)]
        waits = []
        for a, b in itertools.pairwise(bounds):
            shard = self._shards[int(shard_no[a])]
            pos = shard.append_rows([refs[i] for i in idx[a:b].tolist()], ts[a:b], vals[a:b])
            if pos is not None and shard.log is not None:
                waits.append((shard.log, pos))
        return waits

    def _append_columns(
        self, refs: Sequence[Series], idx: I64, ts: I64, vals: F64
    ) -> list[tuple[ShardLog, WalPosition]]:
        """``_append`` for dense batches: one column pair per series."""
        per_shard: dict[int, list[tuple[Series, I64, F64]]] = {}
        #: With a WAL: each shard's rows are one slice [lo, hi) of the sorted columns, which
        #: its log record takes as they are (no per-shard concatenation).
        spans: dict[int, list[int]] = {}
        if len(refs) == 1:
            series = refs[0]
            per_shard[series.shard.number] = [(series, ts, vals)]
        else:
            refs, idx = _unique_refs(refs, idx)
            key = idx
            if self._wal is not None:  # group rows by shard first, then by series
                shard_no = np.fromiter((s.shard.number for s in refs), np.int64, len(refs))
                key = shard_no[idx] * len(refs) + idx
            order = np.argsort(key, kind="stable")
            sidx = idx[order]
            bounds = np.flatnonzero(np.diff(sidx)) + 1
            starts = [0, *bounds.tolist()]
            ends = [*bounds.tolist(), len(sidx)]
            ts, vals = ts[order], vals[order]
            for a, b in zip(starts, ends, strict=True):
                if b <= a:
                    continue
                series = refs[int(sidx[a])]
                per_shard.setdefault(series.shard.number, []).append((series, ts[a:b], vals[a:b]))
                if self._wal is not None:
                    spans.setdefault(series.shard.number, [a, b])[1] = b
        waits = []
        for number, items in per_shard.items():
            shard = self._shards[number]
            span = spans.get(number)
            columns = None if span is None else (ts[span[0] : span[1]], vals[span[0] : span[1]])
            pos = shard.append_columns(items, columns)
            if pos is not None and shard.log is not None:
                waits.append((shard.log, pos))
        return waits

    def write_dataframe(
        self,
        df: Any,
        metric: str | None = None,
        *,
        timestamp_column: str | None = None,
        value_columns: Sequence[str] | None = None,
        label_columns: Sequence[str] = (),
        unit: str = "s",
    ) -> int:
        """Store a pandas DataFrame; returns rows stored.

        Timestamps come from ``timestamp_column`` or the index (datetime64 or numbers in
        ``unit``). Each value column becomes a series named ``metric`` (one column) or
        ``<metric>_<column>`` (several; the column name alone without ``metric``); label
        columns split rows into series. Atomic over the whole frame.
        """
        ts_source = df[timestamp_column] if timestamp_column is not None else df.index
        ts = to_ns_array(np.asarray(ts_source), unit)
        cols = (
            list(value_columns)
            if value_columns is not None
            else [c for c in df.columns if c != timestamp_column and c not in label_columns]
        )
        if not cols:
            raise InvalidInputError("the DataFrame has no value columns", field="value_columns")
        label_arrays = {name: np.asarray(df[name]).astype(str) for name in label_columns}
        batches = []
        for col in cols:
            name = metric if (metric is not None and len(cols) == 1) else (f"{metric}_{col}" if metric else str(col))
            name = validate_metric_name(name, self.settings.limits)
            vals = check_values(np.asarray(df[col]), field=str(col))
            if not label_columns:
                batches.append(Batch.single(name, (), ts, vals))
                continue
            keys = list(zip(*(label_arrays[n] for n in label_columns), strict=True))
            uniq: dict[tuple[str, ...], int] = {}
            idx = np.fromiter((uniq.setdefault(k, len(uniq)) for k in keys), dtype=np.int64, count=len(keys))
            series = [
                (name, make_labelset(dict(zip(label_columns, k, strict=True)), self.settings.limits)) for k in uniq
            ]
            batches.append(Batch(series, idx, ts, vals))
        return self.write_batch(Batch.concat(batches)).accepted

    # -- queries ------------------------------------------------------------------------

    def _time_range(self, start: Any, end: Any) -> tuple[int, int, bool, bool]:
        s = MIN_NS if start is None else to_ns(start, field="start")
        e = MAX_NS if end is None else to_ns(end, field="end")
        if s > e:
            raise InvalidQueryError(f"start ({start!r}) is after end ({end!r})", field="start")
        return s, e, start is None, end is None

    @property
    def raw_cutoff(self) -> int | None:
        """Time (ns) before which raw samples have expired, or None when raw is kept forever."""
        if self._retention_ns and self._newest > MIN_NS:
            return self._newest - self._retention_ns
        return None

    def select(
        self,
        selector: str | Sequence[Matcher] | None = None,
        start: Any = None,
        end: Any = None,
        *,
        metric: str | None = None,
        labels: Mapping[str, str] | None = None,
        agg: str | None = None,
        q: float | None = None,
        downsample: Any = None,
        group_by: Sequence[str] | None = None,
        fill: str | float | None = None,
    ) -> QueryResult:
        """Query many series: raw samples, a whole-range aggregate, or a downsample.

        ``selector``: PromQL selector string or Matchers (ANDed with ``metric``/``labels``).
        ``start``/``end``: inclusive; numbers are seconds; None = unbounded. With ``agg`` and
        no ``group_by`` each series is aggregated alone; ``group_by=[]`` merges all series,
        ``["host"]`` merges by host. ``downsample``: bucket width (seconds or "5m"), buckets
        aligned to the epoch; its default aggregation is avg. ``fill``: None omits empty
        buckets; "null", "zero", "previous" or a number fills them between start and end.
        """
        matchers = matchers_of(selector, metric, labels)
        s, e, open_s, open_e = self._time_range(start, end)
        width = None if downsample is None else parse_duration_ns(downsample, field="downsample")
        spec = parse_agg(agg, q) if agg is not None else (parse_agg("avg") if width is not None else None)
        if fill is not None and not isinstance(fill, (int, float)) and fill not in ("null", "zero", "previous"):
            raise InvalidQueryError(f"unknown fill {fill!r}: expected null, zero, previous or a number", field="fill")
        if group_by is not None:
            if isinstance(group_by, str):
                group_by = [group_by]
            group_by = list(group_by)
        plan = QueryPlan(
            matchers,
            s,
            e,
            spec,
            width,
            group_by,
            fill,
            self.settings.max_points,
            open_s,
            open_e,
            raw_cutoff=self.raw_cutoff,
            tiers=self.tiers,
            newest=self._newest,
        )
        return run_query(self._shards, plan)

    def query(
        self,
        metric: str,
        start: Any = None,
        end: Any = None,
        agg: str | None = None,
        downsample: Any = None,
        labels: Mapping[str, str] | None = None,
        *,
        fill: str | float | None = None,
    ) -> list[tuple[int | float, float | None]] | float | None:
        """The simple query form, over every series of ``metric`` matching ``labels``.

        Returns raw points as ``[(timestamp_seconds, value), ...]`` in time order; with
        ``agg`` alone, one number (None if the range is empty); with ``downsample``, a list
        of ``(bucket_start_seconds, value)`` (aggregation default avg).
        """
        if agg is None and downsample is None:
            result = self.select(None, start, end, metric=metric, labels=labels)
            if len(result.series) == 1:
                return result.series[0].points()
            points = [p for s in result.series for p in s.points()]
            points.sort(key=lambda p: p[0])
            return points
        result = self.select(
            None, start, end, metric=metric, labels=labels, agg=agg, downsample=downsample, group_by=[], fill=fill
        )
        if downsample is None:
            return result.series[0].value if result.series else None
        return result.series[0].points() if result.series else []

    def select_raw(self, matchers: Sequence[Matcher], start_ns: int, end_ns: int) -> list[SeriesData]:
        """Querier protocol: raw samples (staleness markers kept) of matching series, sorted."""
        if self._retention_ns and self._newest > MIN_NS:
            start_ns = max(start_ns, self._newest - self._retention_ns)
        if start_ns > end_ns:
            return []
        out = [d for shard in self._shards for d in shard.read_raw(matchers, start_ns, end_ns)]
        out.sort(key=lambda d: (d.metric, d.labels))
        return out

    def select_series(self, matchers: Sequence[Matcher]) -> list[tuple[str, LabelSet]]:
        """Querier protocol: every stored series matching ``matchers``, sorted."""
        out = [(s.metric, s.labels) for shard in self._shards for s in shard.select(matchers)]
        out.sort()
        return out

    def series(self, selector: str | Sequence[Matcher] | None = None, **kw: Any) -> list[tuple[str, dict[str, str]]]:
        """(metric, labels) of every series matching a selector (all series when None)."""
        matchers = matchers_of(selector, kw.get("metric"), kw.get("labels")) if (selector or kw) else []
        return [(m, dict(ls)) for m, ls in self.select_series(matchers)]

    def label_names(self, matchers: Sequence[Matcher] | None = None) -> list[str]:
        """Sorted label names in use, ``__name__`` included."""
        names: set[str] = set()
        for shard in self._shards:
            names |= shard.label_names(matchers)
        return sorted(names)

    def label_values(self, name: str, matchers: Sequence[Matcher] | None = None) -> list[str]:
        """Sorted values of one label (``__name__``: metric names)."""
        values: set[str] = set()
        for shard in self._shards:
            values |= shard.label_values(name, matchers)
        return sorted(values)

    def delete(self, selector: str | Sequence[Matcher], start: Any = None, end: Any = None) -> int:
        """Delete samples of matching series in [start, end] (all time by default); series
        left empty disappear. Returns the number of samples deleted."""
        matchers = matchers_of(selector)
        s = None if start is None else to_ns(start, field="start")
        e = None if end is None else to_ns(end, field="end")
        if s is not None and e is not None and s > e:
            raise InvalidQueryError(f"start ({start!r}) is after end ({end!r})", field="start")
        deleted = sum(shard.delete(matchers, s, e) for shard in self._shards)
        self._forget_cached_series()
        if self._wal is not None:
            self._wal.wait_all()
        return deleted

    # -- maintenance and introspection --------------------------------------------------

    def run_maintenance(self) -> dict[str, int]:
        """Apply retention (whole chunks), drop empty series, recompress fast-sealed chunks,
        and with a data directory snapshot when ``snapshot_interval_seconds`` have passed.

        One pass over every shard; the server calls it periodically from one task (never a
        thread per series). Returns what it did.
        """
        with self._maintenance_lock:
            expired_chunks = dropped_series = recompressed = 0
            if (self._retention_ns or self.tiers) and self._newest > MIN_NS:
                for shard in self._shards:
                    c, d = shard.expire(self.raw_cutoff, self._newest)
                    expired_chunks += c
                    dropped_series += d
                if dropped_series:
                    self._forget_cached_series()
            for shard in self._shards:
                recompressed += shard.recompress(self.settings.recompress_budget)
            done = {
                "expired_chunks": expired_chunks,
                "dropped_series": dropped_series,
                "recompressed_chunks": recompressed,
            }
            if self._wal is not None:
                self._wal.wait_all()  # the retention records
                if self._wal.snapshot_due(self.settings.snapshot_interval_seconds):
                    done["snapshot_bytes"] = int(self._wal.snapshot(force=False)["bytes"])
            return done

    def stats(self) -> dict[str, Any]:
        """Sizes per shard and in total: series, samples in heads and sealed chunks, chunks,
        compressed bytes, chunks sealed since start."""
        shards = [s.stats() for s in self._shards]
        total: dict[str, Any] = {
            key: sum(getattr(s, key) for s in shards)
            for key in ("series", "head_samples", "sealed_samples", "chunks", "compressed_bytes", "chunks_sealed_total")
        }
        total["bytes_per_sealed_sample"] = (
            total["compressed_bytes"] / total["sealed_samples"] if total["sealed_samples"] else None
        )
        total["newest_timestamp"] = None if self._newest == MIN_NS else ns_to_seconds(self._newest)
        total["wal"] = None if self._wal is None else self._wal.stats()
        total["tiers"] = [
            {
                "tier": t.name,
                "resolution_seconds": t.resolution / NS_PER_S,
                "retention_seconds": t.retention / NS_PER_S,
                "buckets": sum(s.tier_rows[i] for s in shards),
                "bytes": sum(s.tier_bytes[i] for s in shards),
            }
            for i, t in enumerate(self.tiers)
        ]
        total["shards"] = [
            {
                k: getattr(s, k)
                for k in (
                    "shard",
                    "series",
                    "head_samples",
                    "sealed_samples",
                    "chunks",
                    "compressed_bytes",
                    "chunks_sealed_total",
                )
            }
            for s in shards
        ]
        return total


def _unique_refs(refs: Sequence[Series], idx: I64) -> tuple[Sequence[Series], I64]:
    """Batch series entries deduplicated (``Batch.concat`` may list a series twice) and row
    indexes remapped, so each series gets one run of rows in batch order: the last write of a
    timestamp wins, and a logged call replays run by run exactly as it was applied."""
    if len(set(map(id, refs))) == len(refs):
        return refs, idx
    uniq: dict[int, int] = {}
    remap = np.fromiter((uniq.setdefault(id(s), len(uniq)) for s in refs), np.int64, len(refs))
    return list({id(s): s for s in refs}.values()), remap[idx]
