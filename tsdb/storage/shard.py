"""A shard: a self-contained slice of the series space behind a narrow interface.

Series are assigned to shards by a stable hash of their canonical key (``labels.shard_of``).
A shard owns its series, its label index and one lock; everything it returns is plain data
(ids, numpy arrays, ``Partials``), so a shard could live in another process unchanged.
Writers hold the lock while appending; readers hold it only to take ``SeriesView`` snapshots
and compute outside it, so long queries never block ingest.

Durability: when ``log`` is set (the engine was given a data directory), every change (samples,
deletes, retention) is written to the shard's write-ahead log under the lock *before* it is
applied, in the same order as in memory. A failed log write raises with memory unchanged; the
caller waits for the returned WAL position to become durable after releasing the lock, so
concurrent writers share fsyncs (group commit). With ``log`` None no WAL code runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tsdb.codec import STRONG_LEVEL
from tsdb.labels import LabelSet, Matcher
from tsdb.storage.chunk import I_MAXT, I_MINT, SealedChunk, compute_stats
from tsdb.storage.index import LabelIndex
from tsdb.storage.interface import SeriesData
from tsdb.storage.partials import Partials
from tsdb.storage.read import read_samples, series_partials
from tsdb.storage.rollup import RollupListener, series_tier_partials
from tsdb.storage.series import SealEvent, Series, SeriesView

if TYPE_CHECKING:
    from tsdb.storage.durable import ShardLog
    from tsdb.wal import WalPosition

__all__ = ["GroupKey", "Shard", "ShardStats", "group_key"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
#: Identity of an aggregation group: (label name, value) pairs; "__name__" is the metric.
GroupKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ShardStats:
    """Sizes of one shard at one moment."""

    shard: int
    series: int
    head_samples: int
    sealed_samples: int
    chunks: int
    compressed_bytes: int
    chunks_sealed_total: int
    #: Rows (buckets) and bytes held by each rollup tier, in tier order.
    tier_rows: tuple[int, ...] = ()
    tier_bytes: tuple[int, ...] = ()


class Shard:
    """One shard; see the module docstring. Thread-safe: every public method takes the lock."""

    def __init__(self, number: int, chunk_size: int, seal_level: int) -> None:
        self.number = number
        self.chunk_size = chunk_size
        self.seal_level = seal_level
        self.lock = threading.Lock()
        self._by_key: dict[str, Series] = {}
        self._by_id: dict[int, Series] = {}
        self._index = LabelIndex(self._identity, self._by_id.keys)
        self._next_id = 1
        self.chunks_sealed_total = 0
        #: Rollup tiers, fed by every seal (None: rollups disabled).
        self.rollups: RollupListener | None = None
        #: Called (under the lock) with every seal; the rollup listener when tiers are on.
        self.on_seal: Callable[[SealEvent], None] | None = None
        #: Called (under the lock) with every series created; the WAL listens here.
        self.on_new_series: Callable[[Series], None] | None = None
        #: The shard's write-ahead log (None: memory only); see the module docstring.
        self.log: ShardLog | None = None

    # -- series -------------------------------------------------------------------------

    def _identity(self, sid: int) -> tuple[str, LabelSet]:
        series = self._by_id[sid]
        return series.metric, series.labels

    def lookup(self, key: str) -> Series | None:
        """The series with this canonical key, if it exists (no lock: a dict read is atomic)."""
        return self._by_key.get(key)

    def get_or_create(self, key: str, metric: str, labels: LabelSet, sid: int | None = None) -> tuple[Series, bool]:
        """The series for ``key``, created (with id ``sid`` or the next free one) if new."""
        with self.lock:
            return self._get_or_create_locked(key, metric, labels, sid)

    def _get_or_create_locked(self, key: str, metric: str, labels: LabelSet, sid: int | None) -> tuple[Series, bool]:
        series = self._by_key.get(key)
        if series is not None:
            return series, False
        if sid is None:
            sid = self._next_id
        self._next_id = max(self._next_id, sid + 1)
        metric, labels = self._index.add(sid, metric, labels)
        series = Series(sid, metric, labels, key, self)
        self._by_key[key] = series
        self._by_id[sid] = series
        if self.on_new_series is not None:
            self.on_new_series(series)
        return series, True

    def series_by_id(self, sid: int) -> Series | None:
        """The live series with id ``sid``, if any (no lock: a dict read is atomic)."""
        return self._by_id.get(sid)

    @property
    def next_id(self) -> int:
        """The id the next new series gets."""
        return self._next_id

    def reserve_ids(self, next_id: int) -> None:
        """Never hand out ids below ``next_id`` (restoring a snapshot); call under the lock."""
        self._next_id = max(self._next_id, next_id)

    def series_locked(self) -> list[Series]:
        """Every series (a list copy), unordered; call under the lock (e.g. to snapshot)."""
        return list(self._by_key.values())

    def series_count(self) -> int:
        """Number of series in the shard."""
        return len(self._by_key)

    def _select_locked(self, matchers: Sequence[Matcher]) -> list[Series]:
        by_id = self._by_id
        return [by_id[sid] for sid in self._index.select(matchers)]

    def select(self, matchers: Sequence[Matcher]) -> list[Series]:
        """Series matching every matcher (unordered)."""
        with self.lock:
            return self._select_locked(matchers)

    # -- writes -------------------------------------------------------------------------

    def _live(self, series: Series) -> Series:
        """``series``, or its re-created successor if the shard dropped it (call under the lock)."""
        if series.dead:
            series = self._get_or_create_locked(series.key, series.metric, series.labels, None)[0]
        return series

    def append_one(self, series: Series, ts: int, value: float) -> WalPosition | None:
        """Append one sample to a series of this shard, sealing when its head is full.

        Returns the WAL position to wait for (None without a log)."""
        pos = None
        with self.lock:
            if series.dead:
                series = self._live(series)
            if self.log is not None:
                pos = self.log.log_samples([(series, np.array([ts], np.int64), np.array([value], np.float64))])
            if series.append(ts, value) >= self.chunk_size:
                self.chunks_sealed_total += series.seal(self.chunk_size, self.seal_level, self.on_seal)
        return pos

    def append_columns(
        self, items: Sequence[tuple[Series, I64, F64]], columns: tuple[I64, F64] | None = None
    ) -> WalPosition | None:
        """Append a column pair to each listed series of this shard, under one lock hold.

        Each series should appear once (replay re-applies a logged call series by series).
        ``columns``, when given, are the items' timestamps and values concatenated in item
        order (the log record uses them instead of concatenating). Returns the WAL position
        to wait for (None without a log)."""
        cs, level, on_seal = self.chunk_size, self.seal_level, self.on_seal
        pos = None
        with self.lock:
            log = self.log
            if log is not None:
                items = [(self._live(s), ts, vals) for s, ts, vals in items]
                pos = log.log_samples(items, columns)
            for series, ts, vals in items:
                if series.dead:
                    series = self._live(series)
                if series.append_many(ts, vals) >= cs:
                    self.chunks_sealed_total += series.seal(cs, level, on_seal)
        return pos

    def append_rows(self, rows: Sequence[Series], ts: I64, vals: F64) -> WalPosition | None:
        """Append row i of the columns to series ``rows[i]``, in order, under one lock hold.

        The path for batches that carry a sample or two per series (a Prometheus remote-write
        queue, a Telegraf flush): per-row scalar appends cost far less than a column pair per
        series. A series may appear more than once; its rows apply in order.
        """
        cs, level, on_seal = self.chunk_size, self.seal_level, self.on_seal
        tl, vl = ts.tolist(), vals.tolist()
        pos = None
        with self.lock:
            log = self.log
            if log is not None:
                rows = [self._live(s) if s.dead else s for s in rows]
                pos = log.log_rows(np.fromiter((s.sid for s in rows), np.int64, len(rows)), ts, vals)
            touched: dict[int, Series] = {}
            for series, t, v in zip(rows, tl, vl, strict=True):
                if series.dead:
                    series = self._live(series)
                series.append(t, v)
                touched[id(series)] = series
            # Seal once per series after all its rows, exactly as the column path and WAL
            # replay do, so a recovered shard has the same chunks as the live one.
            for series in touched.values():
                if series.head_len >= cs:
                    self.chunks_sealed_total += series.seal(cs, level, on_seal)
        return pos

    # -- reads --------------------------------------------------------------------------

    def views(self, matchers: Sequence[Matcher]) -> list[SeriesView]:
        """Snapshots of the matching series, sorted by canonical key."""
        with self.lock:
            series = self._select_locked(matchers)
            series.sort(key=lambda s: s.key)
            return [s.view() for s in series]

    def _tier_views(self, matchers: Sequence[Matcher], tier: int) -> list[tuple[SeriesView, Partials]]:
        """Snapshots of matching series with a copy of their rows in tier ``tier``."""
        with self.lock:
            series = self._select_locked(matchers)
            series.sort(key=lambda s: s.key)
            return [(s.view(), s.tiers[tier].view() if s.tiers else Partials.empty()) for s in series]

    def read_raw(self, matchers: Sequence[Matcher], start: int, end: int) -> list[SeriesData]:
        """Samples of matching series in [start, end] (ns); series without samples left out."""
        out = []
        for view in self.views(matchers):
            ts, vals = read_samples(view, start, end)
            if len(ts):
                s = view.series
                out.append(SeriesData(s.metric, s.labels, ts, vals))
        return out

    def partials(
        self,
        matchers: Sequence[Matcher],
        start: int,
        end: int,
        width: int | None,
        group_by: Sequence[str] | None,
        tier: int | None = None,
    ) -> dict[GroupKey, list[tuple[str, Partials]]]:
        """Per-series partial aggregates keyed by group.

        ``group_by=None`` keys each series by its full identity (``__name__`` first); a list of
        label names keys by those labels' values (``[]`` puts every series in one group).
        Each entry is (canonical key, partials), in key order.
        """
        groups: dict[GroupKey, list[tuple[str, Partials]]] = {}
        if tier is not None:
            assert self.rollups is not None
            res = self.rollups.tiers[tier].resolution
            for view, rows in self._tier_views(matchers, tier):
                p = series_tier_partials(view, rows, res, start, end, width)
                if len(p):
                    groups.setdefault(group_key(view.series, group_by), []).append((view.series.key, p))
            return groups
        for view in self.views(matchers):
            p = series_partials(view, start, end, width)
            if len(p):
                groups.setdefault(group_key(view.series, group_by), []).append((view.series.key, p))
        return groups

    def raw_groups(
        self, matchers: Sequence[Matcher], start: int, end: int, group_by: Sequence[str] | None
    ) -> dict[GroupKey, list[tuple[str, I64, F64]]]:
        """Raw samples per group, as (canonical key, ts, values), for aggregations that need
        every value (quantile)."""
        groups: dict[GroupKey, list[tuple[str, I64, F64]]] = {}
        for view in self.views(matchers):
            ts, vals = read_samples(view, start, end)
            if len(ts):
                groups.setdefault(group_key(view.series, group_by), []).append((view.series.key, ts, vals))
        return groups

    # -- maintenance --------------------------------------------------------------------

    def expire(self, cutoff: int | None, newest: int) -> tuple[int, int]:
        """Drop whole chunks older than ``cutoff`` (ns; None: raw kept forever), rollup rows
        past their tier's retention relative to ``newest``, and series left empty; returns
        (chunks dropped, series dropped)."""
        chunks = dropped = 0
        with self.lock:
            if self.log is not None:
                self.log.log_retention(cutoff, newest)
            for series in list(self._by_key.values()):
                if cutoff is not None:
                    chunks += series.drop_chunks_before(cutoff)
                    if series.head_len and series.last < cutoff:
                        # A head entirely older than the cutoff: seal it so it can go as a whole chunk.
                        self.chunks_sealed_total += series.seal(
                            self.chunk_size, self.seal_level, self.on_seal, force=True
                        )
                        chunks += series.drop_chunks_before(cutoff)
                # Tier retention after that seal, so the rows it added expire in this same pass:
                # a second pass with the same arguments then changes nothing (the WAL relies on it).
                if self.rollups is not None:
                    self.rollups.expire(series, newest)
                if series.is_empty:
                    self._remove_locked(series)
                    dropped += 1
        return chunks, dropped

    def remove_locked(self, series: Series) -> None:
        """Drop ``series`` from the shard (marking it dead); call under the lock. The WAL uses it
        to take back series created for a write whose log record failed."""
        self._remove_locked(series)

    def _remove_locked(self, series: Series) -> None:
        series.dead = True
        del self._by_key[series.key]
        del self._by_id[series.sid]
        self._index.remove(series.sid, series.metric, series.labels)

    def recompress(self, budget: int) -> int:
        """Recompress up to ``budget`` fast-sealed chunks at the strong level; returns how many.

        Decoding and encoding happen outside the lock; a chunk is swapped only if the series
        still holds that same chunk object at that position.
        """
        with self.lock:
            todo = []
            for series in self._by_key.values():
                table = series.table
                if table is None:
                    continue
                for i, c in enumerate(table.chunks):
                    if c.level < STRONG_LEVEL:
                        todo.append((series, i, c))
                        if len(todo) >= budget:
                            break
                if len(todo) >= budget:
                    break
        done = 0
        for series, i, chunk in todo:
            ts, vals = chunk.decode()
            better = SealedChunk.encode(ts, vals, STRONG_LEVEL)
            with self.lock:
                table = series.table
                if table is not None and i < len(table.chunks) and table.chunks[i] is chunk:
                    if better.nbytes < chunk.nbytes:
                        table.set_chunk(i, better)
                    else:
                        table.set_chunk(i, SealedChunk(chunk.ts_bytes, chunk.val_bytes, STRONG_LEVEL))
                    done += 1
        return done

    def delete(self, matchers: Sequence[Matcher], start: int | None, end: int | None) -> int:
        """Delete matching samples in [start, end] (all time when both None); series left
        empty disappear. Returns the number of samples deleted (staleness markers included)."""
        deleted = 0
        with self.lock:
            targets = self._select_locked(matchers)
            if targets and self.log is not None:
                self.log.log_delete(matchers, start, end)
            for series in targets:
                deleted += self._delete_range_locked(series, start, end)
                if series.tiers is not None and self.rollups is not None:
                    if start is None and end is None:
                        series.tiers = None
                    else:
                        lo = start if start is not None else -(2**62)
                        hi = end if end is not None else 2**62
                        self.rollups.rebuild(series, lo, hi)
                if series.is_empty:
                    self._remove_locked(series)
        return deleted

    def _delete_range_locked(self, series: Series, start: int | None, end: int | None) -> int:
        lo_t = start if start is not None else -(2**63)
        hi_t = end if end is not None else 2**63 - 1
        # Seal the head first (duplicates resolved), so deletion works on chunks alone and
        # counts each deleted timestamp once.
        self.chunks_sealed_total += series.seal(self.chunk_size, self.seal_level, self.on_seal, force=True)
        deleted = 0
        table = series.table
        if table is None or not len(table):
            return deleted
        _, ist, _ = table.view()
        lo = int(np.searchsorted(ist[:, I_MAXT], lo_t, side="left"))
        hi = int(np.searchsorted(ist[:, I_MINT], hi_t, side="right"))
        if hi <= lo:
            return deleted
        chunks, irows, frows = [], [], []
        for c in table.chunks[lo:hi]:
            ts, vals = c.decode()
            keep = (ts < lo_t) | (ts > hi_t)
            deleted += int((~keep).sum())
            if keep.any():
                kts, kvals = ts[keep], vals[keep]
                irow, frow = compute_stats(kts, kvals)
                chunks.append(SealedChunk.encode(kts, kvals, c.level))
                irows.append(irow)
                frows.append(frow)
        table.replace(lo, hi, chunks, irows, frows)
        return deleted

    # -- introspection ------------------------------------------------------------------

    def all_series(self) -> list[Series]:
        """Every series (a list copy), unordered."""
        with self.lock:
            return list(self._by_key.values())

    def label_names(self, matchers: Sequence[Matcher] | None) -> set[str]:
        """Label names (``__name__`` included) over all series or the matching ones."""
        with self.lock:
            sids = None if not matchers else self._index.select(matchers)
            return self._index.label_names(sids)

    def label_values(self, name: str, matchers: Sequence[Matcher] | None) -> set[str]:
        """Values of one label over all series or the matching ones."""
        with self.lock:
            sids = None if not matchers else self._index.select(matchers)
            return self._index.label_values(name, sids)

    def pair_counts(self) -> dict[tuple[str, str], int]:
        """Series per (label, value) pair, ``__name__`` included."""
        with self.lock:
            return self._index.pair_counts()

    def stats(self) -> ShardStats:
        """Current sizes."""
        with self.lock:
            head = sealed = chunks = nbytes = 0
            ntiers = 0 if self.rollups is None else len(self.rollups.tiers)
            tier_rows, tier_bytes = [0] * ntiers, [0] * ntiers
            for s in self._by_key.values():
                head += s.head_len
                table = s.table
                if table is not None:
                    chunks += len(table)
                    sealed += table.samples
                    nbytes += table.nbytes
                for i, t in enumerate(s.tiers or ()):
                    tier_rows[i] += len(t)
                    tier_bytes[i] += t.nbytes
            return ShardStats(
                self.number,
                len(self._by_key),
                head,
                sealed,
                chunks,
                nbytes,
                self.chunks_sealed_total,
                tuple(tier_rows),
                tuple(tier_bytes),
            )


def group_key(series: Series, group_by: Sequence[str] | None) -> GroupKey:
    """Group identity of a series: its full identity, or the values of ``group_by`` labels."""
    if group_by is None:
        return (("__name__", series.metric), *series.labels)
    labels = dict(series.labels)
    labels["__name__"] = series.metric
    return tuple((name, labels.get(name, "")) for name in group_by)
