"""Property test: range-vector functions over range queries vs a naive per-step reference.

The reference below is written straight from Prometheus 2.x's ``promql/functions.go``: for each
step it collects the window's samples in a Python list (closed window ``[t - offset - range,
t - offset]``, staleness markers dropped) and loops over them. The evaluator computes the same
thing for all steps at once with searchsorted windows, prefix sums and reduceat; any
disagreement in presence or value (beyond float rounding) is a bug in one of them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsdb._types import STALE_NAN
from tsdb.query.promql import range_query

from .conftest import MemQuerier

MS = 1_000_000
#: Realistic epoch times: ns timestamps beyond 2**53 catch any float conversion before a
#: subtraction (float64 rounds them to 256 ns).
BASE_MS = 1_700_000_000_000
Point = tuple[int, float]  # (ms, value)


def _extrapolated(pts: list[Point], start: int, end: int, range_s: float, counter: bool, rate: bool) -> float | None:
    if len(pts) < 2:
        return None
    result = pts[-1][1] - pts[0][1]
    if counter:
        for (_, prev), (_, cur) in itertools.pairwise(pts):
            if cur < prev:
                result += prev
    to_start = (pts[0][0] - start) / 1000
    to_end = (end - pts[-1][0]) / 1000
    sampled = (pts[-1][0] - pts[0][0]) / 1000
    avg = sampled / (len(pts) - 1)
    if counter and result > 0 and pts[0][1] >= 0:
        to_zero = sampled * (pts[0][1] / result)
        if to_zero < to_start:
            to_start = to_zero
    threshold = avg * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else avg / 2
    interval += to_end if to_end < threshold else avg / 2
    result = result * (interval / sampled)
    return result / range_s if rate else result


def _irate(pts: list[Point], rate: bool) -> float | None:
    if len(pts) < 2:
        return None
    (t0, v0), (t1, v1) = pts[-2], pts[-1]
    if not rate:
        return v1 - v0
    return (v1 if v1 < v0 else v1 - v0) / ((t1 - t0) / 1000)


def _deriv(pts: list[Point]) -> float | None:
    if len(pts) < 2:
        return None
    if all(v == pts[0][1] for _, v in pts):
        return 0.0
    xs = [(t - pts[0][0]) / 1000 for t, _ in pts]
    ys = [v for _, v in pts]
    n = len(pts)
    sx, sy = sum(xs), sum(ys)
    cov = sum(x * y for x, y in zip(xs, ys, strict=True)) - sx * sy / n
    var = sum(x * x for x in xs) - sx * sx / n
    return cov / var


def _quantile(q: float, values: list[float]) -> float:
    v = sorted(values)
    rank = q * (len(v) - 1)
    lo = max(0, math.floor(rank))
    hi = min(len(v) - 1, lo + 1)
    w = rank - math.floor(rank)
    return v[lo] * (1 - w) + v[hi] * w


def _stdvar(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((x - mean) ** 2 for x in values) / len(values)


def _needs(k: int, fn: Callable[[list[float]], float]) -> Callable[[list[Point]], float | None]:
    return lambda pts: fn([v for _, v in pts]) if len(pts) >= k else None


REFERENCE: dict[str, Callable[..., float | None]] = {
    "rate": lambda p, s, e, r: _extrapolated(p, s, e, r, True, True),
    "increase": lambda p, s, e, r: _extrapolated(p, s, e, r, True, False),
    "delta": lambda p, s, e, r: _extrapolated(p, s, e, r, False, False),
    "irate": lambda p, s, e, r: _irate(p, True),
    "idelta": lambda p, s, e, r: _irate(p, False),
    "deriv": lambda p, s, e, r: _deriv(p),
    "resets": lambda p, s, e, r: _needs(1, lambda v: sum(b < a for a, b in itertools.pairwise(v)))(p),
    "changes": lambda p, s, e, r: _needs(1, lambda v: sum(b != a for a, b in itertools.pairwise(v)))(p),
    "avg_over_time": lambda p, s, e, r: _needs(1, lambda v: sum(v) / len(v))(p),
    "sum_over_time": lambda p, s, e, r: _needs(1, sum)(p),
    "min_over_time": lambda p, s, e, r: _needs(1, min)(p),
    "max_over_time": lambda p, s, e, r: _needs(1, max)(p),
    "count_over_time": lambda p, s, e, r: _needs(1, len)(p),
    "last_over_time": lambda p, s, e, r: _needs(1, lambda v: v[-1])(p),
    "present_over_time": lambda p, s, e, r: _needs(1, lambda v: 1.0)(p),
    "stdvar_over_time": lambda p, s, e, r: _needs(1, _stdvar)(p),
    "stddev_over_time": lambda p, s, e, r: _needs(1, lambda v: math.sqrt(_stdvar(v)))(p),
    "quantile_over_time": lambda p, s, e, r: _needs(1, lambda v: _quantile(0.3, v))(p),
}


@st.composite
def samples(draw: st.DrawFn) -> tuple[list[int], list[float]]:
    """One series: strictly increasing ms timestamps; a counter with resets or a gauge; some
    staleness markers."""
    n = draw(st.integers(0, 60))
    gaps = draw(st.lists(st.integers(1, 40_000), min_size=n, max_size=n))
    ts = np.cumsum([0, *gaps])[:n] + draw(st.integers(0, 200_000)) + BASE_MS
    counter = draw(st.booleans())
    values: list[float] = []
    level = 0.0
    for _ in range(n):
        if counter:
            level = (
                draw(st.sampled_from([0.0, 1.0, 2.5]))
                if draw(st.integers(0, 9)) == 0
                else level + draw(st.integers(0, 50))
            )
            values.append(level)
        else:
            values.append(draw(st.integers(-1000, 1000)) / 8)
    for i in range(n):
        if draw(st.integers(0, 14)) == 0:
            values[i] = STALE_NAN
    return [int(t) for t in ts], values


@pytest.mark.parametrize("fn", sorted(REFERENCE))
@given(
    data=st.lists(samples(), min_size=1, max_size=3),
    start_ms=st.integers(0, 900_000).map(lambda t: t + BASE_MS),
    step_ms=st.integers(1, 120_000),
    n_steps=st.integers(1, 25),
    range_ms=st.integers(1, 300_000).map(lambda r: r - r % 1000 if r > 1000 else r),
    offset_ms=st.integers(-60_000, 60_000),
)
def test_range_functions_match_naive_reference(
    data: list[tuple[list[int], list[float]]],
    fn: str,
    start_ms: int,
    step_ms: int,
    n_steps: int,
    range_ms: int,
    offset_ms: int,
) -> None:
    q = MemQuerier()
    for i, (ts, vs) in enumerate(data):
        q.add_ns("m", {"i": str(i)}, [t * MS for t in ts], vs)
    end_ms = start_ms + step_ms * (n_steps - 1)
    arg = "0.3, " if fn == "quantile_over_time" else ""
    offset = f" offset {offset_ms}ms" if offset_ms > 0 else (f" offset -{-offset_ms}ms" if offset_ms < 0 else "")
    expr = f"{fn}({arg}m[{range_ms}ms]{offset})"
    got = range_query(q, expr, start_ms * MS, end_ms * MS, step_ms * MS)
    ours = {
        dict(s.labels)["i"]: dict(zip((s.timestamps // MS).tolist(), s.values.tolist(), strict=True))
        for s in got.series
    }
    for i, (ts, vs) in enumerate(data):
        clean = [(t, v) for t, v in zip(ts, vs, strict=True) if not (math.isnan(v))]
        expected: dict[int, float] = {}
        for t in range(start_ms, end_ms + 1, step_ms):
            end = t - offset_ms
            start = end - range_ms
            window = [(pt, pv) for pt, pv in clean if start <= pt <= end]
            value = REFERENCE[fn](window, start, end, range_ms / 1000)
            if value is not None:
                expected[t] = float(value)
        mine = ours.get(str(i), {})
        assert sorted(mine) == sorted(expected), (expr, i)
        for t, value in expected.items():
            tol = 1e-6 if fn == "deriv" else 1e-9
            assert math.isclose(mine[t], value, rel_tol=tol, abs_tol=1e-9), (expr, i, t, mine[t], value)


@given(
    data=st.lists(samples(), min_size=1, max_size=3),
    start_ms=st.integers(0, 900_000).map(lambda t: t + BASE_MS),
    step_ms=st.integers(1, 120_000),
    n_steps=st.integers(1, 25),
    lookback_ms=st.integers(1, 400_000),
)
def test_instant_selector_and_sum_match_naive_lookback(
    data: list[tuple[list[int], list[float]]], start_ms: int, step_ms: int, n_steps: int, lookback_ms: int
) -> None:
    """Each step sees the newest sample within the closed lookback, unless it is a staleness marker."""
    q = MemQuerier()
    for i, (ts, vs) in enumerate(data):
        q.add_ns("m", {"i": str(i)}, [t * MS for t in ts], vs)
    end_ms = start_ms + step_ms * (n_steps - 1)
    got = range_query(q, "m", start_ms * MS, end_ms * MS, step_ms * MS, lookback_ns=lookback_ms * MS)
    total = range_query(q, "sum(m)", start_ms * MS, end_ms * MS, step_ms * MS, lookback_ns=lookback_ms * MS)
    ours = {
        dict(s.labels)["i"]: dict(zip((s.timestamps // MS).tolist(), s.values.tolist(), strict=True))
        for s in got.series
    }
    sums: dict[int, float] = {}
    for i, (ts, vs) in enumerate(data):
        expected = {}
        for t in range(start_ms, end_ms + 1, step_ms):
            seen = [(pt, pv) for pt, pv in zip(ts, vs, strict=True) if pt <= t]
            if seen and seen[-1][0] >= t - lookback_ms and not np.isnan(seen[-1][1]):
                expected[t] = seen[-1][1]
                sums[t] = sums.get(t, 0.0) + seen[-1][1]
        assert ours.get(str(i), {}) == expected
    sum_series = {int(t) // MS: v for s in total.series for t, v in zip(s.timestamps, s.values, strict=True)}
    assert sorted(sum_series) == sorted(sums)
    for t, v in sums.items():
        assert math.isclose(sum_series[t], v, rel_tol=1e-9, abs_tol=1e-9)
