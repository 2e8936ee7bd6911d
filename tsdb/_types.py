"""Shared value types: sample values and the columnar ``Batch`` that every protocol produces.

A ``Batch`` is how samples travel from the wire to the engine: one entry per distinct series
(``series``: metric name and validated LabelSet) and three equally long columns with one row per
sample: the index of its series, its timestamp (int64 ns) and its value (float64). Protocol
parsers build Batches without touching the engine; the engine appends a Batch atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tsdb.errors import InvalidInputError, InvalidValueError
from tsdb.labels import LabelSet

__all__ = ["STALE_NAN", "STALE_NAN_BITS", "Batch", "SeriesRef", "check_value", "check_values", "is_stale"]

#: Prometheus's staleness marker: a NaN with this exact bit pattern ends a series.
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = np.array([STALE_NAN_BITS], dtype=np.uint64).view(np.float64)[0].item()


def is_stale(values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Boolean mask of the staleness markers in a float64 column (compares bits, not values)."""
    return np.ascontiguousarray(values, dtype=np.float64).view(np.uint64) == STALE_NAN_BITS


#: A series as protocols name it: (metric name, sorted validated labels).
SeriesRef = tuple[str, LabelSet]


def check_value(value: Any, *, field: str = "value") -> float:
    """Return ``value`` as a finite float; reject booleans, strings, None, NaN and infinities."""
    tp = type(value)
    if tp is float:
        if math.isfinite(value):
            return value
    elif tp is int:
        f = float(value)  # may raise OverflowError for huge ints
        return f
    elif isinstance(value, (bool, np.bool_)):
        raise InvalidValueError(f"{field} must be a number, got boolean {value!r}", field=field)
    elif isinstance(value, (int, float, np.integer, np.floating)):
        return check_value(float(value), field=field)
    else:
        shown = "null" if value is None else f"{tp.__name__} {value!r:.60}"
        raise InvalidValueError(f"{field} must be a number, got {shown}", field=field)
    raise InvalidValueError(f"{field} must be finite, got {value!r}", field=field)


def check_values(values: Any, *, field: str = "values") -> npt.NDArray[np.float64]:
    """Return a column of values as a contiguous float64 array; reject booleans and non-finite."""
    arr = np.asarray(values)
    if arr.dtype.kind == "b":
        raise InvalidValueError(f"{field} must be numbers, got booleans", field=field)
    if arr.dtype.kind == "O":
        return np.fromiter((check_value(v, field=field) for v in arr.ravel()), dtype=np.float64, count=arr.size)
    if arr.dtype.kind not in "iuf":
        raise InvalidValueError(f"{field} must be numbers, got dtype {arr.dtype}", field=field)
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if out.ndim != 1:
        raise InvalidValueError(f"{field} must be one-dimensional, got shape {arr.shape}", field=field)
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out))[0])
        raise InvalidValueError(f"{field}[{bad}] is {out[bad]!r}: values must be finite", field=field)
    return out


@dataclass(frozen=True, slots=True)
class Batch:
    """Columnar samples for many series; see the module docstring.

    Invariants (checked by ``validate``): the three columns have equal length, ``series_idx`` is
    in ``[0, len(series))``, timestamps are int64 ns, values are float64 and finite except for
    Prometheus staleness markers (the NaN with bits ``STALE_NAN_BITS``), which only the remote
    write parser produces. Rows need not be sorted: the engine sorts per series.
    """

    series: Sequence[SeriesRef]
    series_idx: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    def validate(self) -> None:
        """Raise InvalidInputError unless the invariants in the class docstring hold."""
        n = len(self.timestamps)
        if len(self.values) != n or len(self.series_idx) != n:
            raise InvalidInputError(
                f"batch columns differ in length: {len(self.series_idx)} series indexes, "
                f"{n} timestamps, {len(self.values)} values",
                field="values",
            )
        if n and (int(self.series_idx.min()) < 0 or int(self.series_idx.max()) >= len(self.series)):
            raise InvalidInputError("batch series index out of range", field="series")
        finite = np.isfinite(self.values)
        if not finite.all() and not is_stale(self.values[~finite]).all():
            bad = int(np.flatnonzero(~finite & ~is_stale(self.values))[0])
            raise InvalidValueError(f"value {self.values[bad]!r} at row {bad} is not finite", field="value")

    @classmethod
    def single(cls, metric: str, labels: LabelSet, timestamps: Any, values: Any) -> Batch:
        """A batch for one series from ready int64-ns timestamps and float64 values."""
        ts = np.ascontiguousarray(timestamps, dtype=np.int64)
        return cls(
            [(metric, labels)], np.zeros(len(ts), dtype=np.int64), ts, np.ascontiguousarray(values, dtype=np.float64)
        )

    @classmethod
    def concat(cls, batches: Sequence[Batch]) -> Batch:
        """One batch holding every row of ``batches`` (series entries are not deduplicated)."""
        series: list[SeriesRef] = []
        idx = []
        for b in batches:
            idx.append(b.series_idx + len(series))
            series.extend(b.series)
        if not batches:
            return cls([], np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
        return cls(
            series,
            np.concatenate(idx),
            np.concatenate([b.timestamps for b in batches]),
            np.concatenate([b.values for b in batches]),
        )
