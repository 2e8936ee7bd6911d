"""Vector and range selectors: fetching raw series and finding the samples each step sees.

Semantics follow Prometheus 2.x (the ``prometheus`` Debian package the parity suite runs):

* An instant selector at evaluation time ``t`` reads at ``ref = (t or @) - offset`` the newest
  sample with timestamp in the closed window ``[ref - lookback, ref]``; if that sample is a
  staleness marker the series is absent at ``t`` (a marker ends the series).
* A range selector ``[r]`` holds the samples in the closed window ``[ref - r, ref]``, with
  staleness markers dropped.

Everything is computed for all steps at once, series by cache-sized chunks: a chunk's series
are concatenated into flat arrays and every window bound comes from ``np.searchsorted`` (one
call per long series, or one call over a composite (series, time) key for many short ones).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import promql_parser

from tsdb._types import is_stale
from tsdb.errors import UnsupportedError
from tsdb.labels import Matcher, MatchOp
from tsdb.storage.interface import Querier

from .values import METRIC_NAME, Block, Labels

__all__ = [
    "CHUNK_SAMPLES",
    "FetchedSeries",
    "RangeSource",
    "RawSeries",
    "SeriesSet",
    "Windows",
    "at_offset_times",
    "fetch",
    "instant_block",
    "matchers_of",
    "timedelta_ns",
    "windows_of",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Samples per chunk of series processed together: about 2 MB per column, cache-sized.
CHUNK_SAMPLES = 1 << 18
#: Average samples per series from which a per-series search loop is faster than one
#: composite-key search (measured: the loop costs ~10 us per series and call).
_LOOP_MIN_AVG_SAMPLES = 256
_OPS = {"Equal": MatchOp.EQ, "NotEqual": MatchOp.NE, "Re": MatchOp.RE, "NotRe": MatchOp.NRE}


def timedelta_ns(td: timedelta | None) -> int:
    """Exact nanoseconds of a ``timedelta`` (0 for None); negative offsets stay negative."""
    if td is None:
        return 0
    return (td.days * 86_400 + td.seconds) * 1_000_000_000 + td.microseconds * 1_000


def matchers_of(vs: promql_parser.VectorSelector) -> list[Matcher]:
    """The storage matchers of a parsed vector selector (the metric name becomes ``__name__``)."""
    if vs.matchers.or_matchers:
        raise UnsupportedError(f"'or' inside a vector selector is not supported: {vs}", field="query")
    out = [Matcher.eq(METRIC_NAME, vs.name)] if vs.name else []
    for m in vs.matchers.matchers:
        out.append(Matcher(m.name, _OPS[str(m.op).rsplit(".", 1)[-1]], m.value))
    return out


def at_offset_times(node: Any, steps: npt.NDArray[np.int64], start_ns: int, end_ns: int) -> npt.NDArray[np.int64]:
    """Reference times (ns) a selector or subquery reads at each step: ``(t or @) - offset``.

    ``@ start()`` / ``@ end()`` are the query's start and end, as in Prometheus.
    """
    at = node.at
    if at is None:
        base = steps
    else:
        kind = str(at.type).rsplit(".", 1)[-1]
        if kind == "Start":
            t = start_ns
        elif kind == "End":
            t = end_ns
        else:
            t = timedelta_ns(at.at - _EPOCH)
        base = np.full(len(steps), t, dtype=np.int64)
    return base - timedelta_ns(node.offset)


@dataclass(slots=True)
class RawSeries:
    """Raw samples of many series, concatenated.

    Series ``i`` has labels ``labels[i]`` (metric name included) and samples
    ``ts[offsets[i]:offsets[i+1]]`` / ``values[...]``, timestamps strictly increasing.
    """

    labels: list[Labels]
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    offsets: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.labels)

    def without_stale(self) -> RawSeries:
        """The same series with staleness markers removed (what range selectors see)."""
        stale = is_stale(self.values)
        if not stale.any():
            return self
        keep = ~stale
        seg = np.repeat(np.arange(len(self.labels), dtype=np.int64), np.diff(self.offsets))
        counts = np.bincount(seg[keep], minlength=len(self.labels))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return RawSeries(self.labels, self.ts[keep], self.values[keep], offsets)

    def chunks(self, budget: int = CHUNK_SAMPLES) -> Iterator[tuple[int, RawSeries]]:
        """Consecutive groups of whole series holding about ``budget`` samples each, as
        ``(first_row, RawSeries)`` views (no copy)."""
        yield from _chunk_bounds(self.offsets, budget, lambda a, b: self._slice(a, b))

    def _slice(self, a: int, b: int) -> RawSeries:
        lo, hi = int(self.offsets[a]), int(self.offsets[b])
        return RawSeries(self.labels[a:b], self.ts[lo:hi], self.values[lo:hi], self.offsets[a : b + 1] - lo)


def _chunk_bounds(
    offsets: npt.NDArray[np.int64], budget: int, make: Callable[[int, int], RawSeries]
) -> Iterator[tuple[int, RawSeries]]:
    n = len(offsets) - 1
    a = 0
    while a < n:
        b = int(np.searchsorted(offsets, offsets[a] + budget, side="right")) - 1
        b = min(max(b, a + 1), n)
        yield a, make(a, b)
        a = b


@dataclass(slots=True)
class FetchedSeries:
    """Series as storage returned them (one array pair each), sorted by full label set.

    They are concatenated only chunk by chunk (``chunks``): a chunk's working set stays in the
    CPU cache, and no copy of the whole result is ever made.
    """

    labels: list[Labels]
    ts: list[npt.NDArray[np.int64]]
    values: list[npt.NDArray[np.float64]]
    offsets: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.labels)

    def chunks(self, budget: int = CHUNK_SAMPLES) -> Iterator[tuple[int, RawSeries]]:
        """Consecutive groups of whole series holding about ``budget`` samples, concatenated."""
        yield from _chunk_bounds(self.offsets, budget, self._concat)

    def _concat(self, a: int, b: int) -> RawSeries:
        if b - a == 1:
            return RawSeries(self.labels[a:b], self.ts[a], self.values[a], self.offsets[a : b + 1] - self.offsets[a])
        ts = np.concatenate(self.ts[a:b]) if b > a else np.empty(0, np.int64)
        vals = np.concatenate(self.values[a:b]) if b > a else np.empty(0, np.float64)
        return RawSeries(self.labels[a:b], ts, vals, self.offsets[a : b + 1] - self.offsets[a])


SeriesSet = RawSeries | FetchedSeries


def fetch(querier: Querier, matchers: list[Matcher], min_ns: int, max_ns: int) -> FetchedSeries:
    """Every matching series with its samples in ``[min_ns, max_ns]``, sorted by full label set."""
    rows = []
    for sd in querier.select_raw(matchers, int(min_ns), int(max_ns)):
        labels = tuple(sorted(((METRIC_NAME, sd.metric), *sd.labels)))
        rows.append((labels, sd))
    rows.sort(key=lambda r: r[0])
    lengths = np.array([len(sd.timestamps) for _, sd in rows], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return FetchedSeries(
        [lab for lab, _ in rows],
        [np.asarray(sd.timestamps, dtype=np.int64) for _, sd in rows],
        [np.asarray(sd.values, dtype=np.float64) for _, sd in rows],
        offsets,
    )


def _segmented_search(raw: RawSeries, queries: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For every series i and query time q_j: the flat index of series i's first sample at or
    after q_j (``np.searchsorted(..., side="left")``), as an ``(N, S)`` int64 array.

    Search for ``q + 1`` to get the "right" side: timestamps are integers.
    """
    n = len(raw.labels)
    if n == 0:
        return np.empty((0, len(queries)), np.int64)
    if len(raw.ts) == 0:
        return np.zeros((n, len(queries)), np.int64)
    if len(raw.ts) < _LOOP_MIN_AVG_SAMPLES * n:
        # Many short series: one search over a (series, time) composite key, sorted because
        # series are laid out in index order with increasing times.
        lo = int(min(int(raw.ts.min()), int(queries.min())))
        width = int(max(int(raw.ts.max()), int(queries.max()))) - lo + 2
        if width * n < 2**62:
            seg = np.repeat(np.arange(n, dtype=np.int64), np.diff(raw.offsets))
            keys = seg * width + (raw.ts - lo)
            q = np.arange(n, dtype=np.int64)[:, None] * width + (queries - lo)[None, :]
            return np.searchsorted(keys, q).astype(np.int64)
    # Long series: one small search per series beats building a key over every sample.
    out = np.empty((n, len(queries)), np.int64)
    offsets = raw.offsets.tolist()
    ts = raw.ts
    for i in range(n):
        a = offsets[i]
        out[i] = ts[a : offsets[i + 1]].searchsorted(queries)
        out[i] += a
    return out


def instant_block(series: SeriesSet, refs: npt.NDArray[np.int64], lookback_ns: int) -> Block:
    """The instant vector a selector yields at each reference time (see the module docstring).

    The returned Block keeps the labels (metric name included) and carries ``sample_ts``, the
    timestamps of the samples read, for ``timestamp()``.
    """
    steps = len(refs)
    n = len(series.labels)
    values = np.zeros((n, steps))
    present = np.zeros((n, steps), np.bool_)
    sample_ts = np.zeros((n, steps), np.int64)
    for row, raw in series.chunks():
        if len(raw.ts) == 0:
            continue
        rows = slice(row, row + len(raw))
        pos = _segmented_search(raw, refs + 1) - 1  # newest sample at or before ref
        has = pos >= raw.offsets[:-1][:, None]
        pos = np.where(has, pos, 0)
        t = raw.ts[pos]
        v = raw.values[pos]
        values[rows] = v
        sample_ts[rows] = t
        present[rows] = has & (t >= refs[None, :] - lookback_ns) & ~is_stale(v.ravel()).reshape(v.shape)
    return Block(list(series.labels), values, present, sample_ts=sample_ts)


@dataclass(slots=True)
class Windows:
    """The samples a range selector (or subquery) holds at each step, for range functions.

    Row ``i`` at step ``j`` holds the flat samples ``lo[i, j] <= k < hi[i, j]`` of ``raw``;
    ``ends[j]`` is the window's right edge (ns) and ``range_ns`` its length, so the window
    is ``[ends[j] - range_ns, ends[j]]``.
    """

    raw: RawSeries
    lo: npt.NDArray[np.int64]
    hi: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    range_ns: int
    #: Number of samples in each window, ``hi - lo``.
    counts: npt.NDArray[np.int64]


def windows_of(raw: RawSeries, ends: npt.NDArray[np.int64], range_ns: int) -> Windows:
    """Windows ``[end - range_ns, end]`` (closed, Prometheus 2.x) over ``raw`` minus its stale markers."""
    clean = raw.without_stale()
    # Window starts usually coincide with earlier window ends (a range that is a multiple of
    # the step), so search each distinct time once: about half the searches of a naive
    # start/end pair. A window's end bound is the first sample after ``end``: the first at or
    # after ``end``, plus one when a sample sits exactly on ``end``.
    queries, inverse = np.unique(np.concatenate([ends - range_ns, ends]), return_inverse=True)
    found = _segmented_search(clean, queries)
    steps = len(ends)
    lo = found[:, inverse[:steps]]
    at_end = found[:, inverse[steps:]]
    if len(clean.ts):
        series_end = clean.offsets[1:, None]
        on_end = (at_end < series_end) & (clean.ts.take(at_end, mode="clip") == ends[None, :])
        hi = at_end + on_end
    else:
        hi = at_end
    return Windows(clean, lo, hi, ends, range_ns, hi - lo)


@dataclass(slots=True)
class RangeSource:
    """A range vector ready for a range function: its series and window geometry.

    ``windows()`` yields ``(first_row, Windows)`` chunk by chunk, so a function's temporaries
    are bounded by the chunk size whatever the number of series.
    """

    series: SeriesSet
    ends: npt.NDArray[np.int64]
    range_ns: int

    @property
    def labels(self) -> list[Labels]:
        """Labels of every series (metric name included), in row order."""
        return self.series.labels

    def windows(self) -> Iterator[tuple[int, Windows]]:
        """Each chunk of series with its windows."""
        for row, raw in self.series.chunks():
            yield row, windows_of(raw, self.ends, self.range_ns)
