"""Reading one series: exact raw samples or partial aggregates over an inclusive time range.

Works on a ``SeriesView`` (a snapshot taken under the shard lock) without holding any lock.
Whole chunks that fall inside the range (and inside one bucket) are answered from their
pre-aggregates; edge chunks and the head are decoded. A head that overlaps sealed chunks (late
writes not yet sealed) is merged with the chunks it overlaps, the head's values winning.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from tsdb._types import is_stale
from tsdb.storage.chunk import I_MAXT, I_MINT, SealedChunk
from tsdb.storage.decoded_cache import cache as decoded_cache
from tsdb.storage.partials import Partials, combine_sequential, from_samples, from_stats
from tsdb.storage.series import SeriesView, sort_dedupe

__all__ = ["read_samples", "series_partials"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_EMPTY = (np.empty(0, np.int64), np.empty(0, np.float64))


def _clip(ts: I64, vals: F64, start: int, end: int) -> tuple[I64, F64]:
    """Rows of sorted columns with start <= ts <= end."""
    if len(ts) == 0 or (ts[0] >= start and ts[-1] <= end):
        return ts, vals
    lo = int(np.searchsorted(ts, start, side="left"))
    hi = int(np.searchsorted(ts, end, side="right"))
    return ts[lo:hi], vals[lo:hi]


def _decode_one(chunk: SealedChunk) -> tuple[I64, F64]:
    hit = decoded_cache.get(chunk)
    if hit is not None:
        return hit
    return decoded_cache.put(chunk, *chunk.decode())


def _decode(view: SeriesView, lo: int, hi: int) -> tuple[I64, F64]:
    """Columns of chunks [lo, hi), through the decoded-chunk cache; may be read-only views."""
    if hi <= lo:
        return _EMPTY
    cols = [_decode_one(c) for c in view.chunks[lo:hi]]
    if len(cols) == 1:
        return cols[0]
    return np.concatenate([c[0] for c in cols]), np.concatenate([c[1] for c in cols])


def _pieces(
    view: SeriesView, start: int, end: int
) -> tuple[int, int, int, int, tuple[I64, F64] | None, tuple[I64, F64]]:
    """Split a series' data in [start, end] into time-ordered parts.

    Returns (lo, dlo, dhi, hi, merged, head): chunks [lo, dlo) and [dhi, hi) are clean;
    ``merged`` (or None) is the dirty chunks [dlo, dhi) merged with the late head samples;
    ``head`` holds the remaining head samples, newer than every chunk, clipped to the range.
    """
    ist = view.istats
    lo = int(np.searchsorted(ist[:, I_MAXT], start, side="left"))
    hi = int(np.searchsorted(ist[:, I_MINT], end, side="right"))
    hts, hvals = view.head_ts, view.head_vals
    if len(hts) and not view.in_order:
        hts, hvals = sort_dedupe(hts, hvals)
    newest = int(ist[-1, I_MAXT]) if len(ist) else None
    if newest is None or len(hts) == 0 or hts[0] > newest:
        return lo, hi, hi, hi, None, _clip(hts, hvals, start, end)
    # Late head samples (<= newest sealed): merge them with the chunks they overlap.
    cut = int(np.searchsorted(hts, newest, side="right"))
    late_ts, late_vals = hts[:cut], hvals[:cut]
    dlo = int(np.searchsorted(ist[:, I_MAXT], late_ts[0], side="left"))
    dhi = int(np.searchsorted(ist[:, I_MINT], late_ts[-1], side="right"))
    old_ts, old_vals = _decode(view, dlo, dhi)
    m_ts, m_vals = sort_dedupe(np.concatenate([old_ts, late_ts]), np.concatenate([old_vals, late_vals]))
    lo, hi = min(lo, dlo), max(hi, dhi)
    lo, hi = min(lo, hi), max(lo, hi)
    return lo, dlo, dhi, hi, _clip(m_ts, m_vals, start, end), _clip(hts[cut:], hvals[cut:], start, end)


def read_samples(view: SeriesView, start: int, end: int) -> tuple[I64, F64]:
    """Exact samples with start <= t <= end (ns), sorted, unique; staleness markers kept."""
    lo, dlo, dhi, hi, merged, head = _pieces(view, start, end)
    parts: list[tuple[I64, F64]] = []
    before = _decode(view, lo, min(dlo, hi))
    parts.append(_clip(*before, start, end))
    if merged is not None:
        parts.append(merged)
        after = _decode(view, max(dhi, lo), hi)
        parts.append(_clip(*after, start, end))
    parts.append(head)
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return _EMPTY
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _raw_partials(ts: I64, vals: F64, width: int | None, start: int) -> Partials:
    stale = is_stale(vals)
    if stale.any():
        ts, vals = ts[~stale], vals[~stale]
    return from_samples(ts, vals, width, start)


def _clean_run_partials(
    view: SeriesView, lo: int, hi: int, start: int, end: int, width: int | None, key: int
) -> list[Partials]:
    """Partials of clean chunks [lo, hi): pre-aggregates where a chunk is whole, decoding otherwise."""
    if hi <= lo:
        return []
    ist = view.istats[lo:hi]
    whole = (ist[:, I_MINT] >= start) & (ist[:, I_MAXT] <= end)
    if width is not None:
        whole &= (ist[:, I_MINT] // width) == (ist[:, I_MAXT] // width)
    out: list[Partials] = []
    # Runs of equal "whole" flags, in chunk order.
    change = np.flatnonzero(np.diff(whole.astype(np.int8))) + 1
    bounds = [0, *change.tolist(), len(whole)]
    for a, b in itertools.pairwise(bounds):
        if whole[a]:
            out.append(from_stats(ist[a:b], view.fstats[lo + a : lo + b], width, key))
        else:
            ts, vals = _decode(view, lo + a, lo + b)
            out.append(_raw_partials(*_clip(ts, vals, start, end), width, key))
    return out


def series_partials(
    view: SeriesView,
    start: int,
    end: int,
    width: int | None,
    range_start: int | None = None,
    *,
    cross_bucket_steps: bool = True,
) -> Partials:
    """Per-bucket partial aggregates of one series over [start, end] (ns), staleness markers
    excluded. Without a width every row is keyed by ``range_start`` (default ``start``).
    ``cross_bucket_steps=False`` leaves counter steps between buckets out, for callers that
    combine this piece with others and add them once (see ``combine_sequential``)."""
    key = start if range_start is None else range_start
    lo, dlo, dhi, hi, merged, head = _pieces(view, start, end)
    parts = _clean_run_partials(view, lo, min(dlo, hi), start, end, width, key)
    if merged is not None:
        parts.append(_raw_partials(*merged, width, key))
        parts.extend(_clean_run_partials(view, max(dhi, lo), hi, start, end, width, key))
    if len(head[0]):
        parts.append(_raw_partials(*head, width, key))
    return combine_sequential(parts, cross_bucket_steps=cross_bucket_steps)
