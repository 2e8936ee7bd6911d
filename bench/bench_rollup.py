"""Rollup benchmark: long-range downsampling from a tier against the same query from raw data.

20 series of 1 s data over 30 days (2.6M samples each), written as columns into one TSDB with
the server's default tiers (1m:30d, 1h:5y) and raw retention off, so both sources hold the
same data. Run: ``python -m bench.bench_rollup`` (``--quick``: 2 series over 3 days).
"""

from __future__ import annotations

import argparse
import time

from bench.bench_core import best_of
from bench.data import NS, T0_S, noisy_gauge, timestamps_ns
from bench.table import print_table
from tsdb import TSDB
from tsdb.query.aggregate import parse_agg
from tsdb.query.planner import QueryPlan, run_query
from tsdb.query.selector import parse_selector

DAY = 86400


def _plan(db: TSDB, start: int, end: int, agg: str, width_s: int, use_tiers: bool) -> QueryPlan:
    return QueryPlan(
        parse_selector("gauge"),
        start,
        end,
        parse_agg(agg),
        width_s * NS,
        [],
        None,
        None,
        tiers=db.tiers if use_tiers else (),
        newest=end,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_series, days = (2, 3) if args.quick else (20, 30)
    n = days * DAY
    db = TSDB(rollups="1m:30d,1h:5y", future_tolerance_seconds=None)
    ts = timestamps_ns(n, start_s=T0_S)
    t = time.perf_counter()
    for i in range(n_series):
        db.write_columns("gauge", ts, noisy_gauge(n, seed=i), {"host": f"h{i}"}, unit="ns")
    write_s = time.perf_counter() - t
    while db.run_maintenance()["recompressed_chunks"]:
        pass
    start, end = int(ts[0]), int(ts[-1])
    rows = [("write 1 s data with tiers", f"{n_series * n / write_s:,.0f} samples/s", "", "", "")]
    for agg, width in (("avg", 60), ("max", 3600)):
        tier_plan, raw_plan = _plan(db, start, end, agg, width, True), _plan(db, start, end, agg, width, False)
        tier_result = run_query(db.shards, tier_plan)
        raw_result = run_query(db.shards, raw_plan)
        assert tier_result.resolution != "raw" and raw_result.resolution == "raw"
        same = all(
            (a.values == b.values).all() or abs(a.values - b.values).max() < 1e-6
            for a, b in zip(tier_result.series, raw_result.series, strict=True)
        )
        t_tier = best_of(lambda p=tier_plan: run_query(db.shards, p), 5)
        t_raw = best_of(lambda p=raw_plan: run_query(db.shards, p), 2)
        rows.append(
            (
                f"{width // 60}-min {agg}, {n_series} series x {days} d ({tier_result.resolution} tier)",
                f"{t_tier * 1e3:.1f} ms",
                f"{t_raw * 1e3:.0f} ms",
                f"{t_raw / t_tier:.0f}x" + ("" if same else " (answers differ!)"),
                ">= 50x",
            )
        )
    stats = db.stats()
    raw_bytes = stats["compressed_bytes"]
    rows.append(("raw chunks per series per day", f"{raw_bytes / n_series / days / 1024:.1f} KiB", "", "", ""))
    for tier in stats["tiers"]:
        kept_days = min(days, tier["retention_seconds"] / DAY)
        rows.append(
            (
                f"tier {tier['tier']} per series per retained day",
                f"{tier['bytes'] / n_series / kept_days / 1024:.2f} KiB",
                "",
                f"{tier['buckets'] / n_series / kept_days:.0f} buckets/day",
                "",
            )
        )
    print_table(("measurement", "tier", "raw", "speed-up / size", "target"), rows)


if __name__ == "__main__":
    main()
