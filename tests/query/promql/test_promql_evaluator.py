"""The evaluator's entry points: result types, validation, errors, subqueries."""

from __future__ import annotations

import numpy as np
import pytest

from tsdb.errors import InvalidQueryError, LimitExceededError, UnsupportedError
from tsdb.query.promql import InstantVector, Matrix, QueryExecutionError, Scalar, String, instant_query, range_query
from tsdb.query.promql.evaluator import Evaluator, parse_query

from .conftest import S, one, series


@pytest.fixture
def ramp(store):
    """x equals the time in seconds, one sample per second from 0 to 1000."""
    t = np.arange(0, 1001, dtype=float)
    store.add("x", {}, t, t)
    return store


def test_result_types(ramp) -> None:
    assert instant_query(ramp, "1 + 1", 5 * S) == Scalar(5 * S, 2.0)
    assert instant_query(ramp, '"hello"', 5 * S) == String(5 * S, "hello")
    assert isinstance(instant_query(ramp, "x", 5 * S), InstantVector)
    assert isinstance(instant_query(ramp, "x[10s]", 5 * S), Matrix)


def test_parse_errors_are_invalid_queries(ramp) -> None:
    for expr in ["sum(", "rate(x)", "x +", "", "1 == 1"]:
        with pytest.raises(InvalidQueryError) as info:
            instant_query(ramp, expr, S)
        assert not isinstance(info.value, QueryExecutionError)


def test_range_query_validation(ramp) -> None:
    with pytest.raises(InvalidQueryError, match="range vector"):
        range_query(ramp, "x[1m]", 0, 10 * S, S)
    with pytest.raises(InvalidQueryError, match="string"):
        range_query(ramp, '"a"', 0, 10 * S, S)
    with pytest.raises(InvalidQueryError, match="step"):
        range_query(ramp, "x", 0, 10 * S, 0)
    with pytest.raises(InvalidQueryError, match="before start"):
        range_query(ramp, "x", 10 * S, 0, S)
    with pytest.raises(InvalidQueryError, match="11,000"):
        range_query(ramp, "x", 0, 11_001 * S, S)
    assert len(range_query(ramp, "x", 0, 11_000 * S, S).series[0].timestamps) == 1001 + 300  # lookback tail


def test_range_steps_start_at_start_and_include_end(ramp) -> None:
    got = series(ramp, "x", 3, 23, 10)
    assert next(iter(got.values())) == [(3, 3), (13, 13), (23, 23)]


def test_subquery_steps_are_aligned_to_absolute_multiples(ramp) -> None:
    # Inner steps of [1m:25s] at t=100 are 50, 75, 100 (multiples of 25 s inside [40, 100]).
    assert one(ramp, "min_over_time(x[1m:25s])", 100) == 50
    assert one(ramp, "max_over_time(x[1m:25s])", 100) == 100
    assert one(ramp, "count_over_time(x[1m:25s])", 100) == 3
    # With offset 7s the window is [33, 93]: inner steps 50 and 75.
    assert one(ramp, "max_over_time(x[1m:25s] offset 7s)", 100) == 75


def test_subquery_default_step_is_one_minute(ramp) -> None:
    assert one(ramp, "count_over_time(x[5m:])", 300) == 6  # 0, 60, ..., 300


def test_subquery_with_at(ramp) -> None:
    assert one(ramp, "last_over_time(x[1m:10s] @ 50)", 900) == 50


def test_nested_subquery_over_range_function(ramp) -> None:
    # rate of a 1/s ramp is 1 everywhere; its max over a subquery too.
    assert one(ramp, "max_over_time(rate(x[1m])[5m:30s])", 600) == pytest.approx(1.0)


def test_subquery_over_a_range_query(ramp) -> None:
    got = series(ramp, "max_over_time(x[30s:20s])", 100, 160, 30)
    assert next(iter(got.values())) == [(100, 100), (130, 120), (160, 160)]


def test_unsupported_aggregation_is_named(ramp) -> None:
    with pytest.raises(UnsupportedError, match="limitk"):
        instant_query(ramp, "limitk(1, x)", S)


def test_sample_limit(ramp) -> None:
    ev = Evaluator(ramp, np.arange(0, 100, dtype=np.int64) * S, 0, 99 * S, max_samples=50)
    with pytest.raises(LimitExceededError, match="too many samples"):
        ev.eval(parse_query("x"))


def test_instant_vector_sample_timestamps_are_eval_time(ramp) -> None:
    result = instant_query(ramp, "x", 500_500_000_000)
    assert result.timestamp_ns == 500_500_000_000
    assert result.samples[0].value == 500
