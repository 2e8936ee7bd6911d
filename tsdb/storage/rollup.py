"""Rollup tiers: per-series, epoch-aligned buckets that outlive raw retention.

A tier (``TierSpec``) has a resolution and a retention, e.g. ``1m:30d``. Each series keeps
one ``TierTable`` per tier: rows of ``Partials`` (count, sum, min, max, first, last, m2 and
the counter increase *inside* the bucket), one row per bucket that has samples, in time
order. Steps of a counter between buckets are added back at query time from each row's
first/last values (``combine_sequential``), so sum(increase) over tier rows equals the raw
answer exactly.

Tiers are fed by seals, whole columns at a time (never per sample): an in-order seal appends
rows (merging into the last row when it shares its bucket); a late seal (samples older than
sealed data, merged into rewritten chunks) recomputes the buckets it touched from the raw
chunks, exactly, wherever raw data is still complete. In a bucket whose raw data has partly
expired, late samples are merged in instead: count, sum, avg, min, max, first and last stay
exact for new timestamps; an overwrite of an existing timestamp corrects sum/avg but cannot
take back an old min/max, and a counter step into the middle of such a bucket is counted
from the late sample alone. Only buckets straddling the raw retention edge can be affected.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from tsdb._types import is_stale
from tsdb.errors import InvalidInputError
from tsdb.storage.chunk import I_MAXT
from tsdb.storage.partials import Partials, combine_sequential, from_samples, merge_parallel, rebucket
from tsdb.storage.read import read_samples, series_partials
from tsdb.storage.series import SealEvent, Series, SeriesView, sort_dedupe
from tsdb.timeutil import parse_duration_ns

__all__ = [
    "EXACT_AGGREGATIONS",
    "RollupListener",
    "TierSpec",
    "TierTable",
    "parse_rollups",
    "series_tier_partials",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: Aggregations a tier answers exactly (quantile needs raw values; stddev is served raw too,
#: to keep its float error identical to the raw path).
EXACT_AGGREGATIONS = frozenset({"sum", "avg", "min", "max", "count", "first", "last", "increase", "rate"})

_PART = re.compile(r"\s*(\d+)([smhdwy])\s*:\s*(\d+)([smhdwy])\s*")


@dataclass(frozen=True, slots=True)
class TierSpec:
    """One tier: bucket ``resolution`` and ``retention`` in ns; ``name`` as configured (``1m``)."""

    name: str
    resolution: int
    retention: int


def parse_rollups(text: str) -> tuple[TierSpec, ...]:
    """Parse ``"1m:30d,1h:5y"`` (resolution:retention, units s m h d w y) into tiers sorted
    by resolution; "" disables rollups. Raises InvalidInputError naming the bad part."""
    if not text or not text.strip():
        return ()
    tiers = []
    for part in text.split(","):
        m = _PART.fullmatch(part)
        if not m or int(m.group(1)) == 0:
            raise InvalidInputError(
                f"invalid rollup tier {part.strip()!r}: expected resolution:retention like 1m:30d (units s m h d w y)",
                field="rollups",
            )
        res = parse_duration_ns(m.group(1) + m.group(2), field="rollups")
        keep = parse_duration_ns(m.group(3) + m.group(4), field="rollups")
        if res <= 0 or keep < res:
            raise InvalidInputError(
                f"rollup tier {part.strip()!r}: resolution must be > 0 and <= retention", field="rollups"
            )
        tiers.append(TierSpec(f"{m.group(1)}{m.group(2)}", res, keep))
    tiers.sort(key=lambda t: t.resolution)
    if len({t.resolution for t in tiers}) != len(tiers):
        raise InvalidInputError(f"rollup tiers {text!r} repeat a resolution", field="rollups")
    return tuple(tiers)


class TierTable:
    """One series' rows of one tier, growable columns; the shard's lock guards writers.

    ``view()`` returns copies, so readers never see a row being merged into.
    """

    __slots__ = ("_cols", "_n")

    _FIELDS = tuple(f.name for f in fields(Partials))

    def __init__(self) -> None:
        self._cols = Partials.empty()
        self._n = 0

    @classmethod
    def from_rows(cls, rows: Partials) -> TierTable:
        """A table holding ``rows`` (bucket order; e.g. read back from a snapshot), not copied."""
        table = cls()
        table._set(rows)
        return table

    def __len__(self) -> int:
        return self._n

    def view(self) -> Partials:
        """A copy of the rows."""
        n = self._n
        return Partials(*(getattr(self._cols, f)[:n].copy() for f in self._FIELDS))

    def _set(self, rows: Partials) -> None:
        self._cols, self._n = rows, len(rows)

    def append(self, rows: Partials) -> None:
        """Add rows newer than every stored row (the first may share the last row's bucket)."""
        if not len(rows):
            return
        n = self._n
        if n and self._cols.bucket[n - 1] == rows.bucket[0]:
            last = self._cols.take(np.arange(n - 1, n))
            merged = combine_sequential([last, rows.take(np.arange(1))], cross_bucket_steps=False)
            rows = Partials.concat([merged, rows.take(np.arange(1, len(rows)))])
            n -= 1
        need = n + len(rows)
        cols = self._cols
        if need > len(cols.bucket):
            cap = max(8, 2 * need)
            grown = []
            for f in self._FIELDS:
                old = getattr(cols, f)
                new = np.empty(cap, dtype=old.dtype)
                new[:n] = old[:n]
                grown.append(new)
            cols = Partials(*grown)
        for f in self._FIELDS:
            getattr(cols, f)[n:need] = getattr(rows, f)
        self._cols, self._n = cols, need

    def replace(self, lo_bucket: int, hi_bucket: int, rows: Partials) -> None:
        """Replace the rows with lo_bucket <= bucket <= hi_bucket by ``rows`` (same span)."""
        cur = self.view()
        keep_before = cur.bucket < lo_bucket
        keep_after = cur.bucket > hi_bucket
        self._set(Partials.concat([cur.take(keep_before), rows, cur.take(keep_after)]))

    def drop_before(self, bucket_cutoff: int) -> int:
        """Drop rows whose bucket starts before ``bucket_cutoff``; returns how many."""
        n = int(np.searchsorted(self._cols.bucket[: self._n], bucket_cutoff, side="left"))
        if n:
            self._set(self.view().take(np.arange(n, self._n)))
        return n

    @property
    def nbytes(self) -> int:
        """Bytes of the stored rows (11 eight-byte columns)."""
        return self._n * 8 * len(self._FIELDS)


def _real(ts: I64, vals: F64) -> tuple[I64, F64]:
    stale = is_stale(vals)
    return (ts[~stale], vals[~stale]) if stale.any() else (ts, vals)


class RollupListener:
    """Keeps every series' tier tables in step with its sealed chunks (a shard's ``on_seal``)."""

    def __init__(self, tiers: Sequence[TierSpec]) -> None:
        self.tiers = tuple(tiers)

    def tables(self, series: Series) -> list[TierTable]:
        """The series' tier tables, created on first use."""
        if series.tiers is None:
            series.tiers = [TierTable() for _ in self.tiers]
        return series.tiers

    def __call__(self, event: SealEvent) -> None:
        ts, vals = _real(event.ts, event.vals)
        tables = self.tables(event.series)
        for spec, table in zip(self.tiers, tables, strict=True):
            if not event.late:
                if len(ts):
                    table.append(from_samples(ts, vals, spec.resolution, 0))
                continue
            lo = int(event.ts[0] // spec.resolution) * spec.resolution
            hi = int(event.ts[-1] // spec.resolution) * spec.resolution
            self._refresh(event.series, spec, table, lo, hi, event)

    def rebuild(self, series: Series, start: int, end: int) -> None:
        """Recompute the buckets overlapping [start, end] from raw data (after a delete)."""
        if series.tiers is None:
            return
        for spec, table in zip(self.tiers, series.tiers, strict=True):
            lo = (start // spec.resolution) * spec.resolution
            hi = (end // spec.resolution) * spec.resolution
            self._refresh(series, spec, table, lo, hi, None)

    def _refresh(
        self, series: Series, spec: TierSpec, table: TierTable, lo: int, hi: int, event: SealEvent | None
    ) -> None:
        res = spec.resolution
        # Buckets entirely inside complete raw data are recomputed exactly from the chunks.
        exact_lo = max(lo, -(-series.raw_from // res) * res)
        if exact_lo <= hi:
            view = series.view()
            ts, vals = _real(*read_samples(_sealed_only(view), exact_lo, hi + res - 1))
            table.replace(exact_lo, hi, from_samples(ts, vals, res, 0))
        if exact_lo > lo and event is not None:
            self._merge_partial_buckets(table, res, lo, exact_lo - 1, event)

    @staticmethod
    def _merge_partial_buckets(table: TierTable, res: int, lo: int, hi: int, event: SealEvent) -> None:
        """Late samples into buckets whose raw data partly expired (see module docstring)."""
        sel = (event.ts >= lo) & (event.ts <= hi + res - 1)
        ts, vals = _real(event.ts[sel], event.vals[sel])
        if not len(ts):
            return
        old_ts, old_vals = event.replaced if event.replaced is not None else (np.empty(0, np.int64), np.empty(0))
        known = np.isin(ts, old_ts)
        cur = table.view()
        in_span = (cur.bucket >= lo) & (cur.bucket <= hi)
        new_rows = from_samples(ts[~known], vals[~known], res, 0)
        merged = merge_parallel([cur.take(in_span), new_rows])
        if known.any():
            old_map = dict(zip(old_ts.tolist(), old_vals.tolist(), strict=True))
            buckets = (ts[known] // res) * res
            delta = vals[known] - np.array([old_map[t] for t in ts[known].tolist()])
            pos = np.searchsorted(merged.bucket, buckets)
            np.add.at(merged.sum, pos, delta)
            np.minimum.at(merged.min, pos, vals[known])
            np.maximum.at(merged.max, pos, vals[known])
        table.replace(lo, hi, merged)

    def expire(self, series: Series, newest: int) -> int:
        """Apply each tier's retention relative to the newest sample; returns rows dropped."""
        if series.tiers is None:
            return 0
        dropped = 0
        for spec, table in zip(self.tiers, series.tiers, strict=True):
            cutoff = newest - spec.retention
            dropped += table.drop_before((cutoff // spec.resolution) * spec.resolution)
        return dropped


def _sealed_only(view: SeriesView) -> SeriesView:
    return SeriesView(view.series, view.chunks, view.istats, view.fstats, np.empty(0, np.int64), np.empty(0), True)


def series_tier_partials(
    view: SeriesView, rows: Partials, res: int, start: int, end: int, width: int | None
) -> Partials:
    """Per-bucket partials of one series over [start, end] using a tier for whole buckets.

    Whole tier buckets inside the range come from ``rows``; the edges, and head samples not
    yet sealed, come from raw data. Where raw data no longer covers an edge (older than raw
    retention), the edge's whole tier bucket is used instead.
    """
    raw_from = view.series.raw_from
    a = -(-start // res) * res
    b = ((end + 1) // res) * res
    if start < raw_from:
        a = (start // res) * res
    if b <= end and b < raw_from:
        b += res
    if a >= b:
        return series_partials(view, start, end, width)
    hts, hvals = view.head_ts, view.head_vals
    # Newest sample ever sealed: the chunks' end, or the tier's when retention dropped them.
    newest_sealed = int(view.istats[-1, I_MAXT]) if len(view.istats) else -(2**63)
    if len(rows):
        newest_sealed = max(newest_sealed, int(rows.last_t[-1]))
    # Raw data answers from ``tail`` on: the edge after the whole buckets, and also every
    # bucket from the first one a late (not yet sealed, so not yet rolled up) head sample
    # falls in, wherever raw data is complete there.
    tail = b
    late_mask = (hts <= newest_sealed) if not view.in_order else np.zeros(len(hts), dtype=bool)
    if late_mask.any():
        first_late = max(int(hts[late_mask].min()) // res * res, -(-raw_from // res) * res)
        tail = min(b, max(a, first_late))
    pieces = []
    if start < a and start >= raw_from:
        pieces.append(series_partials(view, start, a - 1, width, start, cross_bucket_steps=False))
    i0, i1 = np.searchsorted(rows.bucket, (a, tail), side="left")
    mid = rows.take(slice(i0, i1))
    # Late samples in buckets whose raw data partly expired cannot be recomputed from raw:
    # merge them into the tier rows (exact for new timestamps; see the module docstring).
    old_late = late_mask & (hts >= a) & (hts < tail)
    if old_late.any():
        late_ts, late_vals = _real(*sort_dedupe(hts[old_late], hvals[old_late]))
        mid = merge_parallel([mid, from_samples(late_ts, late_vals, res, 0)])
    pieces.append(rebucket(mid, width, start))
    if len(hts):
        keep = (hts > newest_sealed) & (hts >= a) & (hts < tail)
        if keep.any():
            hts_k, hv_k = _real(*sort_dedupe(hts[keep], hvals[keep]))
            pieces.append(from_samples(hts_k, hv_k, width, start))
    if tail <= end:
        pieces.append(series_partials(view, tail, end, width, start, cross_bucket_steps=False))
    return combine_sequential(pieces)
