"""One series: a small append buffer (the head) in front of its sealed chunks.

Writes append to the head in arrival order. When the head holds ``chunk_size`` samples it is
sorted (stable), deduplicated (the last write of a timestamp wins) and cut into sealed chunks.
Samples older than the newest sealed chunk are merged into the chunks they overlap, which are
rewritten, so sealed chunks never overlap (``ChunkTable``'s invariant). Until a seal, a head
that overlaps the chunks is merged with them at read time, so answers are always exact.

Heads are ``array.array`` buffers allocated on first write and grown by Python's amortised
append: an idle series costs no sample slots (the issue's "no CHUNK_SIZE preallocation").
Not thread-safe; the owning shard's lock guards every method that mutates.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tsdb.labels import LabelSet
from tsdb.storage.chunk import I_MAXT, I_MINT, ChunkTable, SealedChunk, compute_stats

__all__ = ["SealEvent", "Series", "SeriesView", "sort_dedupe"]

_MIN_TS = -(2**63)


def sort_dedupe(
    ts: npt.NDArray[np.int64], vals: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Sort by time (stable) and keep the last-written value of each timestamp."""
    order = np.argsort(ts, kind="stable")
    ts, vals = ts[order], vals[order]
    if len(ts) > 1:
        keep = np.empty(len(ts), dtype=bool)
        np.not_equal(ts[1:], ts[:-1], out=keep[:-1])
        keep[-1] = True
        if not keep.all():
            ts, vals = ts[keep], vals[keep]
    return ts, vals


@dataclass(frozen=True, slots=True)
class SealEvent:
    """What a seal changed, for listeners such as rollup tiers.

    ``ts``/``vals`` are the samples that became sealed in this step, sorted and deduplicated;
    ``replaced`` holds, when old chunks were rewritten, the samples they held before (so a
    listener can subtract what it had counted), else None.
    """

    series: Series
    ts: npt.NDArray[np.int64]
    vals: npt.NDArray[np.float64]
    replaced: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] | None
    #: True when the samples are older than data sealed before (a merge), not appended after it.
    late: bool = False


@dataclass(frozen=True, slots=True)
class SeriesView:
    """A consistent snapshot of a series for lock-free reading.

    ``head_ts``/``head_vals`` are copies; when ``in_order`` the head is sorted, unique and newer
    than every chunk, else it must be sorted and merged with the chunks it overlaps.
    """

    series: Series
    chunks: list[SealedChunk]
    istats: npt.NDArray[np.int64]
    fstats: npt.NDArray[np.float64]
    head_ts: npt.NDArray[np.int64]
    head_vals: npt.NDArray[np.float64]
    in_order: bool


class Series:
    """A metric name + labels and its samples. See the module docstring."""

    __slots__ = (
        "dead",
        "head_ts",
        "head_vals",
        "in_order",
        "key",
        "labels",
        "last",
        "metric",
        "raw_from",
        "shard",
        "sid",
        "table",
        "tiers",
    )

    def __init__(self, sid: int, metric: str, labels: LabelSet, key: str, shard: Any = None) -> None:
        self.sid = sid
        #: The owning shard (for the engine's write fast path).
        self.shard = shard
        self.metric = metric
        self.labels = labels
        self.key = key
        self.head_ts: array[int] | None = None
        self.head_vals: array[float] | None = None
        #: True while the head is strictly increasing and newer than every sealed chunk.
        self.in_order = True
        #: Newest timestamp appended in order (or the newest sealed one): the order check.
        self.last = _MIN_TS
        self.table: ChunkTable | None = None
        #: Set when the shard dropped this series; writers holding it must look it up again.
        self.dead = False
        #: Raw samples are complete from this time on (ns): retention dropped what was older.
        self.raw_from = _MIN_TS
        #: Rollup tier tables (``tsdb.storage.rollup.TierTable``), one per tier, or None.
        self.tiers: list[Any] | None = None

    def append(self, ts: int, value: float) -> int:
        """Append one sample; returns the head length (the caller seals at chunk_size)."""
        hts = self.head_ts
        if hts is None:
            hts = self.head_ts = array("q")
            self.head_vals = array("d")
        if ts > self.last:
            self.last = ts
        else:
            self.in_order = False
        hts.append(ts)
        self.head_vals.append(value)  # type: ignore[union-attr]
        return len(hts)

    def append_many(self, ts: npt.NDArray[np.int64], vals: npt.NDArray[np.float64]) -> int:
        """Append columns (any order); returns the head length."""
        if self.head_ts is None:
            self.head_ts = array("q")
            self.head_vals = array("d")
        if len(ts) == 0:
            return len(self.head_ts)
        if ts[0] <= self.last or (len(ts) > 1 and not bool((ts[1:] > ts[:-1]).all())):
            self.in_order = False
            self.last = max(self.last, int(ts.max()))
        else:
            self.last = int(ts[-1])
        self.head_ts.frombytes(ts.tobytes())
        self.head_vals.frombytes(vals.tobytes())  # type: ignore[union-attr]
        return len(self.head_ts)

    @property
    def head_len(self) -> int:
        """Samples waiting in the head (duplicates included)."""
        return 0 if self.head_ts is None else len(self.head_ts)

    def head_arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Copies of the head columns in arrival order."""
        if self.head_ts is None or not self.head_ts:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        return np.frombuffer(self.head_ts, dtype=np.int64).copy(), np.frombuffer(
            self.head_vals, dtype=np.float64
        ).copy()  # type: ignore[arg-type]

    def view(self) -> SeriesView:
        """Snapshot for readers; call under the shard lock."""
        hts, hvals = self.head_arrays()
        if self.table is None:
            chunks, ist, fst = [], _EMPTY_I, _EMPTY_F
        else:
            chunks, ist, fst = self.table.view()
        return SeriesView(self, chunks, ist, fst, hts, hvals, self.in_order)

    def seal(
        self, chunk_size: int, level: int, on_seal: Callable[[SealEvent], None] | None = None, *, force: bool = False
    ) -> int:
        """Cut the head into sealed chunks of ``chunk_size``; returns chunks written.

        A remainder smaller than ``chunk_size`` stays in the head unless ``force`` (used before
        snapshots and on retention). Older-than-sealed samples are merged into the chunks.
        """
        if not self.head_ts:
            return 0
        ts, vals = self.head_arrays()
        if not self.in_order:
            ts, vals = sort_dedupe(ts, vals)
        table = self.table
        if table is None:
            table = self.table = ChunkTable()
        written = 0
        newest = int(table.istats[len(table) - 1, I_MAXT]) if len(table) else _MIN_TS
        if ts[0] <= newest:
            cut = int(np.searchsorted(ts, newest, side="right"))
            written += self._merge_into_chunks(ts[:cut], vals[:cut], chunk_size, level, on_seal)
            ts, vals = ts[cut:], vals[cut:]
        full = len(ts) if force else len(ts) - len(ts) % chunk_size
        for i in range(0, full, chunk_size):
            cts, cvals = ts[i : i + chunk_size], vals[i : i + chunk_size]
            irow, frow = compute_stats(cts, cvals)
            table.append(SealedChunk.encode(cts, cvals, level), irow, frow)
            written += 1
        if on_seal is not None and full:
            on_seal(SealEvent(self, ts[:full], vals[:full], None))
        rest_ts, rest_vals = ts[full:], vals[full:]
        self.head_ts = array("q", rest_ts.tobytes()) if len(rest_ts) else None
        self.head_vals = array("d", rest_vals.tobytes()) if len(rest_ts) else None
        self.in_order = True
        self.last = int(table.istats[len(table) - 1, I_MAXT]) if len(table) else _MIN_TS
        if len(rest_ts):
            self.last = int(rest_ts[-1])
        return written

    def _merge_into_chunks(
        self,
        ts: npt.NDArray[np.int64],
        vals: npt.NDArray[np.float64],
        chunk_size: int,
        level: int,
        on_seal: Callable[[SealEvent], None] | None,
    ) -> int:
        """Merge sorted late samples into the sealed chunks they overlap, rewriting those."""
        table = self.table
        assert table is not None
        _, ist, _ = table.view()
        lo = int(np.searchsorted(ist[:, I_MAXT], ts[0], side="left"))
        hi = int(np.searchsorted(ist[:, I_MINT], ts[-1], side="right"))
        old = [c.decode() for c in table.chunks[lo:hi]]
        if old:
            old_ts = np.concatenate([o[0] for o in old])
            old_vals = np.concatenate([o[1] for o in old])
            all_ts, all_vals = sort_dedupe(np.concatenate([old_ts, ts]), np.concatenate([old_vals, vals]))
            replaced = (old_ts, old_vals)
        else:
            all_ts, all_vals, replaced = ts, vals, None
        chunks, irows, frows = [], [], []
        for i in range(0, len(all_ts), chunk_size):
            cts, cvals = all_ts[i : i + chunk_size], all_vals[i : i + chunk_size]
            irow, frow = compute_stats(cts, cvals)
            chunks.append(SealedChunk.encode(cts, cvals, level))
            irows.append(irow)
            frows.append(frow)
        table.replace(lo, hi, chunks, irows, frows)
        if on_seal is not None:
            on_seal(SealEvent(self, all_ts, all_vals, replaced, late=True))
        return len(chunks)

    def drop_chunks_before(self, cutoff_ns: int) -> int:
        """Drop whole sealed chunks whose newest sample is older than ``cutoff_ns``; returns count."""
        table = self.table
        if table is None or not len(table):
            return 0
        ist = table.view()[1]
        n = int(np.searchsorted(ist[:, I_MAXT], cutoff_ns, side="left"))
        if n:
            self.raw_from = max(self.raw_from, int(ist[n - 1, I_MAXT]) + 1)
            table.replace(0, n, [], [], [])
        return n

    @property
    def is_empty(self) -> bool:
        """True when the series holds no raw sample and no rollup row."""
        return (
            not self.head_ts
            and (self.table is None or not len(self.table))
            and (self.tiers is None or not any(len(t) for t in self.tiers))
        )


_EMPTY_I = np.empty((0, 6), dtype=np.int64)
_EMPTY_F = np.empty((0, 7), dtype=np.float64)
