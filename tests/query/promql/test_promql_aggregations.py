"""Aggregation operators: grouping, values, ordering and labels, against hand-computed answers."""

from __future__ import annotations

import math

import pytest

from tsdb.query.promql import QueryExecutionError, instant_query
from tsdb.query.promql.aggregations import format_go_float

from .conftest import S, series, vec

ROWS = [
    ({"job": "api", "inst": "a"}, 1.0),
    ({"job": "api", "inst": "b"}, 3.0),
    ({"job": "web", "inst": "a"}, 10.0),
    ({"job": "web", "inst": "b"}, 20.0),
    ({"job": "web", "inst": "c"}, 30.0),
]


@pytest.fixture
def five(store):
    for labels, v in ROWS:
        store.add("m", labels, [0], [v])
    return store


def by_job(result: dict) -> dict[str, float]:
    return {dict(k).get("job", ""): v for k, v in result.items()}


@pytest.mark.parametrize(
    ("op", "api", "web"),
    [
        ("sum", 4, 60),
        ("avg", 2, 20),
        ("min", 1, 10),
        ("max", 3, 30),
        ("count", 2, 3),
        ("group", 1, 1),
        ("stdvar", 1, 200 / 3),
        ("stddev", 1, math.sqrt(200 / 3)),
    ],
)
def test_simple_aggregations_by(five, op: str, api: float, web: float) -> None:
    got = vec(five, f"{op} by (job) (m)", 1)
    assert set(got) == {(("job", "api"),), (("job", "web"),)}
    assert by_job(got) == {"api": pytest.approx(api), "web": pytest.approx(web)}


def test_without_drops_listed_labels_and_the_name(five) -> None:
    got = vec(five, "sum without (inst) (m)", 1)
    assert by_job(got) == {"api": 4, "web": 60}
    assert all("__name__" not in dict(k) for k in got)


def test_no_grouping_is_one_group(five) -> None:
    assert vec(five, "sum(m)", 1) == {(): 64.0}
    assert vec(five, "sum by (__name__) (m)", 1) == {(("__name__", "m"),): 64.0}


def test_quantile_interpolates_between_ranks(five) -> None:
    # web: 10, 20, 30; q = 0.25 -> rank 0.5 -> 15.
    assert by_job(vec(five, "quantile by (job) (0.25, m)", 1))["web"] == pytest.approx(15)
    assert vec(five, "quantile(1.5, m)", 1) == {(): math.inf}


def test_topk_bottomk_keep_labels_and_order_best_first(five) -> None:
    top = instant_query(five, "topk(2, m)", S)
    assert [s.value for s in top.samples] == [30, 20]
    assert dict(top.samples[0].labels) == {"__name__": "m", "job": "web", "inst": "c"}
    bottom = instant_query(five, "bottomk by (job) (1, m)", S)
    assert sorted(s.value for s in bottom.samples) == [1, 10]
    assert vec(five, "topk(0, m)", 1) == {}


def test_topk_ranks_nan_last(mem) -> None:
    mem.add("m", {"i": "1"}, [0], [math.nan])
    mem.add("m", {"i": "2"}, [0], [1])
    assert [s.value for s in instant_query(mem, "topk(1, m)", S).samples] == [1]
    assert [s.value for s in instant_query(mem, "bottomk(1, m)", S).samples] == [1]
    values = [s.value for s in instant_query(mem, "topk(2, m)", S).samples]
    assert values[0] == 1 and math.isnan(values[1])


def test_topk_over_a_range_picks_per_step(store) -> None:
    store.add("m", {"i": "1"}, [0, 10], [1, 5])
    store.add("m", {"i": "2"}, [0, 10], [2, 3])
    got = series(store, "topk(1, m)", 0, 10, 10)
    assert got == {
        (("__name__", "m"), ("i", "1")): [(10, 5)],
        (("__name__", "m"), ("i", "2")): [(0, 2)],
    }


def test_count_values_formats_like_go(store) -> None:
    for i, v in enumerate([1, 1, 2.5, 1e21]):
        store.add("m", {"i": str(i)}, [0], [v])
    got = vec(store, 'count_values("v", m)', 1)
    assert got == {(("v", "1"),): 2, (("v", "2.5"),): 1, (("v", "1000000000000000000000"),): 1}
    with pytest.raises(QueryExecutionError):
        instant_query(store, 'count_values("1bad", m)', S)


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (0.1, "0.1"), (-0.0, "-0"), (1e-7, "0.0000001"), (math.inf, "+Inf"), (math.nan, "NaN")],
)
def test_format_go_float(value: float, text: str) -> None:
    assert format_go_float(value) == text


def test_max_ignores_nan_values(mem) -> None:
    mem.add("m", {"i": "1"}, [0], [math.nan])
    mem.add("m", {"i": "2"}, [0], [2])
    assert vec(mem, "max(m)", 1) == {(): 2.0}
    assert vec(mem, "min(m)", 1) == {(): 2.0}
    assert math.isnan(vec(mem, "sum(m)", 1)[()])


def test_avg_does_not_overflow(mem) -> None:
    mem.add("m", {"i": "1"}, [0], [1.5e308])
    mem.add("m", {"i": "2"}, [0], [1.5e308])
    assert vec(mem, "avg(m)", 1) == {(): pytest.approx(1.5e308)}


def test_aggregation_skips_absent_series_per_step(store) -> None:
    store.add("m", {"i": "1"}, [0], [1])
    store.add("m", {"i": "2"}, [600], [2])
    got = series(store, "count(m)", 0, 900, 300)
    assert got == {(): [(0, 1), (300, 1), (600, 1), (900, 1)]}
    got = series(store, "sum(m)", 0, 900, 300)
    assert got == {(): [(0, 1), (300, 1), (600, 2), (900, 2)]}
