"""Binary operators: arithmetic, comparisons, set operators and vector matching."""

from __future__ import annotations

import math

import pytest

from tsdb.query.promql import QueryExecutionError, instant_query

from .conftest import S, one, series, vec


@pytest.fixture
def hosts(store):
    # cpu{host, dc}, mem{host}, up{host, job}
    for host, dc, cpu, mem in [("a", "east", 10, 100), ("b", "east", 20, 200), ("c", "west", 30, 300)]:
        store.add("cpu", {"host": host, "dc": dc}, [0], [cpu])
        store.add("mem", {"host": host}, [0], [mem])
    store.add("up", {"host": "a", "job": "x"}, [0], [1])
    store.add("up", {"host": "b", "job": "x"}, [0], [0])
    return store


def host_map(result: dict) -> dict[str, float]:
    return {dict(k).get("host", ""): v for k, v in result.items()}


def test_scalar_arithmetic(store) -> None:
    assert one(store, "1 + 1", 0) == 2
    assert one(store, "2 * 3 ^ 2", 0) == 18  # ^ binds tighter
    assert one(store, "2 ^ 3 ^ 2", 0) == 512  # and is right-associative
    assert one(store, "-7 % 3", 0) == -1  # Go's math.Mod keeps the dividend's sign
    assert one(store, "1 / 0", 0) == math.inf
    assert math.isnan(one(store, "0 / 0", 0))
    assert one(store, "1 < bool 2", 0) == 1


def test_vector_scalar_arithmetic_drops_name(hosts) -> None:
    got = vec(hosts, "cpu * 2", 1)
    assert host_map(got) == {"a": 20, "b": 40, "c": 60}
    assert all("__name__" not in dict(k) for k in got)


def test_comparison_filters_and_keeps_name(hosts) -> None:
    got = vec(hosts, "cpu > 15", 1)
    assert host_map(got) == {"b": 20, "c": 30}
    assert all(dict(k)["__name__"] == "cpu" for k in got)
    # Scalar on the left: the value is still the vector's.
    assert host_map(vec(hosts, "15 < cpu", 1)) == {"b": 20, "c": 30}


def test_comparison_with_bool_gives_zero_one_and_drops_name(hosts) -> None:
    got = vec(hosts, "cpu > bool 15", 1)
    assert host_map(got) == {"a": 0, "b": 1, "c": 1}
    assert all("__name__" not in dict(k) for k in got)


def test_one_to_one_with_on_keeps_only_the_on_labels(hosts) -> None:
    got = vec(hosts, "mem / on(host) cpu", 1)
    assert got == {(("host", "a"),): 10, (("host", "b"),): 10, (("host", "c"),): 10}


def test_one_to_one_with_ignoring(hosts) -> None:
    got = vec(hosts, "cpu - ignoring(dc) mem", 1)
    assert host_map(got) == {"a": -90, "b": -180, "c": -270}
    assert all(set(dict(k)) == {"host"} for k in got)


def test_no_match_without_modifier(hosts) -> None:
    assert vec(hosts, "cpu + mem", 1) == {}  # cpu has dc, mem does not


def test_group_left_copies_labels_from_the_one_side(hosts) -> None:
    got = vec(hosts, "mem * on(host) group_left(dc) cpu", 1)
    assert got == {
        (("dc", "east"), ("host", "a")): 1000,
        (("dc", "east"), ("host", "b")): 4000,
        (("dc", "west"), ("host", "c")): 9000,
    }


def test_group_left_many_to_one(store) -> None:
    store.add("req", {"job": "api", "code": "200"}, [0], [90])
    store.add("req", {"job": "api", "code": "500"}, [0], [10])
    store.add("total", {"job": "api"}, [0], [100])
    got = vec(store, "req / on(job) group_left total", 1)
    assert got == {(("code", "200"), ("job", "api")): 0.9, (("code", "500"), ("job", "api")): 0.1}
    got = vec(store, "total / on(job) group_right req", 1)
    assert got == {(("code", "200"), ("job", "api")): 100 / 90, (("code", "500"), ("job", "api")): 10}


def test_many_to_many_without_group_is_an_error(store) -> None:
    store.add("req", {"job": "api", "code": "200"}, [0], [90])
    store.add("req", {"job": "api", "code": "500"}, [0], [10])
    store.add("total", {"job": "api"}, [0], [100])
    with pytest.raises(QueryExecutionError, match="many-to-one matching must be explicit"):
        instant_query(store, "req / on(job) total", S)
    with pytest.raises(QueryExecutionError, match="duplicate series"):
        instant_query(store, "total / on(job) req", S)


def test_matching_is_per_step(store) -> None:
    """Two right-hand series with the same signature are fine when never present together."""
    store.add("r", {"job": "a", "v": "1"}, [0], [1])
    store.add("r", {"job": "a", "v": "2"}, [600], [2])
    store.add("l", {"job": "a"}, [0, 300, 600, 900], [10, 10, 10, 10])
    got = series(store, "l * on(job) r", 0, 900, 300)
    assert got == {(("job", "a"),): [(0, 10), (300, 10), (600, 20), (900, 20)]}


def test_and_or_unless(hosts) -> None:
    assert host_map(vec(hosts, "cpu and on(host) up", 1)) == {"a": 10, "b": 20}
    assert host_map(vec(hosts, "cpu unless on(host) up", 1)) == {"c": 30}
    got = vec(hosts, "up or on(host) cpu", 1)
    assert sorted((dict(k)["__name__"], dict(k)["host"]) for k in got) == [("cpu", "c"), ("up", "a"), ("up", "b")]
    assert vec(hosts, "cpu and nothing", 1) == {}
    assert len(vec(hosts, "nothing or cpu", 1)) == 3


def test_atan2_keeps_the_name_like_prometheus_2(hosts) -> None:
    got = vec(hosts, "cpu atan2 ignoring(dc) cpu", 1)
    assert all(v == pytest.approx(math.pi / 4) for v in got.values())
    assert all(dict(k).get("__name__") == "cpu" for k in got)


def test_unary_minus(hosts) -> None:
    assert host_map(vec(hosts, "-cpu", 1)) == {"a": -10, "b": -20, "c": -30}
    assert one(hosts, "-(1 + 1)", 1) == -2


def test_same_labelset_after_arithmetic_is_an_error(store) -> None:
    store.add("a", {"k": "1"}, [0], [1])
    store.add("b", {"k": "1"}, [0], [2])
    with pytest.raises(QueryExecutionError, match="same labelset"):
        instant_query(store, '{__name__=~"a|b"} * 2', S)
