"""Mergeable partial aggregates: per-bucket (count, sum, min, max, first, last, m2, inc).

Shards answer aggregation queries with ``Partials``; the query layer merges them across series
and shards and only then finalizes (avg = sum / count after the merge, DESIGN.md decision 3).

Buckets are identified by their start time in ns. For a downsample of width ``w`` the bucket
of ``t`` starts at ``floor(t / w) * w`` (aligned to the epoch); a whole-range aggregate uses a
single bucket keyed by the range start.

``m2`` is the sum of squared deviations from the bucket mean (Chan et al.'s parallel variance);
``inc`` is the counter increase credited to the bucket: every step between consecutive samples
of a series whose later sample lies in the bucket, counter resets handled. Rows with count 0
(only staleness markers) carry no first/last and vanish when finalized.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from tsdb.storage.chunk import (
    F_FIRST,
    F_INC,
    F_LAST,
    F_M2,
    F_MAX,
    F_MIN,
    F_SUM,
    I_COUNT,
    I_FIRST_T,
    I_LAST_T,
    counter_deltas,
)

__all__ = [
    "Partials",
    "bucket_starts",
    "combine_sequential",
    "from_samples",
    "from_stats",
    "merge_parallel",
    "rebucket",
]

_I64_MAX = np.iinfo(np.int64).max
_I64_MIN = np.iinfo(np.int64).min

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def bucket_starts(ts: I64, width: int | None, range_start: int) -> I64:
    """Bucket start (ns) of each timestamp: epoch-aligned floor for a width, else the range start."""
    if width is None:
        return np.full(len(ts), range_start, dtype=np.int64)
    return (ts // width) * width


@dataclass(slots=True)
class Partials:
    """Columns of per-bucket partial aggregates, rows ordered by ``bucket`` (ns)."""

    bucket: I64
    count: I64
    sum: F64
    min: F64
    max: F64
    first_t: I64
    first: F64
    last_t: I64
    last: F64
    m2: F64
    inc: F64

    def __len__(self) -> int:
        return len(self.bucket)

    @classmethod
    def empty(cls) -> Partials:
        """A table with no rows."""
        i, f = np.empty(0, np.int64), np.empty(0, np.float64)
        return cls(i, i, f, f, f, i, f, i, f, f, f)

    def take(self, rows: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Partials:
        """The selected rows (index array or mask)."""
        return Partials(*(getattr(self, f.name)[rows] for f in fields(self)))

    @classmethod
    def concat(cls, parts: Sequence[Partials]) -> Partials:
        """Rows of every table, in the given order."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


def _group_starts(keys: I64) -> npt.NDArray[np.intp]:
    if len(keys) == 0:
        return np.empty(0, dtype=np.intp)
    change = np.empty(len(keys), dtype=bool)
    change[0] = True
    np.not_equal(keys[1:], keys[:-1], out=change[1:])
    return np.flatnonzero(change)


def from_samples(ts: I64, vals: F64, width: int | None, range_start: int) -> Partials:
    """Partials of one series' sorted samples (staleness markers already removed).

    ``inc`` counts only steps inside a bucket; ``combine_sequential`` adds the steps across
    row boundaries.
    """
    n = len(ts)
    if n == 0:
        return Partials.empty()
    buckets = bucket_starts(ts, width, range_start)
    starts = _group_starts(buckets)
    ends = np.append(starts[1:], n)
    count = (ends - starts).astype(np.int64)
    total = np.add.reduceat(vals, starts)
    mean = total / count
    dev = vals - np.repeat(mean, count)
    m2 = np.add.reduceat(dev * dev, starts)
    if n > 1:
        steps = counter_deltas(vals)
        same = buckets[1:] == buckets[:-1]
        step_in = np.where(same, steps, 0.0)
        inc = np.add.reduceat(np.append(step_in, 0.0), starts)
    else:
        inc = np.zeros(1)
    last_idx = ends - 1
    return Partials(
        buckets[starts],
        count,
        total,
        np.minimum.reduceat(vals, starts),
        np.maximum.reduceat(vals, starts),
        ts[starts],
        vals[starts],
        ts[last_idx],
        vals[last_idx],
        m2,
        inc,
    )


def from_stats(istats: I64, fstats: F64, width: int | None, range_start: int) -> Partials:
    """Partials of whole chunks from their pre-aggregates, one row per chunk.

    Each chunk must lie inside one bucket (the caller checks); rows keep chunk (time) order.
    """
    count = istats[:, I_COUNT]
    first_t = np.where(count > 0, istats[:, I_FIRST_T], _I64_MAX)
    last_t = np.where(count > 0, istats[:, I_LAST_T], _I64_MIN)
    return Partials(
        bucket_starts(istats[:, I_FIRST_T], width, range_start),
        count,
        fstats[:, F_SUM],
        fstats[:, F_MIN],
        fstats[:, F_MAX],
        first_t,
        fstats[:, F_FIRST],
        last_t,
        fstats[:, F_LAST],
        fstats[:, F_M2],
        fstats[:, F_INC],
    )


def _reduce_sorted(
    p: Partials, starts: npt.NDArray[np.intp], first_rows: npt.NDArray[np.intp], last_rows: npt.NDArray[np.intp]
) -> Partials:
    """Merge consecutive rows of ``p`` that share a bucket; first/last come from the given rows."""
    count = np.add.reduceat(p.count, starts)
    total = np.add.reduceat(p.sum, starts)
    sizes = np.diff(np.append(starts, len(p)))
    with np.errstate(invalid="ignore", divide="ignore"):
        row_mean = np.where(p.count > 0, p.sum / np.maximum(p.count, 1), 0.0)
        group_mean = np.repeat(np.where(count > 0, total / np.maximum(count, 1), 0.0), sizes)
    spread = p.count * (row_mean - group_mean) ** 2
    return Partials(
        p.bucket[starts],
        count,
        total,
        np.minimum.reduceat(p.min, starts),
        np.maximum.reduceat(p.max, starts),
        p.first_t[first_rows],
        p.first[first_rows],
        p.last_t[last_rows],
        p.last[last_rows],
        np.add.reduceat(p.m2 + spread, starts),
        np.add.reduceat(p.inc, starts),
    )


def combine_sequential(parts: Sequence[Partials], *, cross_bucket_steps: bool = True) -> Partials:
    """Merge one series' partials whose rows are in time order (pieces of its timeline).

    Adds the counter step between the last sample of each row and the first of the next
    (credited to the later row's bucket), then merges rows of the same bucket. With
    ``cross_bucket_steps=False`` only steps inside one bucket are added: rollup tiers store
    rows that way and add the steps between buckets when queried.
    """
    p = Partials.concat(parts)
    if len(p) == 0:
        return p
    real = p.count > 0
    if not real.all():
        p = p.take(real)
        if len(p) == 0:
            return p
    if len(p) > 1:
        prev_last, nxt_first = p.last[:-1], p.first[1:]
        step = np.where(nxt_first >= prev_last, nxt_first - prev_last, nxt_first)
        if not cross_bucket_steps:
            step = np.where(p.bucket[1:] == p.bucket[:-1], step, 0.0)
        p.inc = p.inc.copy()
        p.inc[1:] += step
    starts = _group_starts(p.bucket)
    if len(starts) == len(p):
        return p
    ends = np.append(starts[1:], len(p)) - 1
    return _reduce_sorted(p, starts, starts, ends)


def rebucket(p: Partials, width: int | None, range_start: int) -> Partials:
    """The same rows keyed by coarser buckets (epoch-aligned ``width``, or one bucket at
    ``range_start``); rows stay in time order, ready for ``combine_sequential``."""
    return Partials(bucket_starts(p.bucket, width, range_start), *(getattr(p, f.name) for f in fields(p)[1:]))


def merge_parallel(parts: Sequence[Partials], *, exact_first_last: bool = True, width: int | None = None) -> Partials:
    """Merge partials of different series (or shards) bucket by bucket.

    Counts, sums and increases add; min/max combine; first/last take the earliest/latest
    sample, ties going to the earlier/later part in ``parts`` order (callers pass series in
    canonical key order, so results are deterministic). ``exact_first_last=False`` skips the
    two sorts that pick them (their columns are then unspecified): for aggregations that do
    not read first/last. With the bucket ``width`` known, dense bucket grids merge by
    counting (``np.bincount``) instead of sorting.
    """
    nonempty = [q if q.count.all() else q.take(q.count > 0) for q in parts]
    if len(nonempty) == 1:
        return nonempty[0]  # one series: its rows are already one per bucket, in order
    p = Partials.concat(nonempty)
    if len(p) == 0:
        return p
    if not exact_first_last and width:
        dense = _merge_dense(p, width)
        if dense is not None:
            return dense
    order = np.argsort(p.bucket, kind="stable")
    p = p.take(order)
    starts = _group_starts(p.bucket)
    ends = np.append(starts[1:], len(p)) - 1
    if not exact_first_last:
        return _reduce_sorted(p, starts, starts, ends)
    group = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(p))))
    rows = np.arange(len(p))
    first_rows = np.lexsort((rows, p.first_t, group))[starts]
    last_rows = np.lexsort((rows, p.last_t, group))[ends]
    return _reduce_sorted(p, starts, first_rows, last_rows)


def _merge_dense(p: Partials, width: int) -> Partials | None:
    """Bucket-by-bucket merge of unsorted rows without sorting, when buckets are dense.

    Bucket starts are multiples of ``width``, so each row's bucket has an index on a grid;
    sums become weighted bincounts and min/max ``ufunc.at``. Returns None when the grid would
    be much larger than the rows (sparse data), leaving the sort-based merge to the caller.
    first/last columns are not computed (callers that need them do not come here).
    """
    lo = int(p.bucket.min())
    idx = (p.bucket - lo) // width
    size = int(idx.max()) + 1
    if size > 4 * len(p) + 16:
        return None
    count = np.bincount(idx, weights=p.count, minlength=size)
    present = count > 0
    total = np.bincount(idx, weights=p.sum, minlength=size)
    mins = np.full(size, np.inf)
    maxs = np.full(size, -np.inf)
    np.minimum.at(mins, idx, p.min)
    np.maximum.at(maxs, idx, p.max)
    with np.errstate(invalid="ignore", divide="ignore"):
        group_mean = np.where(present, total / np.maximum(count, 1), 0.0)
        row_mean = p.sum / np.maximum(p.count, 1)
    spread = p.m2 + p.count * (row_mean - group_mean[idx]) ** 2
    m2 = np.bincount(idx, weights=spread, minlength=size)
    inc = np.bincount(idx, weights=p.inc, minlength=size)
    keep = np.flatnonzero(present)
    nan = np.full(len(keep), np.nan)
    zeros_t = np.zeros(len(keep), dtype=np.int64)
    return Partials(
        lo + keep.astype(np.int64) * width,
        count[keep].astype(np.int64),
        total[keep],
        mins[keep],
        maxs[keep],
        zeros_t,
        nan,
        zeros_t,
        nan,
        m2[keep],
        inc[keep],
    )
