"""Core engine benchmark: one table of tsdb against a naive list-of-tuples store and pandas.

Run: ``python -m bench.bench_core`` (``--quick`` for a smaller, faster run). Each memory
figure is measured in a fresh subprocess so one measurement cannot inflate another.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.data import NS, T0_S, noisy_gauge, smooth, timestamps_ns
from bench.table import print_table
from tsdb import TSDB


def best_of(fn: Callable[[], Any], repeat: int = 5) -> float:
    """Best wall time of ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- measurements that run in a subprocess (memory) ------------------------------------


def _mem_samples(n_series: int, per_series: int) -> dict[str, float]:
    db = TSDB(future_tolerance_seconds=None)
    gc.collect()
    before = rss_bytes()
    ts = timestamps_ns(per_series)
    for i in range(n_series):
        db.write_columns("gauge", ts, noisy_gauge(per_series, seed=i), {"host": f"h{i}"}, unit="ns")
    while db.run_maintenance()["recompressed_chunks"]:
        pass
    gc.collect()
    total = n_series * per_series
    stats = db.stats()
    return {
        "rss_per_sample": (rss_bytes() - before) / total,
        "sealed_bytes_per_sample": stats["bytes_per_sealed_sample"],
    }


def _mem_series(n_series: int) -> dict[str, float]:
    db = TSDB(future_tolerance_seconds=None)
    gc.collect()
    before = rss_bytes()
    for i in range(n_series):
        db.write("node_cpu", T0_S, 0.5, labels={"host": f"host-{i:06d}", "dc": f"dc{i % 8}", "job": "node"})
    gc.collect()
    return {"rss_per_series": (rss_bytes() - before) / n_series}


def _naive_mem(n: int) -> dict[str, float]:
    gc.collect()
    before = rss_bytes()
    store: dict[str, list[tuple[float, float]]] = {"gauge": []}
    ts = (timestamps_ns(n) / NS).tolist()
    vals = noisy_gauge(n).tolist()
    del_before = rss_bytes()
    lst = store["gauge"]
    for t, v in zip(ts, vals, strict=True):
        lst.append((t, v))
    gc.collect()
    return {"rss_per_sample": (rss_bytes() - del_before) / n, "_": before}


def in_subprocess(func: str, *args: int) -> dict[str, float]:
    code = f"import json; from bench.bench_core import {func} as f; print(json.dumps(f(*{args!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- measurements in this process ------------------------------------------------------


def bench_single_writes(n: int) -> tuple[float, float]:
    db = TSDB(future_tolerance_seconds=None)
    labels = {"host": "a"}
    db.write("cpu", T0_S, 0.0, labels)
    write = db.write
    t = time.perf_counter()
    for i in range(n):
        write("cpu", T0_S + i, 0.5, labels)
    tsdb_rate = n / (time.perf_counter() - t)
    store: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
    t = time.perf_counter()
    for i in range(n):  # the original's write: look the series up, append a tuple
        store.setdefault(("cpu", tuple(sorted(labels.items()))), []).append((T0_S + i, 0.5))
    return tsdb_rate, n / (time.perf_counter() - t)


def bench_batch_writes(n_series: int, per_series: int, rounds: int) -> float:
    """Columnar writes of ``per_series`` samples into each of ``n_series`` series per round."""
    db = TSDB(future_tolerance_seconds=None)
    vals = [noisy_gauge(per_series * rounds, seed=i) for i in range(n_series)]
    ts_all = timestamps_ns(per_series * rounds)
    from tsdb._types import Batch
    from tsdb.labels import make_labelset

    series = [("gauge", make_labelset({"host": f"h{i}"})) for i in range(n_series)]
    idx = np.repeat(np.arange(n_series, dtype=np.int64), per_series)
    batches = []
    for r in range(rounds):
        sl = slice(r * per_series, (r + 1) * per_series)
        ts = np.tile(ts_all[sl], n_series)
        v = np.concatenate([vv[sl] for vv in vals])
        batches.append(Batch(series, idx, ts, v))
    t = time.perf_counter()
    for b in batches:
        db.write_batch(b)
    return n_series * per_series * rounds / (time.perf_counter() - t)


def compression_table() -> dict[str, float]:
    out = {}
    n = 100_000
    cases = {
        "noisy gauge (jittered ts)": (timestamps_ns(n), noisy_gauge(n)),
        "smooth (exact 1 s ts)": (timestamps_ns(n, jitter_ms=0), smooth(n)),
        "smooth (jittered ts)": (timestamps_ns(n), smooth(n)),
        "constant (exact 1 s ts)": (timestamps_ns(n, jitter_ms=0), np.full(n, 42.0)),
    }
    for name, (ts, vals) in cases.items():
        db = TSDB(future_tolerance_seconds=None)
        db.write_columns("m", ts, vals, unit="ns")
        fast = db.stats()["bytes_per_sealed_sample"]
        while db.run_maintenance()["recompressed_chunks"]:
            pass
        out[name] = (fast, db.stats()["bytes_per_sealed_sample"])
    return out


def query_benchmarks(n_big: int, n_ds: int) -> dict[str, tuple[float, float | None, float | None]]:
    """name -> (tsdb seconds, naive seconds or None, pandas seconds or None)."""
    import pandas as pd

    res: dict[str, tuple[float, float | None, float | None]] = {}
    db = TSDB(future_tolerance_seconds=None)
    ts = timestamps_ns(n_big)
    vals = noisy_gauge(n_big)
    db.write_columns("big", ts, vals, unit="ns")
    while db.run_maintenance()["recompressed_chunks"]:
        pass
    start, end = int(ts[0]) // NS - 1, int(ts[-1]) // NS + 1
    naive = list(zip((ts[:n_ds] / NS).tolist(), vals[:n_ds].tolist(), strict=True))
    for agg in ("sum", "avg", "min", "max"):
        t = best_of(lambda agg=agg: db.query("big", start, end, agg=agg))
        scale = n_big / n_ds  # the naive store is timed on n_ds samples and scaled
        tn = best_of(lambda: sum(v for t_, v in naive if start <= t_ <= end), 2) * scale if agg == "sum" else None
        res[f"{agg} over {n_big / 1e6:g}M samples"] = (t, tn, None)
    db2 = TSDB(future_tolerance_seconds=None)
    db2.write_columns("ds", ts[:n_ds], vals[:n_ds], unit="ns")
    while db2.run_maintenance()["recompressed_chunks"]:
        pass
    e2 = int(ts[n_ds - 1]) // NS + 1
    t = best_of(lambda: db2.query("ds", start, e2, agg="avg", downsample=60), 3)
    frame = pd.Series(vals[:n_ds], index=pd.to_datetime(ts[:n_ds], unit="ns"))
    tp = best_of(lambda: frame.resample("60s").mean(), 3)

    def naive_ds() -> None:
        buckets: dict[int, list[float]] = {}
        for t_, v in naive:
            buckets.setdefault(int(t_ // 60) * 60, []).append(v)
        {b: sum(x) / len(x) for b, x in buckets.items()}

    res[f"1-min avg downsample of {n_ds / 1e6:g}M"] = (t, best_of(naive_ds, 2), tp)
    from tsdb.storage.decoded_cache import cache

    budget = cache.max_bytes
    cache.configure(0)  # cold: every chunk decompressed
    t = best_of(lambda: db2.select("ds", start, e2).series[0].values, 3)
    t_naive = best_of(lambda: [p for p in naive if start <= p[0] <= e2], 2)
    res[f"raw read of {n_ds / 1e6:g}M into numpy, cold"] = (t, t_naive, None)
    cache.configure(budget)
    t = best_of(lambda: db2.select("ds", start, e2).series[0].values, 3)
    res[f"raw read of {n_ds / 1e6:g}M into numpy, decoded cache"] = (t, None, None)
    return res


def bench_select_one(n_series: int) -> float:
    db = TSDB(future_tolerance_seconds=None)
    for i in range(n_series):
        db.write("node_cpu", T0_S, 0.5, labels={"host": f"host-{i:06d}", "dc": f"dc{i % 8}", "job": "node"})
    from tsdb.labels import Matcher

    matchers = [Matcher.eq("__name__", "node_cpu"), Matcher.eq("host", "host-004242"), Matcher.eq("dc", "dc2")]
    return best_of(lambda: db.select_series(matchers), 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (for a smoke run)")
    args = parser.parse_args()
    q = args.quick
    big = 1_000_000 if q else 10_000_000
    ds = 200_000 if q else 1_000_000
    nseries = 10_000 if q else 100_000
    rows: list[tuple[str, str, str, str, str]] = []

    w, wn = bench_single_writes(200_000 if q else 1_000_000)
    rows.append(("write() single point, existing series", f"{w:,.0f}/s", f"{wn:,.0f}/s", "", ">= 1,000,000/s"))
    bw = bench_batch_writes(1000, 500, 2 if q else 6)
    rows.append(("columnar batch write, 1,000 series, sealing", f"{bw:,.0f}/s", "", "", ">= 3,000,000/s"))
    for name, (fast, strong) in compression_table().items():
        target = "<= 2.0" if name.startswith("noisy") else "<= 1.0"
        rows.append((f"sealed bytes/sample: {name}", f"{strong:.2f} (seal: {fast:.2f})", "16 (2 float64)", "", target))
    mem = in_subprocess("_mem_samples", 100 if q else 1000, 10_000)
    naive_mem = in_subprocess("_naive_mem", 1_000_000)
    rows.append(
        (
            f"RSS growth per sample at {(100 if q else 1000) * 10_000 / 1e6:g}M samples",
            f"{mem['rss_per_sample']:.2f} B",
            f"{naive_mem['rss_per_sample']:.0f} B",
            "",
            "<= 3 B",
        )
    )
    ms = in_subprocess("_mem_series", nseries)
    rows.append((f"RSS per series at {nseries:,} series", f"{ms['rss_per_series']:.0f} B", "", "", "<= 1024 B"))
    for name, (t, tn, tp) in query_benchmarks(big, ds).items():
        target = {"sum": "<= 5 ms", "avg": "<= 5 ms", "min": "<= 5 ms", "max": "<= 5 ms"}.get(name.split()[0], "")
        if name.startswith("1-min"):
            target = "<= 100 ms"
        if name.startswith("raw read"):
            target = "<= 50 ms"
        rows.append(
            (
                name,
                f"{t * 1e3:.2f} ms",
                "" if tn is None else f"{tn * 1e3:.0f} ms",
                "" if tp is None else f"{tp * 1e3:.1f} ms",
                target,
            )
        )
    sel = bench_select_one(nseries)
    rows.append((f"select 1 series of {nseries:,} by 3 labels", f"{sel * 1e3:.3f} ms", "", "", "<= 1 ms"))

    print_table(("measurement", "tsdb", "naive list", "pandas", "target"), rows)


if __name__ == "__main__":
    main()
