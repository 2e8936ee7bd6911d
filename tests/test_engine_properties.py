"""Property tests: the engine answers exactly what a naive reference model answers.

Small chunk sizes, few timestamps and few series force every storage path: out-of-order
writes, duplicates (last write wins), heads overlapping sealed chunks, chunk rewrites,
several shards, pre-aggregate fast paths next to decoded edges.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import NS, RefDB

from tsdb import TSDB, Batch, InvalidTimestampError, Matcher
from tsdb.labels import make_labelset

METRICS = ["a", "b"]
HOSTS = ["x", "y", ""]
AGGS = ["sum", "avg", "min", "max", "count", "first", "last", "stddev", "stdvar", "increase", "rate", "quantile"]

value_st = st.integers(-400, 400).map(lambda x: x / 4)
write_st = st.tuples(
    st.sampled_from(METRICS), st.sampled_from(HOSTS), st.sampled_from(["1", "2"]), st.integers(0, 60), value_st
)
matcher_st = st.lists(
    st.one_of(
        st.tuples(
            st.just("__name__"), st.sampled_from(["=", "!=", "=~", "!~"]), st.sampled_from(["a", "b", "a|b", "c", ".*"])
        ),
        st.tuples(
            st.just("host"),
            st.sampled_from(["=", "!=", "=~", "!~"]),
            st.sampled_from(["x", "y", "", "x|y", ".+", "x.*"]),
        ),
        st.tuples(st.just("dc"), st.sampled_from(["=", "!="]), st.sampled_from(["1", "2"])),
    ),
    min_size=1,
    max_size=3,
)


def _load(db: TSDB, ref: RefDB, writes, batched: bool) -> None:
    if not batched:
        for metric, host, dc, t, v in writes:
            labels = {"host": host, "dc": dc}
            db.write(metric, t, v, labels=labels)
            ref.write(metric, labels, t * NS, v)
        return
    # Same rows as columnar batches, keeping arrival order inside a series: one batch per
    # series (dense, column path), or, for an odd number of rows, all rows in one batch of
    # many series (sparse, row-by-row path).
    by_series: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for metric, host, dc, t, v in writes:
        by_series.setdefault((metric, host, dc), []).append((t, v))
        ref.write(metric, {"host": host, "dc": dc}, t * NS, v)
    if len(writes) % 2:
        keys = list(by_series)
        series = [(m, make_labelset({"host": h, "dc": d})) for m, h, d in keys]
        where = {k: i for i, k in enumerate(keys)}
        idx = np.array([where[(m, h, d)] for m, h, d, _, _ in writes], dtype=np.int64)
        ts = np.array([t for *_, t, _ in writes], dtype=np.int64) * NS
        db.write_batch(Batch(series, idx, ts, np.array([v for *_, v in writes])))
        return
    for (metric, host, dc), rows in by_series.items():
        db.write_columns(metric, [r[0] for r in rows], [r[1] for r in rows], labels={"host": host, "dc": dc})


def _group_key(series, group_by):
    d = dict(series.labels)
    if series.metric is not None:
        d["__name__"] = series.metric
    if group_by is None:
        return (("__name__", series.metric), *sorted(series.labels.items()))
    return tuple((n, d.get(n, "")) for n in group_by)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _check_raw(db: TSDB, ref: RefDB, matchers, start: int, end: int) -> None:
    got = db.select([Matcher(*m) for m in matchers], start, end)
    want = ref.raw(matchers, start * NS, end * NS)
    assert [(s.metric, tuple(sorted(s.labels.items()))) for s in got.series] == [k for k, _ in want]
    for s, (_, pts) in zip(got.series, want, strict=True):
        assert s.timestamps.tolist() == [t for t, _ in pts]
        assert s.values.tolist() == [v for _, v in pts]


def _check_agg(db: TSDB, ref: RefDB, matchers, start, end, agg, width, group_by, q=0.5) -> None:
    got = db.select(
        [Matcher(*m) for m in matchers],
        start,
        end,
        agg=agg,
        q=q if agg == "quantile" else None,
        downsample=width,
        group_by=group_by,
    )
    want = ref.aggregate(matchers, start * NS, end * NS, agg, None if width is None else width * NS, group_by, q)
    got_map = {
        _group_key(s, group_by): list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True)) for s in got.series
    }
    assert set(got_map) == set(want), (agg, width, group_by)
    for key, rows in want.items():
        grows = got_map[key]
        assert [b for b, _ in grows] == [b for b, _ in rows], (agg, key)
        for (_, gv), (_, wv) in zip(grows, rows, strict=True):
            assert _close(gv, wv), (agg, width, group_by, key, gv, wv)


@given(
    writes=st.lists(write_st, min_size=1, max_size=80),
    more=st.lists(write_st, max_size=40),
    chunk_size=st.integers(2, 6),
    shards=st.integers(1, 3),
    batched=st.booleans(),
    matchers=matcher_st,
    bounds=st.tuples(st.integers(-5, 65), st.integers(-5, 65)).map(sorted),
)
def test_raw_reads_match_reference(writes, more, chunk_size, shards, batched, matchers, bounds) -> None:
    db, ref = TSDB(chunk_size=chunk_size, num_shards=shards), RefDB()
    _load(db, ref, writes, batched)
    _check_raw(db, ref, matchers, *bounds)
    _load(db, ref, more, not batched)
    _check_raw(db, ref, matchers, *bounds)


@given(
    writes=st.lists(write_st, min_size=1, max_size=80),
    more=st.lists(write_st, max_size=30),
    chunk_size=st.integers(2, 6),
    shards=st.integers(1, 3),
    batched=st.booleans(),
    matchers=matcher_st,
    bounds=st.tuples(st.integers(-5, 65), st.integers(-5, 65)).map(sorted),
    agg=st.sampled_from(AGGS),
    width=st.sampled_from([None, 1, 3, 7, 60]),
    group_by=st.sampled_from([None, [], ["host"], ["__name__"], ["dc", "host"]]),
    q=st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]),
)
def test_aggregations_match_reference(
    writes, more, chunk_size, shards, batched, matchers, bounds, agg, width, group_by, q
) -> None:
    db, ref = TSDB(chunk_size=chunk_size, num_shards=shards), RefDB()
    _load(db, ref, writes, batched)
    _check_agg(db, ref, matchers, *bounds, agg, width, group_by, q)
    _load(db, ref, more, batched)
    db.run_maintenance()  # recompression must not change any answer
    _check_agg(db, ref, matchers, *bounds, agg, width, group_by, q)


@given(
    writes=st.lists(write_st, min_size=1, max_size=60),
    chunk_size=st.integers(2, 5),
    matchers=matcher_st,
    dbounds=st.one_of(st.none(), st.tuples(st.integers(0, 60), st.integers(0, 60)).map(sorted)),
)
def test_delete_matches_reference(writes, chunk_size, matchers, dbounds) -> None:
    db, ref = TSDB(chunk_size=chunk_size, num_shards=2), RefDB()
    _load(db, ref, writes, batched=False)
    start, end = (None, None) if dbounds is None else dbounds
    got = db.delete([Matcher(*m) for m in matchers], start, end)
    want = ref.delete(matchers, None if start is None else start * NS, None if end is None else end * NS)
    assert got == want
    _check_raw(db, ref, [("__name__", "=~", ".*")], -10, 100)
    assert db.num_series() == len(ref.data)


@given(
    steps=st.lists(st.tuples(st.integers(0, 300), value_st), min_size=1, max_size=120),
    retention=st.integers(1, 60),
    chunk_size=st.integers(2, 6),
)
def test_retention_matches_reference(steps, retention, chunk_size) -> None:
    """Writes older than newest - retention are refused; queries see exactly the window."""
    db = TSDB(chunk_size=chunk_size, retention_seconds=retention, num_shards=2)
    ref = RefDB()
    newest = None
    for t, v in steps:
        if newest is not None and t < max(newest, t) - retention:
            with pytest.raises(InvalidTimestampError, match="retention"):
                db.write("m", t, v)
            continue
        db.write("m", t, v)
        ref.write("m", {}, t * NS, v)
        newest = t if newest is None else max(newest, t)
        if len(ref.data[("m", ())]) % 7 == 0:
            db.run_maintenance()
    db.run_maintenance()
    cutoff = newest - retention
    got = db.query("m", -1000, 1000)
    want = [(t // NS, v) for t, v in sorted(ref.data[("m", ())].items()) if t >= cutoff * NS]
    assert got == want
    # Whole chunks only: what maintenance dropped is entirely older than the cutoff.
    stats = db.stats()
    assert stats["sealed_samples"] + stats["head_samples"] >= len(want)


def test_downsample_buckets_are_aligned_to_the_epoch() -> None:
    db = TSDB()
    db.write_columns("m", np.arange(65, 185), np.ones(120))
    got = db.query("m", 65, 184, agg="count", downsample=60)
    assert got == [(60, 55.0), (120, 60.0), (180, 5.0)]


def test_negative_timestamps_bucket_with_floor_division() -> None:
    db = TSDB()
    db.write_columns("m", [-61, -60, -1, 0], [1.0, 2.0, 3.0, 4.0])
    assert db.query("m", -100, 10, agg="sum", downsample=60) == [(-120, 1.0), (-60, 5.0), (0, 4.0)]
