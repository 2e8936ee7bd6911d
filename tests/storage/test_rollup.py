"""Rollup tiers answer exactly what raw data answers, late data and raw expiry included."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import NS, RefDB

from tsdb import TSDB, InvalidInputError, Matcher
from tsdb.storage.rollup import parse_rollups

EXACT = ["sum", "avg", "min", "max", "count", "first", "last", "increase", "rate"]
value_st = st.integers(-400, 400).map(lambda x: x / 4)


def _compare(result, want) -> None:
    got = {
        (("__name__", s.metric), *sorted(s.labels.items())) if s.metric else tuple(sorted(s.labels.items())): list(
            zip(s.timestamps.tolist(), s.values.tolist(), strict=True)
        )
        for s in result.series
    }
    assert set(got) == set(want)
    for key, rows in want.items():
        assert [b for b, _ in got[key]] == [b for b, _ in rows]
        for (_, g), (_, w) in zip(got[key], rows, strict=True):
            assert math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-9), (key, g, w)


@given(
    writes=st.lists(st.tuples(st.sampled_from(["x", "y"]), st.integers(0, 90), value_st), min_size=1, max_size=120),
    chunk_size=st.integers(2, 6),
    agg=st.sampled_from(EXACT),
    width=st.sampled_from([3, 6, 12, 30]),
    bounds=st.tuples(st.integers(-5, 95), st.integers(-5, 95)).map(sorted),
    group_all=st.booleans(),
)
def test_tier_answers_equal_raw_answers(writes, chunk_size, agg, width, bounds, group_all) -> None:
    db = TSDB(chunk_size=chunk_size, num_shards=2, rollups="3s:1000d,6s:1000d")
    ref = RefDB()
    for host, t, v in writes:  # arbitrary order, duplicates: late writes rewrite sealed chunks
        db.write("m", t, v, labels={"host": host})
        ref.write("m", {"host": host}, t * NS, v)
    group_by = [] if group_all else None
    result = db.select("m", *bounds, agg=agg, downsample=width, group_by=group_by)
    assert result.resolution == ("6s" if width % 6 == 0 else "3s")
    want = ref.aggregate([("__name__", "=", "m")], bounds[0] * NS, bounds[1] * NS, agg, width * NS, group_by)
    _compare(result, want)


@given(
    steps=st.lists(st.tuples(st.integers(0, 400), value_st), min_size=1, max_size=150, unique_by=lambda s: s[0]),
    agg=st.sampled_from(EXACT),
    width=st.sampled_from([10, 20, 60]),
)
def test_history_outlives_raw_retention(steps, agg, width) -> None:
    """Raw keeps 30 s; a 10 s tier keeps everything; whole-bucket queries stay exact."""
    db = TSDB(chunk_size=4, retention_seconds=30, num_shards=2, rollups="10s:100d")
    ref = RefDB()
    newest = None
    for i, (t, v) in enumerate(steps):
        if newest is not None and t < newest - 30:
            continue  # refused by the engine (too old): the model never sees it
        db.write("m", t, v)
        ref.write("m", {}, t * NS, v)
        newest = t if newest is None else max(newest, t)
        if i % 9 == 0:
            db.run_maintenance()
    db.run_maintenance()
    end = ((newest // width) + 1) * width - 1  # whole buckets only
    result = db.select("m", 0, end, agg=agg, downsample=width)
    assert result.resolution == "10s"
    _compare(result, ref.aggregate([("__name__", "=", "m")], 0, end * NS + NS - 1, agg, width * NS, None))
    raw = db.select("m", 0, end)
    assert all(t >= (newest - 30) * NS for s in raw.series for t in s.timestamps.tolist())


def test_whole_range_aggregate_reaches_past_raw_retention() -> None:
    db = TSDB(chunk_size=10, retention_seconds=60, rollups="1m:30d")
    for t in range(0, 3600, 5):
        db.write("m", t, 1.0)
    db.run_maintenance()
    result = db.select("m", 0, 3599, agg="count")
    assert (result.resolution, result.series[0].value) == ("1m", 720.0)
    assert db.query("m", 0, 3599) == [(t, 1.0) for t in range(3535, 3600, 5)]  # raw: the last 60 s only


def test_tier_retention_and_stats() -> None:
    db = TSDB(chunk_size=10, rollups="1m:1h,1h:1d")
    for t in range(0, 7200, 10):
        db.write("m", t, 1.0)
    db.run_maintenance()
    tiers = {t["tier"]: t for t in db.stats()["tiers"]}
    assert tiers["1m"]["buckets"] <= 61 and tiers["1h"]["buckets"] == 2
    assert tiers["1m"]["bytes"] > 0


def test_unmatched_width_is_served_raw() -> None:
    db = TSDB(rollups="1m:1d")
    db.write_columns("m", list(range(0, 600)), [1.0] * 600)
    assert db.select("m", 0, 599, agg="sum", downsample=90).resolution == "raw"
    assert db.select("m", 0, 599, agg="quantile(0.5)", downsample=60).resolution == "raw"
    assert db.select("m", 0, 599, agg="sum", downsample=120).resolution == "1m"


@pytest.mark.parametrize("bad", ["1m", "1m:0s", "x:1d", "1m:1d,1m:2d", "0s:1d"])
def test_bad_rollup_settings(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="rollup"):
        parse_rollups(bad)


def test_delete_removes_tier_history() -> None:
    db = TSDB(chunk_size=5, rollups="10s:1d")
    db.write_columns("m", list(range(100)), [1.0] * 100)
    db.delete("m", 0, 49)
    assert db.select("m", 0, 99, agg="count", downsample=10).series[0].values.tolist() == [10.0] * 5
    db.delete([Matcher.eq("__name__", "m")])
    assert db.select("m", 0, 99, agg="count", downsample=10).series == []
