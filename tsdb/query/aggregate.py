"""Aggregation registry: names -> how to finalize merged partials (or raw values).

One table instead of an if/elif chain (STYLE.md). Every aggregation except ``quantile`` is
answered from mergeable ``Partials``; quantile needs the raw values of each bucket.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tsdb.errors import InvalidQueryError
from tsdb.storage.partials import Partials

__all__ = ["AGGREGATIONS", "AggSpec", "parse_agg", "quantile_by_bucket"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
#: finalize(partials, window_seconds per row) -> values
Finalizer = Callable[[Partials, F64], F64]


def _safe_div(a: F64, b: F64) -> F64:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


AGGREGATIONS: dict[str, Finalizer] = {
    "sum": lambda p, w: p.sum,
    "avg": lambda p, w: p.sum / p.count,
    "mean": lambda p, w: p.sum / p.count,
    "min": lambda p, w: p.min,
    "max": lambda p, w: p.max,
    "count": lambda p, w: p.count.astype(np.float64),
    "first": lambda p, w: p.first,
    "last": lambda p, w: p.last,
    "stddev": lambda p, w: np.sqrt(np.maximum(p.m2, 0.0) / p.count),
    "stdvar": lambda p, w: np.maximum(p.m2, 0.0) / p.count,
    "increase": lambda p, w: p.inc,
    "rate": lambda p, w: _safe_div(p.inc, w),
}

_QUANTILE_RE = re.compile(r"(?:quantile\(\s*([0-9.eE+-]+)\s*\)|p(\d{1,2}(?:\.\d+)?))")


@dataclass(frozen=True, slots=True)
class AggSpec:
    """A parsed aggregation: its name and, for quantile, q in [0, 1]."""

    name: str
    q: float | None = None

    @property
    def needs_raw(self) -> bool:
        """Whether the aggregation needs every raw value (not answerable from partials)."""
        return self.name == "quantile"

    @property
    def is_counter(self) -> bool:
        """rate and increase read a counter; they sum per-series increases across series."""
        return self.name in ("rate", "increase")

    def finalize(self, p: Partials, window_s: F64) -> F64:
        """Values per row of merged partials (rows with count 0 must be removed first)."""
        return AGGREGATIONS[self.name](p, window_s)


def parse_agg(agg: str, q: float | None = None) -> AggSpec:
    """Parse an aggregation name: one of AGGREGATIONS, ``quantile`` (with ``q``),
    ``quantile(0.9)`` or ``p99``. Raises InvalidQueryError naming the accepted ones."""
    if not isinstance(agg, str):
        raise InvalidQueryError(f"aggregation must be a string, got {agg!r:.40}", field="agg")
    name = agg.strip().lower()
    if name in AGGREGATIONS:
        return AggSpec("avg" if name == "mean" else name)
    m = _QUANTILE_RE.fullmatch(name)
    if m or name == "quantile":
        if m and m.group(1) is not None:
            q = float(m.group(1))
        elif m and m.group(2) is not None:
            q = float(m.group(2)) / 100
        if q is None:
            raise InvalidQueryError("quantile needs q: use quantile(0.9), p90, or pass q=0.9", field="agg")
        if not 0.0 <= q <= 1.0:
            raise InvalidQueryError(f"quantile q must lie in [0, 1], got {q}", field="agg")
        return AggSpec("quantile", q)
    known = ", ".join(sorted(AGGREGATIONS)) + ", quantile(q), pNN"
    raise InvalidQueryError(f"unknown aggregation {agg!r:.40}: expected one of {known}", field="agg")


def quantile_by_bucket(buckets: I64, values: F64, q: float) -> tuple[I64, F64]:
    """Per-bucket q-quantile with linear interpolation between closest ranks (numpy's and
    Prometheus's ``quantile_over_time`` definition). Returns (bucket starts, values), sorted."""
    if len(values) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    order = np.lexsort((values, buckets))
    b, v = buckets[order], values[order]
    change = np.empty(len(b), dtype=bool)
    change[0] = True
    np.not_equal(b[1:], b[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    counts = np.diff(np.append(starts, len(b)))
    rank = q * (counts - 1)
    lo = np.floor(rank).astype(np.int64)
    hi = np.ceil(rank).astype(np.int64)
    frac = rank - lo
    vlo, vhi = v[starts + lo], v[starts + hi]
    return b[starts], vlo + (vhi - vlo) * frac
