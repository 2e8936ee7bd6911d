"""Selectors: matchers, the 5-minute lookback, staleness markers, offset, @, range windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tsdb._types import STALE_NAN
from tsdb.labels import Matcher
from tsdb.query.promql import Matrix, instant_query, range_query

from .conftest import S, one, series, vec

NAME = ("__name__", "x")


def test_all_four_matchers_and_regex_anchoring(store) -> None:
    for host in ("a", "ab", "ba", "b"):
        store.add("x", {"host": host}, [0], [1])
    hosts = lambda expr: sorted(dict(k)["host"] for k in vec(store, expr, 10))  # noqa: E731
    assert hosts('x{host="a"}') == ["a"]
    assert hosts('x{host!="a"}') == ["ab", "b", "ba"]
    assert hosts('x{host=~"a.*"}') == ["a", "ab"]  # anchored: "ba" does not match
    assert hosts('x{host!~"a|b"}') == ["ab", "ba"]
    assert hosts('{__name__="x", host=~"b.*"}') == ["b", "ba"]


def test_lookback_window_is_closed_five_minutes(store) -> None:
    store.add("x", {}, [100], [7])
    assert one(store, "x", 100) == 7
    assert one(store, "x", 400) == 7  # exactly 5 m after the sample: still seen (Prometheus 2.x)
    assert vec(store, "x", 400.001) == {}
    assert vec(store, "x", 99.999) == {}  # nothing before the first sample


def test_lookback_is_configurable(store) -> None:
    store.add("x", {}, [100], [7])
    result = instant_query(store, "x", 200 * S, lookback_ns=60 * S)
    assert len(result) == 0


def test_newest_sample_wins_and_output_is_stamped_with_eval_time(store) -> None:
    store.add("x", {"a": "1"}, [10, 20, 30], [1, 2, 3])
    result = instant_query(store, "x", 25 * S)
    assert result.timestamp_ns == 25 * S
    assert [(s.labels, s.value) for s in result.samples] == [(((NAME), ("a", "1")), 2.0)]


def test_staleness_marker_ends_the_series(store) -> None:
    store.add("x", {}, [0, 10, 20], [1, 2, STALE_NAN])
    assert one(store, "x", 15) == 2
    assert vec(store, "x", 20) == {}
    assert vec(store, "x", 100) == {}  # the marker, not the lookback, ended it


def test_sample_after_staleness_revives_the_series(store) -> None:
    store.add("x", {}, [0, 10, 20], [1, STALE_NAN, 5])
    assert vec(store, "x", 15) == {}
    assert one(store, "x", 25) == 5


def test_range_selector_drops_staleness_markers(store) -> None:
    store.add("x", {}, [0, 10, 20, 30], [1, 2, STALE_NAN, 4])
    assert one(store, "count_over_time(x[1m])", 30) == 3
    m = instant_query(store, "x[1m]", 30 * S)
    assert isinstance(m, Matrix)
    assert m.series[0].values.tolist() == [1, 2, 4]


def test_range_window_is_closed_at_both_ends(store) -> None:
    store.add("x", {}, [0, 30, 60], [1, 2, 3])
    assert one(store, "count_over_time(x[1m])", 60) == 3  # [0, 60] holds all three
    assert one(store, "count_over_time(x[1m])", 60.001) == 2


def test_instant_query_of_range_vector_returns_raw_samples(store) -> None:
    store.add("x", {"a": "1"}, [0, 15, 30, 45], [1, 2, 3, 4])
    m = instant_query(store, "x[20s]", 45 * S)
    assert isinstance(m, Matrix)
    (s,) = m.series
    assert s.labels == (NAME, ("a", "1"))
    assert s.timestamps.tolist() == [30 * S, 45 * S]
    assert s.values.tolist() == [3, 4]


def test_offset_shifts_the_read_time(store) -> None:
    store.add("x", {}, [0, 60, 120], [1, 2, 3])
    assert one(store, "x offset 1m", 120) == 2
    assert one(store, "x offset -1m", 60) == 3
    assert one(store, "sum_over_time(x[1m] offset 1m)", 120) == 3  # window [0, 60]


def test_at_modifier_pins_the_time(store) -> None:
    store.add("x", {}, [0, 60, 120], [1, 2, 3])
    pts = series(store, "x @ 60", 0, 120, 60)
    assert next(iter(pts.values())) == [(0, 2), (60, 2), (120, 2)]
    pts = series(store, "x @ start()", 60, 120, 60)
    assert next(iter(pts.values())) == [(60, 2), (120, 2)]
    pts = series(store, "x @ end()", 0, 60, 60)
    assert next(iter(pts.values())) == [(0, 2), (60, 2)]
    assert one(store, "x @ 120 offset 1m", 0) == 2


def test_timestamp_reports_sample_time(store) -> None:
    store.add("x", {}, [10, 20], [1, 2])
    assert one(store, "timestamp(x)", 25) == 20
    assert one(store, "timestamp(x @ 15)", 100) == 10
    assert one(store, "timestamp(x + 1)", 25) == 25  # not a selector: the evaluation time


def test_many_series_match_per_series_search(store) -> None:
    """Long and short series take different search paths; both must agree with a direct scan."""
    rng = np.random.default_rng(3)
    for i in range(20):
        n = 3 if i % 2 else 600
        t = np.sort(rng.choice(np.arange(0, 3000), n, replace=False)).astype(float)
        store.add("x", {"i": str(i)}, t, np.arange(n, dtype=float))
    got = series(store, "count_over_time(x[100s])", 0, 3000, 37)
    assert len(got) == 20
    stored = {
        dict(sd.labels)["i"]: sd.timestamps / S for sd in store.select_raw([Matcher.eq("__name__", "x")], 0, 4000 * S)
    }
    for labels, points in got.items():
        secs = stored[dict(labels)["i"]]
        assert points
        for t, v in points:
            assert v == ((secs >= t - 100) & (secs <= t)).sum()


def test_range_query_scalar_and_unaligned_start(store) -> None:
    m = range_query(store, "time()", 7 * S, 30 * S, 10 * S)
    (s,) = m.series
    assert s.labels == ()
    assert s.timestamps.tolist() == [7 * S, 17 * S, 27 * S]
    assert s.values.tolist() == [7, 17, 27]


def test_nan_values_are_not_stale(mem) -> None:
    mem.add("x", {}, [0, 10], [1, math.nan])
    assert math.isnan(one(mem, "x", 10))
    assert one(mem, "count_over_time(x[1m])", 10) == 2


@pytest.mark.parametrize("expr", ['x{a="b" or c="d"}'])
def test_or_inside_selector_is_unsupported(store, expr: str) -> None:
    from tsdb.errors import InvalidInputError, UnsupportedError

    with pytest.raises((UnsupportedError, InvalidInputError)):
        instant_query(store, expr, 0)
