"""The embedded API: shapes of answers, validation, limits, stats, pandas, threads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

import tsdb
from tsdb import (
    TSDB,
    Batch,
    InvalidNameError,
    InvalidQueryError,
    InvalidTimestampError,
    InvalidValueError,
    LimitExceededError,
)
from tsdb.labels import make_labelset

T0 = 1_700_000_000


def test_public_api_is_pinned() -> None:
    assert sorted(tsdb.__all__) == [
        "Batch", "CorruptionError", "DataDirLockedError", "DiskFullError", "EngineSettings", "InvalidInputError",
        "InvalidNameError", "InvalidQueryError", "InvalidTimestampError", "InvalidValueError", "LimitExceededError",
        "Limits", "MatchOp", "Matcher", "Querier", "QueryResult", "SeriesData", "SeriesResult", "StorageError",
        "TSDB", "TSDBError", "UnsupportedError", "WriteResult",
    ]  # fmt: skip


def test_embedded_defaults() -> None:
    db = TSDB()
    assert (db.settings.chunk_size, db.settings.retention_seconds, db.settings.num_shards) == (500, 0, 4)


def test_query_shapes() -> None:
    db = TSDB()
    for i in range(10):
        db.write("cpu", T0 + i * 30, float(i), labels={"host": "a"})
    assert db.query("cpu", T0, T0 + 60) == [(T0, 0.0), (T0 + 30, 1.0), (T0 + 60, 2.0)]
    assert db.query("cpu", T0, T0 + 60, agg="sum") == 3.0
    assert db.query("cpu", T0, T0 + 299, agg="avg", downsample=60) == [
        (T0 - 20, 0.5),  # 1700000000 is 20 s past a minute boundary: buckets start at :40
        (T0 + 40, 2.5),
        (T0 + 100, 4.5),
        (T0 + 160, 6.5),
        (T0 + 220, 8.5),
    ]
    assert db.query("cpu", T0 + 1000, T0 + 2000) == []
    assert db.query("cpu", T0 + 1000, T0 + 2000, agg="avg") is None
    assert db.query("nothing", agg="sum") is None
    assert db.query("cpu", labels={"host": "b"}) == []


def test_out_of_order_and_duplicates_last_write_wins() -> None:
    db = TSDB(chunk_size=3)
    for t, v in [(5, 5.0), (1, 1.0), (3, 3.0), (2, 2.0), (3, 30.0), (4, 4.0), (1, 10.0)]:
        db.write("m", T0 + t, v)
    assert db.query("m") == [(T0 + 1, 10.0), (T0 + 2, 2.0), (T0 + 3, 30.0), (T0 + 4, 4.0), (T0 + 5, 5.0)]


def test_invalid_writes_store_nothing() -> None:
    db = TSDB()
    for call, err in [
        (lambda: db.write("9bad", T0, 1.0), InvalidNameError),
        (lambda: db.write("m", T0, True), InvalidValueError),
        (lambda: db.write("m", T0, float("nan")), InvalidValueError),
        (lambda: db.write("m", T0, "1"), InvalidValueError),
        (lambda: db.write("m", "not a time", 1.0), InvalidTimestampError),
        (lambda: db.write("m", T0, 1.0, labels={"bad-name": "x"}), InvalidNameError),
        (lambda: db.write_columns("m", [T0, T0 + 1], [1.0, float("inf")]), InvalidValueError),
        (lambda: db.write_columns("m", [T0, T0 + 1], [1.0]), tsdb.InvalidInputError),
    ]:
        with pytest.raises(err):
            call()
    assert db.stats()["head_samples"] == 0


def test_far_future_samples_are_refused() -> None:
    db = TSDB(future_tolerance_seconds=60)
    now = datetime.now(tz=UTC).timestamp()
    db.write("m", now + 30, 1.0)
    with pytest.raises(InvalidTimestampError, match="in the future"):
        db.write("m", now + 3600, 1.0)
    with pytest.raises(InvalidTimestampError, match="in the future"):
        db.write_columns("m", [now, now + 3600], [1.0, 2.0])
    assert db.query("m", agg="count") == 1.0


def test_partial_batches_report_rejected_rows() -> None:
    db = TSDB(retention_seconds=10)
    db.write("m", T0 + 100, 1.0)
    batch = Batch(
        [("m", ())], np.zeros(3, np.int64), np.array([T0 + 101, T0, T0 + 102]) * 10**9, np.array([1.0, 2.0, 3.0])
    )
    with pytest.raises(InvalidTimestampError, match="retention"):
        db.write_batch(batch)
    result = db.write_batch(batch, partial=True)
    assert (result.accepted, result.rejected) == (2, 1)
    assert "retention" in result.errors[0]
    assert db.query("m", agg="count") == 3.0


def test_series_limit_refuses_new_series_only() -> None:
    db = TSDB(max_series=2)
    db.write("a", T0, 1.0)
    db.write("b", T0, 1.0)
    with pytest.raises(LimitExceededError, match="series limit"):
        db.write("c", T0, 1.0)
    db.write("a", T0 + 1, 2.0)
    assert db.num_series() == 2


def test_point_limit_explains_how_to_narrow() -> None:
    db = TSDB(max_points=5)
    db.write_columns("m", np.arange(T0, T0 + 10), np.arange(10.0))
    with pytest.raises(LimitExceededError, match="narrow the time range"):
        db.select("m")
    assert len(db.select("m", agg="avg").series) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"agg": "median"}, "unknown aggregation"),
        ({"start": T0 + 10, "end": T0}, "after end"),
        ({"downsample": 0}, "positive"),
        ({"downsample": "-5m"}, "downsample"),
        ({"agg": "quantile(1.5)"}, r"\[0, 1\]"),
        ({"agg": "avg", "downsample": 60, "fill": "nearest"}, "unknown fill"),
    ],
)
def test_query_errors(kwargs: dict, match: str) -> None:
    db = TSDB()
    db.write("m", T0, 1.0)
    with pytest.raises(InvalidQueryError, match=match):
        db.select("m", **kwargs)


def test_select_groups_and_fill() -> None:
    db = TSDB()
    for host, base in [("a", 1.0), ("b", 10.0)]:
        db.write_columns("cpu", [T0 - 20, T0 + 100], [base, base + 1], labels={"host": host, "dc": "x"})
    per_series = db.select('cpu{dc="x"}', agg="max")
    assert [(s.labels["host"], s.value) for s in per_series.series] == [("a", 2.0), ("b", 11.0)]
    total = db.select("cpu", agg="sum", group_by=[])
    assert total.series[0].value == 24.0 and total.series[0].labels == {}
    by_dc = db.select("cpu", T0 - 20, T0 + 100, agg="avg", group_by=["dc"], downsample=60, fill="null")
    assert by_dc.series[0].labels == {"dc": "x"}
    assert by_dc.series[0].points() == [(T0 - 20, 5.5), (T0 + 40, None), (T0 + 100, 6.5)]
    prev = db.select("cpu", T0 - 20, T0 + 100, agg="avg", group_by=[], downsample=60, fill="previous")
    assert prev.series[0].values.tolist() == [5.5, 5.5, 6.5]
    zero = db.select("cpu", T0 - 20, T0 + 100, agg="avg", group_by=[], downsample=60, fill=0)
    assert zero.series[0].values.tolist() == [5.5, 0.0, 6.5]


def test_rate_and_increase_handle_counter_resets() -> None:
    db = TSDB()
    db.write_columns("c", [T0, T0 + 10, T0 + 20, T0 + 30], [10.0, 20.0, 5.0, 15.0])
    assert db.query("c", T0, T0 + 30, agg="increase") == 10 + 5 + 10
    assert db.query("c", T0, T0 + 30, agg="rate") == pytest.approx(25 / 30)


def test_quantile_spellings() -> None:
    db = TSDB()
    db.write_columns("m", np.arange(T0, T0 + 101), np.arange(101.0))
    assert db.query("m", agg="quantile(0.9)") == 90.0
    assert db.query("m", agg="p99") == 99.0
    assert db.select("m", agg="quantile", q=0.5).series[0].value == 50.0


def test_label_listings() -> None:
    db = TSDB()
    db.write("cpu", T0, 1.0, labels={"host": "a"})
    db.write("mem", T0, 1.0, labels={"dc": "x"})
    assert db.label_names() == ["__name__", "dc", "host"]
    assert db.label_values("__name__") == ["cpu", "mem"]
    assert db.series('{__name__=~"c.*"}') == [("cpu", {"host": "a"})]


def test_dataframes_in_and_out() -> None:
    db = TSDB()
    idx = pd.date_range("2025-05-14T09:00:00Z", periods=4, freq="1min")
    df = pd.DataFrame({"temp": [1.0, 2.0, 3.0, 4.0], "room": ["a", "a", "b", "b"]}, index=idx)
    assert db.write_dataframe(df, "sensor", label_columns=["room"]) == 4
    out = db.select("sensor").to_pandas()
    assert list(out.columns) == ["time", "value", "metric", "room"]
    assert out["value"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert out["time"].iloc[0] == pd.Timestamp("2025-05-14T09:00:00Z")


def test_stats_count_heads_chunks_and_bytes() -> None:
    db = TSDB(chunk_size=100, num_shards=2)
    db.write_columns("m", np.arange(T0, T0 + 250), np.ones(250))
    stats = db.stats()
    assert (stats["series"], stats["sealed_samples"], stats["head_samples"], stats["chunks"]) == (1, 200, 50, 2)
    assert stats["compressed_bytes"] > 0 and len(stats["shards"]) == 2
    assert sum(s["series"] for s in stats["shards"]) == 1


def test_heads_do_not_preallocate_chunk_size_slots() -> None:
    db = TSDB(chunk_size=100_000)
    db.write("m", T0, 1.0)
    series = (
        db.shards[0].all_series() + db.shards[1].all_series() + db.shards[2].all_series() + db.shards[3].all_series()
    )
    assert series[0].head_ts.buffer_info()[1] < 100


def test_concurrent_writers_lose_nothing() -> None:
    db = TSDB(chunk_size=50)
    n_threads, per_thread = 8, 2000
    barrier = threading.Barrier(n_threads)

    def writer(k: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            # Every thread writes a shared new series and one of its own, interleaved.
            db.write("shared", T0 + k * per_thread + i, float(k))
            db.write("own", T0 + i, float(i), labels={"t": str(k)})

    def reader() -> None:
        for _ in range(50):
            db.select('{__name__=~".+"}', agg="count")

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(n_threads)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.query("shared", agg="count") == n_threads * per_thread
    for k in range(n_threads):
        pts = db.query("own", labels={"t": str(k)})
        assert pts == [(T0 + i, float(i)) for i in range(per_thread)]
    assert db.num_series() == n_threads + 1


def test_batch_with_many_series_routes_rows() -> None:
    db = TSDB(chunk_size=4)
    series = [("m", make_labelset({"s": str(i)})) for i in range(5)]
    idx = np.array([0, 1, 2, 3, 4] * 6)
    ts = (T0 + np.repeat(np.arange(6), 5)) * 10**9
    db.write_batch(Batch(series, idx, ts, idx.astype(float)))
    for i in range(5):
        assert db.query("m", labels={"s": str(i)}, agg="sum") == 6.0 * i


def test_staleness_markers_are_kept_raw_but_excluded_from_aggregations() -> None:
    from tsdb._types import STALE_NAN

    db = TSDB(chunk_size=3)
    ts = (T0 + np.arange(6)) * 10**9
    vals = np.array([1.0, 2.0, STALE_NAN, 4.0, STALE_NAN, 6.0])
    db.write_batch(Batch([("m", ())], np.zeros(6, np.int64), ts, vals))
    assert db.query("m", agg="count") == 4.0 and db.query("m", agg="sum") == 13.0
    raw = db.select_raw([tsdb.Matcher.eq("__name__", "m")], 0, 2 * T0 * 10**9)[0]
    assert len(raw.values) == 6 and np.isnan(raw.values[2])
    assert db.query("m") == [(T0, 1.0), (T0 + 1, 2.0), (T0 + 3, 4.0), (T0 + 5, 6.0)]


def test_refused_sample_leaves_no_new_series() -> None:
    db = TSDB(retention_seconds=10)
    db.write("m", T0 + 100, 1.0)
    with pytest.raises(InvalidTimestampError):
        db.write("new_metric", T0, 1.0)
    assert db.num_series() == 1
