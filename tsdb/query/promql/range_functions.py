"""Functions over range vectors (``rate(x[5m])``, ``avg_over_time(x[1h])``, ...), all steps at once.

Each function receives ``Windows`` (every series' samples, flattened, and the ``[lo, hi)`` sample
indexes each step's window holds) and returns ``(values, present)`` arrays of shape
``(series, steps)``. Nothing loops over samples in Python:

* first/last/second-to-last samples are fancy-indexed at ``lo``, ``hi - 1``, ``hi - 2``;
* pairwise facts become prefix sums: value changes over every sample, counter resets over
  the (rare) reset points only, so a window's count or correction is a difference of two
  prefix values found by ``searchsorted``;
* true reductions (sum, min, quantile, regression) gather the windows' samples into one flat
  array, in row chunks that bound memory, and use ``ufunc.reduceat`` per window.

Semantics are Prometheus 2.x's ``promql/functions.go`` (the version the parity suite runs):
``extrapolatedRate`` with its 1.1 x average-interval threshold and the counter zero-point cap,
``irate``'s reset rule, ``changes`` treating NaN == NaN, ``quantile`` interpolation, and
``max``/``min`` ignoring NaN unless every sample is NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .selectors import Windows

__all__ = ["RANGE_FUNCTIONS", "RangeFunction", "quantile_sorted"]

F64 = npt.NDArray[np.float64]
Result = tuple[F64, npt.NDArray[np.bool_]]

#: Upper bound on gathered window samples held at once (about 64 MB of float64 + indexes).
_GATHER_BUDGET = 4_000_000
#: Cells per row chunk for element-wise window math: temporaries of this size stay in cache.
_CACHE_CELLS = 32_768


@dataclass(frozen=True, slots=True)
class RangeFunction:
    """A range-vector function: ``impl(windows, scalar_args, eval_steps_ns)``.

    ``matrix_arg`` is the position of the range-vector argument; the other arguments are
    scalars, one value per step. ``keeps_name`` is True only for ``last_over_time``, which
    acts like an offset (Prometheus drops the metric name for every other one).
    """

    impl: Callable[[Windows, list[F64], npt.NDArray[np.int64]], Result]
    matrix_arg: int = 0
    keeps_name: bool = False


# --- primitives --------------------------------------------------------------------------------


def _pair_prefix(w: Windows, flags: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """Prefix sums of a per-sample pair quantity (sample k vs k-1, zero at series starts)."""
    flags = flags.copy()
    starts = w.raw.offsets[:-1]
    flags[starts[starts < len(flags)]] = 0
    return np.cumsum(flags)


def _pairs_in_windows(w: Windows, prefix: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """Sum of a pair quantity over the pairs inside each window: pairs (k-1, k), lo < k < hi."""
    if len(prefix) == 0:
        return np.zeros(w.lo.shape, prefix.dtype)
    last = np.maximum(w.hi - 1, 0)
    first = np.minimum(w.lo, len(prefix) - 1)
    out = prefix[last] - prefix[first]
    return np.where(w.counts >= 2, out, 0)


def _previous(values: F64) -> F64:
    """Values shifted right by one (the previous sample); the first entry is NaN."""
    out = np.empty_like(values)
    if len(values):
        out[0] = np.nan
        out[1:] = values[:-1]
    return out


@dataclass(slots=True)
class _Gathered:
    """Samples of a set of windows laid end to end: window ``m`` is ``flat[starts[m]:starts[m]+counts[m]]``."""

    rows: npt.NDArray[np.intp]  # (row, step) of each window, as flat indexes into (N, S)
    t: npt.NDArray[np.int64]
    v: F64
    starts: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]

    def repeat(self, per_window: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        """A per-window quantity broadcast to every sample of its window."""
        return np.repeat(per_window, self.counts)

    def sum(self, x: F64) -> F64:
        """Per-window sums of a per-sample array."""
        return np.add.reduceat(x, self.starts)


def _gather(w: Windows, min_count: int = 1) -> Iterator[_Gathered]:
    """The samples of every window holding at least ``min_count`` samples, in memory-bounded chunks."""
    counts = w.counts.ravel()
    cells = np.flatnonzero(counts >= max(min_count, 1))
    if len(cells) == 0:
        return
    lo = w.lo.ravel()[cells]
    cnt = counts[cells]
    bounds = np.cumsum(cnt)
    begin = 0
    while begin < len(cells):
        base = bounds[begin - 1] if begin else 0
        end = int(np.searchsorted(bounds, base + _GATHER_BUDGET, side="right"))
        end = max(end, begin + 1)
        c = cnt[begin:end]
        starts = np.cumsum(c) - c
        idx = np.repeat(lo[begin:end] - starts, c) + np.arange(int(c.sum()), dtype=np.int64)
        yield _Gathered(cells[begin:end], w.raw.ts[idx], w.raw.values[idx], starts, c)
        begin = end


def _reduce(w: Windows, fn: Callable[[_Gathered], F64], min_count: int = 1) -> Result:
    """Apply a per-window reduction to every window with at least ``min_count`` samples."""
    shape = w.lo.shape
    out = np.zeros(shape[0] * shape[1], np.float64)
    present = np.zeros(shape[0] * shape[1], np.bool_)
    for g in _gather(w, min_count):
        out[g.rows] = fn(g)
        present[g.rows] = True
    return out.reshape(shape), present.reshape(shape)


def _at(w: Windows, idx: npt.NDArray[np.int64], arr: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """``arr[idx]`` with out-of-range indexes clamped (their cells are masked by the caller)."""
    if len(arr) == 0:
        return np.zeros(idx.shape, arr.dtype)
    return arr.take(idx, mode="clip")


# --- rate family ---------------------------------------------------------------------------------


def _reset_points(w: Windows) -> npt.NDArray[np.int64]:
    """Flat indexes k where sample k is lower than sample k-1 of the same series (a reset)."""
    v = w.raw.values
    if len(v) < 2:
        return np.empty(0, np.int64)
    k = np.flatnonzero(v[1:] < v[:-1]) + 1
    starts = w.raw.offsets[1:-1]
    return k[~np.isin(k, starts)] if len(starts) and len(k) else k


def _counter_correction(w: Windows) -> F64:
    """Per window: the sum of the values just before each counter reset inside the window.

    Resets are rare, so they are found once (one comparison pass over the samples) and each
    window sums the reset amounts between its bounds through a prefix sum over resets only.
    """
    k = _reset_points(w)
    amounts = w.raw.values[k - 1]
    if len(k) == 0:
        return np.zeros(w.lo.shape)
    if not np.isfinite(amounts).all():
        # An infinite amount would poison the prefix sum for every later window.
        def corr(g: _Gathered) -> F64:
            p = _previous(g.v)
            d = np.where(g.v < p, p, 0.0)
            d[g.starts] = 0.0
            return g.sum(d)

        return _reduce(w, corr, 2)[0]
    prefix = np.concatenate([[0.0], np.cumsum(amounts)])
    # Pairs (k-1, k) inside the window [lo, hi): lo < k <= hi - 1.
    first = np.searchsorted(k, w.lo, side="right")
    last = np.searchsorted(k, w.hi - 1, side="right")
    return np.where(w.counts >= 2, prefix[last] - prefix[first], 0.0)


def _row_chunks(w: Windows) -> Iterator[slice]:
    """Row slices small enough that a chunk's temporaries stay in the CPU cache (~32k cells)."""
    rows = max(1, _CACHE_CELLS // max(1, w.lo.shape[1]))
    for start in range(0, w.lo.shape[0], rows):
        yield slice(start, start + rows)


def _extrapolated_rate(w: Windows, is_counter: bool, is_rate: bool) -> Result:
    """Prometheus 2.x ``extrapolatedRate``: rate/increase (counters) and delta (gauges)."""
    present = w.counts >= 2
    out = np.empty(w.lo.shape)
    correction = _counter_correction(w) if is_counter else None
    ts, vals = w.raw.ts, w.raw.values
    range_start = w.ends - w.range_ns
    for rows in _row_chunks(w):
        first_i, last_i = w.lo[rows], w.hi[rows] - 1
        first_t, last_t = ts.take(first_i, mode="clip"), ts.take(last_i, mode="clip")
        first_v = vals.take(first_i, mode="clip")
        result = vals.take(last_i, mode="clip")
        result -= first_v
        if correction is not None:
            result += correction[rows]
        # Durations in seconds from exact int64 ns differences (converting the epoch
        # timestamps to float first would round them to 256 ns).
        to_start = (first_t - range_start).astype(np.float64)
        to_start /= 1e9
        to_end = (w.ends - last_t).astype(np.float64)
        to_end /= 1e9
        sampled = (last_t - first_t).astype(np.float64)
        sampled /= 1e9
        avg = sampled / np.maximum(last_i - first_i, 1)
        if is_counter:
            # Counters cannot go negative: do not extrapolate below the zero point.
            to_zero = first_v / result
            to_zero *= sampled
            cap = (result > 0) & (first_v >= 0) & (to_zero < to_start)
            np.copyto(to_start, to_zero, where=cap)
        threshold = avg * 1.1
        half = avg
        half /= 2
        interval = np.where(to_start < threshold, to_start, half)
        interval += sampled
        interval += np.where(to_end < threshold, to_end, half)
        interval /= sampled
        np.multiply(result, interval, out=out[rows])
    if is_rate:
        out /= w.range_ns / 1e9
    return out, present


def _rate(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return _extrapolated_rate(w, True, True)


def _increase(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return _extrapolated_rate(w, True, False)


def _delta(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return _extrapolated_rate(w, False, False)


def _instant_value(w: Windows, is_rate: bool) -> Result:
    """``irate``/``idelta``: from the last two samples of each window."""
    present = w.counts >= 2
    ts, vals = w.raw.ts, w.raw.values
    last_v, prev_v = _at(w, w.hi - 1, vals), _at(w, w.hi - 2, vals)
    if not is_rate:
        return last_v - prev_v, present
    result = np.where(last_v < prev_v, last_v, last_v - prev_v)  # a reset: count from zero
    interval = (_at(w, w.hi - 1, ts) - _at(w, w.hi - 2, ts)).astype(np.float64) / 1e9
    return result / np.where(present, interval, 1.0), present


def _irate(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return _instant_value(w, True)


def _idelta(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return _instant_value(w, False)


def _resets(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    k = _reset_points(w)
    n = np.searchsorted(k, w.hi - 1, side="right") - np.searchsorted(k, w.lo, side="right")
    return np.where(w.counts >= 2, n, 0).astype(np.float64), w.counts >= 1


def _changes(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    v = w.raw.values
    prev = _previous(v)
    flags = ((v != prev) & ~(np.isnan(v) & np.isnan(prev))).astype(np.int64)
    return _pairs_in_windows(w, _pair_prefix(w, flags)).astype(np.float64), w.counts >= 1


# --- linear regression ---------------------------------------------------------------------------


def _regression(g: _Gathered, intercept_ns: npt.NDArray[np.int64]) -> tuple[F64, F64]:
    """Least-squares slope (per second) and intercept at ``intercept_ns`` of each window.

    Centred two-pass sums (more exact than Prometheus's running sums, equal within rounding).
    A window whose values are all equal has slope 0 and that value as intercept (NaN for an
    infinite value), exactly as Prometheus special-cases it.
    """
    n = g.counts.astype(np.float64)
    x = (g.t - g.repeat(intercept_ns)).astype(np.float64) / 1e9
    xm = g.sum(x) / n
    ym = g.sum(g.v) / n
    dx = x - g.repeat(xm)
    slope = g.sum(dx * (g.v - g.repeat(ym))) / g.sum(dx * dx)
    intercept = ym - slope * xm
    first = g.v[g.starts]
    same = g.sum((g.v != g.repeat(first)).astype(np.float64)) == 0
    const_slope = np.where(np.isinf(first), np.nan, 0.0)
    const_icpt = np.where(np.isinf(first), np.nan, first)
    return np.where(same, const_slope, slope), np.where(same, const_icpt, intercept)


def _deriv(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return _reduce(w, lambda g: _regression(g, g.t[g.starts])[0], 2)


def _predict_linear(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    duration = np.broadcast_to(args[0], w.lo.shape).ravel()
    eval_t = np.broadcast_to(steps[None, :], w.lo.shape).ravel()

    def predict(g: _Gathered) -> F64:
        slope, intercept = _regression(g, eval_t[g.rows])
        return slope * duration[g.rows] + intercept

    return _reduce(w, predict, 2)


# --- *_over_time ---------------------------------------------------------------------------------


def _sum_ot(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return _reduce(w, lambda g: g.sum(g.v))


def _avg(g: _Gathered) -> F64:
    s = g.sum(g.v)
    out = s / g.counts
    bad = np.isinf(out)
    if bad.any():
        # An overflowing sum of finite values: average scaled values instead, as Prometheus's
        # running mean never overflows.
        scaled = g.sum(g.v / g.repeat(g.counts.astype(np.float64)))
        out = np.where(bad & np.isfinite(scaled), scaled, out)
    return out


def _avg_ot(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return _reduce(w, _avg)


def _min_ot(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return _reduce(w, lambda g: np.fmin.reduceat(g.v, g.starts))


def _max_ot(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return _reduce(w, lambda g: np.fmax.reduceat(g.v, g.starts))


def _count_ot(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return w.counts.astype(np.float64), w.counts >= 1


def _last_ot(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return _at(w, w.hi - 1, w.raw.values), w.counts >= 1


def _present_ot(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return np.ones(w.lo.shape), w.counts >= 1


def _stdvar(g: _Gathered) -> F64:
    n = g.counts.astype(np.float64)
    dev = g.v - g.repeat(g.sum(g.v) / n)
    return g.sum(dev * dev) / n


def _stdvar_ot(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return _reduce(w, _stdvar)


def _stddev_ot(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    return _reduce(w, lambda g: np.sqrt(_stdvar(g)))


def quantile_sorted(q: F64, sorted_vals: F64, starts: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]) -> F64:
    """Prometheus's ``quantile``: linear interpolation between the closest ranks ``q * (n - 1)``.

    ``sorted_vals`` holds each group ascending (NaN first) at ``starts[m]`` with ``counts[m]``
    values; ``q`` is per group. q < 0 gives -Inf, q > 1 gives +Inf, NaN gives NaN.
    """
    n = counts.astype(np.float64)
    rank = np.where(np.isnan(q), 0.0, np.clip(q, 0.0, 1.0)) * (n - 1)
    lower = np.maximum(0.0, np.floor(rank))
    upper = np.minimum(n - 1, lower + 1)
    weight = rank - np.floor(rank)
    lo_v = sorted_vals[starts + lower.astype(np.int64)]
    hi_v = sorted_vals[starts + upper.astype(np.int64)]
    out = lo_v * (1 - weight) + hi_v * weight
    out = np.where(q < 0, -np.inf, out)
    out = np.where(q > 1, np.inf, out)
    return np.where(np.isnan(q), np.nan, out)


def sort_segments(values: F64, segment: npt.NDArray[np.int64]) -> F64:
    """``values`` sorted ascending within each segment (segments contiguous), NaN first as
    Prometheus's ``vectorByValueHeap`` orders them."""
    key = np.where(np.isnan(values), -np.inf, values)
    order = np.lexsort((key, segment))
    return values[order]


def _quantile_ot(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    q_all = np.broadcast_to(args[0][None, :], w.lo.shape).ravel()

    def quantile(g: _Gathered) -> F64:
        seg = np.repeat(np.arange(len(g.counts), dtype=np.int64), g.counts)
        return quantile_sorted(q_all[g.rows], sort_segments(g.v, seg), g.starts, g.counts)

    return _reduce(w, quantile)


def _absent_ot(w: Windows, args: list[F64], steps: npt.NDArray[np.int64]) -> Result:
    """Per-series presence; the evaluator turns it into ``absent_over_time``'s single series."""
    return np.ones(w.lo.shape), w.counts >= 1


RANGE_FUNCTIONS: dict[str, RangeFunction] = {
    "rate": RangeFunction(_rate),
    "increase": RangeFunction(_increase),
    "delta": RangeFunction(_delta),
    "irate": RangeFunction(_irate),
    "idelta": RangeFunction(_idelta),
    "resets": RangeFunction(_resets),
    "changes": RangeFunction(_changes),
    "deriv": RangeFunction(_deriv),
    "predict_linear": RangeFunction(_predict_linear),
    "avg_over_time": RangeFunction(_avg_ot),
    "sum_over_time": RangeFunction(_sum_ot),
    "min_over_time": RangeFunction(_min_ot),
    "max_over_time": RangeFunction(_max_ot),
    "count_over_time": RangeFunction(_count_ot),
    "last_over_time": RangeFunction(_last_ot, keeps_name=True),
    "present_over_time": RangeFunction(_present_ot),
    "stddev_over_time": RangeFunction(_stddev_ot),
    "stdvar_over_time": RangeFunction(_stdvar_ot),
    "quantile_over_time": RangeFunction(_quantile_ot, matrix_arg=1),
    "absent_over_time": RangeFunction(_absent_ot),
}
