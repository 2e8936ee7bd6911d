"""PromQL functions against hand-computed answers (values worked out from Prometheus's rules)."""

from __future__ import annotations

import math
import re

import pytest

from tsdb.errors import UnsupportedError
from tsdb.query.promql import QueryExecutionError, instant_query
from tsdb.query.promql.functions import bucket_quantile, go_template_expand, parse_go_float

from .conftest import S, one, series, vec

# A counter with one reset: 5, 10, (reset) 2, 6 at t = 10, 20, 30, 40 s.
T = [10, 20, 30, 40]
V = [5, 10, 2, 6]


@pytest.fixture
def reset_counter(store):
    store.add("c", {"job": "a"}, T, V)
    return store


def test_rate_extrapolates_to_both_window_edges(store) -> None:
    store.add("c", {}, [10, 20, 30, 40, 50], [10, 20, 30, 40, 50])
    # Window [0, 60]: 40 over 40 s sampled, 10 s missing at each edge (< 1.1 x 10 s spacing).
    assert one(store, "increase(c[60s])", 60) == pytest.approx(60)
    assert one(store, "rate(c[60s])", 60) == pytest.approx(1.0)


def test_rate_extrapolates_half_an_interval_past_a_far_edge(store) -> None:
    store.add("c", {}, [10, 20, 30, 40, 50], [10, 20, 30, 40, 50])
    # Window [0, 100]: start gap 10 s extrapolated, end gap 50 s > 11 s: only 5 s (half spacing).
    assert one(store, "increase(c[100s])", 100) == pytest.approx(55)


def test_rate_stops_extrapolating_at_counter_zero(store) -> None:
    store.add("c", {}, [10, 20, 30, 40, 50], [1, 11, 21, 31, 41])
    # The counter would reach zero 1 s before the first sample: extrapolate 1 s, not 10 s.
    assert one(store, "increase(c[60s])", 60) == pytest.approx(51)


def test_rate_corrects_counter_resets(reset_counter) -> None:
    # 6 - 5 + 10 (value before the reset) = 11 over 30 s sampled, window [0, 40]: x 40/30.
    assert one(reset_counter, "increase(c[40s])", 40) == pytest.approx(11 * 40 / 30)
    assert one(reset_counter, "rate(c[40s])", 40) == pytest.approx(11 * 40 / 30 / 40)


def test_delta_ignores_resets(reset_counter) -> None:
    assert one(reset_counter, "delta(c[40s])", 40) == pytest.approx(1 * 40 / 30)


def test_rate_needs_two_samples(reset_counter) -> None:
    assert vec(reset_counter, "rate(c[5s])", 40) == {}


def test_irate_and_idelta_use_the_last_two_samples(reset_counter) -> None:
    assert one(reset_counter, "irate(c[1m])", 40) == pytest.approx(0.4)
    assert one(reset_counter, "irate(c[1m])", 30) == pytest.approx(0.2)  # reset: 2 counted from 0
    assert one(reset_counter, "idelta(c[1m])", 40) == 4
    assert one(reset_counter, "idelta(c[1m])", 30) == -8


def test_resets_and_changes(reset_counter) -> None:
    assert one(reset_counter, "resets(c[40s])", 40) == 1
    assert one(reset_counter, "changes(c[40s])", 40) == 3
    assert one(reset_counter, "resets(c[5s])", 40) == 0  # one sample: zero, but present


def test_changes_counts_nan_to_nan_as_no_change(mem) -> None:
    mem.add("g", {}, [10, 20, 30, 40], [math.nan, math.nan, 1, 1])
    assert one(mem, "changes(g[1m])", 40) == 1


def test_deriv_and_predict_linear(reset_counter) -> None:
    # Least squares over (10,5) (20,10) (30,2) (40,6): slope = -25 / 500 per second.
    assert one(reset_counter, "deriv(c[40s])", 40) == pytest.approx(-0.05)
    # Intercept at t = 40 is 5.75 + (-0.05)(40 - 25) = 5; ten seconds later 4.5.
    assert one(reset_counter, "predict_linear(c[40s], 10)", 40) == pytest.approx(4.5)


def test_deriv_of_constant_is_exactly_zero(store) -> None:
    store.add("g", {}, [10, 20, 30], [0.1, 0.1, 0.1])
    assert one(store, "deriv(g[1m])", 30) == 0.0


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        ("avg_over_time", 5.75),
        ("sum_over_time", 23),
        ("min_over_time", 2),
        ("max_over_time", 10),
        ("count_over_time", 4),
        ("last_over_time", 6),
        ("stdvar_over_time", 8.1875),
        ("stddev_over_time", math.sqrt(8.1875)),
        ("present_over_time", 1),
    ],
)
def test_over_time_functions(reset_counter, fn: str, expected: float) -> None:
    assert one(reset_counter, f"{fn}(c[40s])", 40) == pytest.approx(expected)


def test_quantile_over_time_interpolates(reset_counter) -> None:
    assert one(reset_counter, "quantile_over_time(0.5, c[40s])", 40) == pytest.approx(5.5)  # 5 and 6
    assert one(reset_counter, "quantile_over_time(0, c[40s])", 40) == 2
    assert one(reset_counter, "quantile_over_time(2, c[40s])", 40) == math.inf
    assert one(reset_counter, "quantile_over_time(-1, c[40s])", 40) == -math.inf


def test_max_over_time_ignores_nan_unless_all_nan(mem) -> None:
    mem.add("g", {"k": "mixed"}, [10, 20], [math.nan, 3])
    mem.add("g", {"k": "nan"}, [10, 20], [math.nan, math.nan])
    got = {dict(k)["k"]: v for k, v in vec(mem, "max_over_time(g[1m])", 20).items()}
    assert got["mixed"] == 3
    assert math.isnan(got["nan"])


def test_range_functions_drop_the_metric_name_except_last_over_time(reset_counter) -> None:
    assert list(vec(reset_counter, "rate(c[40s])", 40)) == [(("job", "a"),)]
    assert list(vec(reset_counter, "last_over_time(c[40s])", 40)) == [(("__name__", "c"), ("job", "a"))]


def test_name_drop_collision_is_an_error(store) -> None:
    store.add("a", {"k": "1"}, [0, 5], [1, 2])
    store.add("b", {"k": "1"}, [0, 5], [2, 3])
    with pytest.raises(QueryExecutionError, match="same labelset"):
        instant_query(store, 'abs({__name__=~"a|b"})', 10 * S)
    with pytest.raises(QueryExecutionError, match="same labelset"):
        instant_query(store, 'rate({__name__=~"a|b"}[1m])', 10 * S)


def test_math_functions(store) -> None:
    store.add("g", {}, [0], [-2.5])
    assert one(store, "abs(g)", 1) == 2.5
    assert one(store, "ceil(g)", 1) == -2
    assert one(store, "floor(g)", 1) == -3
    assert one(store, "round(g)", 1) == -2  # ties round up, as Prometheus's floor(x + 0.5)
    assert one(store, "round(g, 2)", 1) == -2
    assert one(store, "round(g, 0.1)", 1) == pytest.approx(-2.5)
    assert one(store, "sgn(g)", 1) == -1
    assert one(store, "exp(g)", 1) == pytest.approx(math.exp(-2.5))
    assert math.isnan(one(store, "ln(g)", 1))


def test_clamp_family(store) -> None:
    store.add("g", {"i": "1"}, [0], [5])
    store.add("g", {"i": "2"}, [0], [-5])
    assert sorted(vec(store, "clamp(g, -1, 1)", 1).values()) == [-1, 1]
    assert sorted(vec(store, "clamp_min(g, 0)", 1).values()) == [0, 5]
    assert sorted(vec(store, "clamp_max(g, 0)", 1).values()) == [-5, 0]
    assert vec(store, "clamp(g, 1, -1)", 1) == {}  # max < min: nothing


def test_time_vector_scalar(store) -> None:
    store.add("g", {"i": "1"}, [0], [4])
    assert one(store, "time()", 12.5) == 12.5
    assert vec(store, "vector(time())", 3) == {(): 3.0}
    assert one(store, "scalar(g)", 1) == 4
    store.add("g", {"i": "2"}, [0], [5])
    assert math.isnan(one(store, "scalar(g)", 1))  # not exactly one element


def test_sort_and_sort_desc_keep_names_and_order(store) -> None:
    for i, v in enumerate([3, 1, 2]):
        store.add("g", {"i": str(i)}, [0], [v])
    asc = instant_query(store, "sort(g)", S)
    assert [s.value for s in asc.samples] == [1, 2, 3]
    assert all(dict(s.labels)["__name__"] == "g" for s in asc.samples)
    desc = instant_query(store, "sort_desc(g)", S)
    assert [s.value for s in desc.samples] == [3, 2, 1]


def test_sort_puts_nan_last(mem) -> None:
    for i, v in enumerate([math.nan, 1, 2]):
        mem.add("g", {"i": str(i)}, [0], [v])
    for fn in ("sort", "sort_desc"):
        values = [s.value for s in instant_query(mem, f"{fn}(g)", S).samples]
        assert math.isnan(values[-1])


def test_label_replace(store) -> None:
    store.add("up", {"instance": "host-1:9100"}, [0], [1])
    out = vec(store, 'label_replace(up, "host", "$1", "instance", "(.*):.*")', 1)
    assert list(out) == [(("__name__", "up"), ("host", "host-1"), ("instance", "host-1:9100"))]
    # Anchored: "host" matches only part of the value, so nothing changes.
    out = vec(store, 'label_replace(up, "x", "y", "instance", "host")', 1)
    assert list(out) == [(("__name__", "up"), ("instance", "host-1:9100"))]
    # An empty replacement deletes the destination label.
    out = vec(store, 'label_replace(up, "instance", "", "instance", ".*")', 1)
    assert list(out) == [(("__name__", "up"),)]
    # The metric name can be rewritten too.
    out = vec(store, 'label_replace(up, "__name__", "renamed", "", "")', 1)
    assert list(out) == [(("__name__", "renamed"), ("instance", "host-1:9100"))]


def test_label_replace_rejects_bad_regex_and_label(store) -> None:
    store.add("up", {}, [0], [1])
    with pytest.raises(QueryExecutionError, match="regular expression"):
        instant_query(store, 'label_replace(up, "a", "b", "c", "(")', S)
    with pytest.raises(QueryExecutionError, match="destination label"):
        instant_query(store, 'label_replace(up, "1a", "b", "c", ".*")', S)


def test_label_join(store) -> None:
    store.add("up", {"a": "x", "b": "y"}, [0], [1])
    out = vec(store, 'label_join(up, "ab", "-", "a", "b", "missing")', 1)
    assert list(out) == [(("__name__", "up"), ("a", "x"), ("ab", "x-y-"), ("b", "y"))]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$1", "a"),
        ("${1}b", "ab"),
        ("$1b", ""),
        ("$name", "n"),
        ("${name}!", "n!"),
        ("$$1", "$1"),
        ("$", "$"),
        ("$-", "$-"),
    ],
)
def test_go_template_expand(template: str, expected: str) -> None:
    m = re.fullmatch(r"(a)(?P<name>n)", "an")
    assert m is not None
    assert go_template_expand(template, m) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", 1.0), ("+Inf", math.inf), ("0.25", 0.25), ("1e3", 1000.0), (" 1", None), ("1_0", None), ("x", None)],
)
def test_parse_go_float(text: str, expected: float | None) -> None:
    assert parse_go_float(text) == expected


def _hist(store, counts: dict[str, float], labels: dict[str, str] | None = None) -> None:
    for le, c in counts.items():
        store.add("h_bucket", {"le": le, **(labels or {})}, [0], [c])


def test_histogram_quantile_interpolates_inside_the_bucket(store) -> None:
    _hist(store, {"0.5": 10, "1": 30, "+Inf": 40})
    # Rank 0.5 * 40 = 20 falls in (0.5, 1]: 10 of 20 observations in, so halfway.
    assert one(store, "histogram_quantile(0.5, h_bucket)", 1) == pytest.approx(0.75)
    # Rank 4 is in the lowest bucket: interpolated from 0.
    assert one(store, "histogram_quantile(0.1, h_bucket)", 1) == pytest.approx(0.2)
    # Rank 38 is in the +Inf bucket: the second-highest bound.
    assert one(store, "histogram_quantile(0.95, h_bucket)", 1) == 1
    assert one(store, "histogram_quantile(2, h_bucket)", 1) == math.inf
    assert one(store, "histogram_quantile(-1, h_bucket)", 1) == -math.inf


def test_histogram_quantile_groups_by_other_labels_and_drops_le(store) -> None:
    _hist(store, {"1": 1, "+Inf": 2}, {"job": "a"})
    _hist(store, {"1": 0, "+Inf": 0}, {"job": "b"})
    out = vec(store, "histogram_quantile(0.5, h_bucket)", 1)
    assert out[(("job", "a"),)] == 1
    assert math.isnan(out[(("job", "b"),)])  # no observations


def test_histogram_quantile_edge_rules() -> None:
    q = lambda v: [v]  # noqa: E731
    import numpy as np

    counts = np.array([[10.0], [8.0], [20.0]])  # not monotonic: the 8 is raised to 10
    bounds = np.array([1.0, 2.0, math.inf])
    assert bucket_quantile(np.array(q(0.5)), bounds, counts)[0] == pytest.approx(1.0)
    no_inf = bucket_quantile(np.array(q(0.5)), np.array([1.0, 2.0]), np.array([[1.0], [2.0]]))
    assert math.isnan(no_inf[0])
    negative_lowest = bucket_quantile(np.array(q(0.1)), np.array([-1.0, math.inf]), np.array([[5.0], [10.0]]))
    assert negative_lowest[0] == -1.0


def test_absent(store) -> None:
    store.add("up", {"job": "x"}, [0], [1])
    assert vec(store, 'absent(up{job="x"})', 1) == {}
    assert vec(store, 'absent(nope{job="y", inst=~"a.*"})', 1) == {(("job", "y"),): 1.0}
    assert vec(store, 'absent_over_time(nope{job="y"}[1m])', 1) == {(("job", "y"),): 1.0}
    assert vec(store, 'absent_over_time(up{job="x"}[1m])', 1) == {}


def test_date_functions(store) -> None:
    # 2021-03-04T05:06:07Z
    t = 1614834367
    assert one(store, "year()", t) == 2021
    assert one(store, "month()", t) == 3
    assert one(store, "day_of_month()", t) == 4
    assert one(store, "day_of_week()", t) == 4  # Thursday
    assert one(store, "day_of_year()", t) == 63
    assert one(store, "days_in_month()", t) == 31
    assert one(store, "hour()", t) == 5
    assert one(store, "minute()", t) == 6
    store.add("ts", {}, [0], [t])
    assert one(store, "hour(ts)", 1) == 5


def test_range_functions_over_a_range_query(reset_counter) -> None:
    got = series(reset_counter, "resets(c[15s])", 10, 40, 10)
    assert got == {(("job", "a"),): [(10, 0), (20, 0), (30, 1), (40, 0)]}


@pytest.mark.parametrize("expr", ["holt_winters(c[1m], 0.5, 0.5)", "limitk(1, c)", 'sort_by_label(c, "job")'])
def test_unsupported_functions_are_named(reset_counter, expr: str) -> None:
    with pytest.raises(Exception) as info:
        instant_query(reset_counter, expr, 40 * S)
    err = info.value
    if isinstance(err, UnsupportedError):
        assert expr.split("(")[0] in err.message
    else:  # the parser itself may not know the name; then it is a parse error naming it
        assert expr.split("(")[0] in str(err)


def test_infinite_counter_value_does_not_poison_later_windows(mem) -> None:
    mem.add("c", {}, [10, 20, 30, 40], [1, math.inf, 2, 3])
    assert one(mem, "increase(c[40s])", 40) == math.inf  # the reset adds the infinite value
    # Window [25, 40] holds 2 and 3 only: 1 over 10 s, extrapolated 5 s to the start.
    assert one(mem, "increase(c[15s])", 40) == pytest.approx(1.5)
