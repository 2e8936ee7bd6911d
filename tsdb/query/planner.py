"""Plan and run a native query over shards: raw reads, or partial aggregates merged per group.

Shards answer with per-series ``Partials`` (or raw samples for quantile); this module merges
them per group in canonical series order, finalizes the aggregation, fills empty buckets on
request and enforces the result size limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from tsdb._types import is_stale
from tsdb.errors import InvalidQueryError, LimitExceededError
from tsdb.labels import Matcher
from tsdb.query.aggregate import AggSpec, quantile_by_bucket
from tsdb.query.result import QueryResult, SeriesResult
from tsdb.storage.partials import bucket_starts, merge_parallel
from tsdb.storage.rollup import EXACT_AGGREGATIONS, TierSpec
from tsdb.storage.shard import GroupKey, Shard
from tsdb.timeutil import NS_PER_S

__all__ = ["FILL_MODES", "QueryPlan", "pick_tier", "run_query"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
FILL_MODES = ("null", "zero", "previous")


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """A resolved native query. Times in ns, inclusive; ``width`` None = whole range.

    ``open_start``/``open_end`` say the caller gave no bound (the rate window then uses the
    data's own first/last sample time).
    """

    matchers: Sequence[Matcher]
    start: int
    end: int
    agg: AggSpec | None
    width: int | None
    group_by: Sequence[str] | None
    fill: str | float | None
    max_points: int | None
    open_start: bool = False
    open_end: bool = False
    #: Raw samples before this time (ns) have expired (None: raw kept forever).
    raw_cutoff: int | None = None
    #: Rollup tiers available, and the newest sample time (ns) their retention counts from.
    tiers: tuple[TierSpec, ...] = ()
    newest: int = 0


def _check_limit(plan: QueryPlan, points: int) -> None:
    if plan.max_points is not None and points > plan.max_points:
        raise LimitExceededError(
            f"query would return {points} points; the limit is {plan.max_points}: "
            "narrow the time range, add label matchers, or downsample with a wider step",
            field="end",
        )


def _group_labels(key: GroupKey) -> tuple[str | None, dict[str, str]]:
    labels = {n: v for n, v in key if v != ""}
    return labels.pop("__name__", None), labels


def pick_tier(plan: QueryPlan) -> int | None:
    """Index of the rollup tier that answers ``plan`` exactly, or None for raw data.

    A downsample whose width is a multiple of a tier's resolution uses the coarsest such
    tier; a whole-range aggregate uses a tier only when its range reaches back past raw
    retention (pre-aggregated chunks already answer the rest fast), the finest tier whose
    retention still covers the range start.
    """
    if plan.agg is None or plan.agg.name not in EXACT_AGGREGATIONS or not plan.tiers:
        return None
    if plan.width is not None:
        fits = [i for i, t in enumerate(plan.tiers) if plan.width % t.resolution == 0]
        return fits[-1] if fits else None
    if plan.raw_cutoff is None or plan.start >= plan.raw_cutoff:
        return None
    for i, t in enumerate(plan.tiers):
        if plan.start >= plan.newest - t.retention:
            return i
    return len(plan.tiers) - 1


def _clamped(plan: QueryPlan, tier: int | None) -> QueryPlan:
    """The plan with its start moved past data that has expired from its source."""
    floor = plan.raw_cutoff if tier is None else plan.newest - plan.tiers[tier].retention
    if floor is None or plan.start >= floor:
        return plan
    return replace(plan, start=floor)


def run_query(shards: Sequence[Shard], plan: QueryPlan) -> QueryResult:
    """Execute a plan over every shard."""
    tier = pick_tier(plan)
    plan = _clamped(plan, tier)
    if plan.start > plan.end:
        kind = "raw" if plan.agg is None else ("aggregate" if plan.width is None else "downsample")
        return QueryResult(kind, [], "raw" if tier is None else plan.tiers[tier].name)
    if plan.agg is None:
        return _raw(shards, plan)
    groups = _quantile_groups(shards, plan) if plan.agg.needs_raw else _partial_groups(shards, plan, tier)
    kind = "aggregate" if plan.width is None else "downsample"
    series = []
    for key in sorted(groups):
        buckets, values = groups[key]
        buckets, values = _fill(plan, buckets, values)
        if len(buckets):
            metric, labels = _group_labels(key)
            series.append(SeriesResult(metric, labels, buckets, values))
    _check_limit(plan, sum(len(s.timestamps) for s in series))
    return QueryResult(kind, series, "raw" if tier is None else plan.tiers[tier].name)


def _raw(shards: Sequence[Shard], plan: QueryPlan) -> QueryResult:
    data = [d for shard in shards for d in shard.read_raw(plan.matchers, plan.start, plan.end)]
    _check_limit(plan, sum(len(d.timestamps) for d in data))
    data.sort(key=lambda d: (d.metric, d.labels))
    series = []
    for d in data:
        stale = is_stale(d.values)
        ts, vals = (d.timestamps, d.values) if not stale.any() else (d.timestamps[~stale], d.values[~stale])
        if len(ts):
            series.append(SeriesResult(d.metric, dict(d.labels), ts, vals))
    return QueryResult("raw", series)


def _partial_groups(shards: Sequence[Shard], plan: QueryPlan, tier: int | None) -> dict[GroupKey, tuple[I64, F64]]:
    assert plan.agg is not None
    collected: dict[GroupKey, list[tuple[str, object]]] = {}
    for shard in shards:
        for key, items in shard.partials(plan.matchers, plan.start, plan.end, plan.width, plan.group_by, tier).items():
            collected.setdefault(key, []).extend(items)
    out: dict[GroupKey, tuple[I64, F64]] = {}
    for key, items in collected.items():
        items.sort(key=lambda kv: kv[0])
        merged = merge_parallel(
            [p for _, p in items],  # type: ignore[misc]
            exact_first_last=plan.agg.name in ("first", "last"),
            width=plan.width,
        )
        if not len(merged):
            continue
        values = plan.agg.finalize(merged, _windows(plan, merged.first_t, merged.last_t, len(merged)))
        out[key] = (_stamp(plan, merged.bucket, merged.first_t), values)
    return out


def _windows(plan: QueryPlan, first_t: I64, last_t: I64, n: int) -> F64:
    """Seconds each row's rate is averaged over: the bucket width, or the query range."""
    if plan.width is not None:
        return np.full(n, plan.width / NS_PER_S)
    start = first_t if plan.open_start else np.full(n, plan.start)
    end = last_t if plan.open_end else np.full(n, plan.end)
    return (end - start).astype(np.float64) / NS_PER_S


def _quantile_groups(shards: Sequence[Shard], plan: QueryPlan) -> dict[GroupKey, tuple[I64, F64]]:
    assert plan.agg is not None and plan.agg.q is not None
    collected: dict[GroupKey, list[tuple[str, I64, F64]]] = {}
    for shard in shards:
        for key, items in shard.raw_groups(plan.matchers, plan.start, plan.end, plan.group_by).items():
            collected.setdefault(key, []).extend(items)
    out: dict[GroupKey, tuple[I64, F64]] = {}
    for key, items in collected.items():
        ts = np.concatenate([i[1] for i in items])
        vals = np.concatenate([i[2] for i in items])
        real = ~is_stale(vals)
        ts, vals = ts[real], vals[real]
        if len(ts):
            buckets, values = quantile_by_bucket(bucket_starts(ts, plan.width, plan.start), vals, plan.agg.q)
            out[key] = (_stamp(plan, buckets, np.array([ts.min()])), values)
    return out


def _stamp(plan: QueryPlan, buckets: I64, first_t: I64) -> I64:
    """Timestamps of result rows: bucket starts, or for a whole-range aggregate the range
    start (the group's first sample when the range has no start)."""
    if plan.width is None and plan.open_start:
        return first_t[:1].copy()
    return buckets


def _fill(plan: QueryPlan, buckets: I64, values: F64) -> tuple[I64, F64]:
    """Fill empty buckets between the range's first and last bucket, if asked."""
    keep = np.isfinite(values)
    buckets, values = buckets[keep], values[keep]
    if plan.fill is None or plan.width is None:
        return buckets, values
    w = plan.width
    first = (plan.start // w) * w if not plan.open_start else (int(buckets[0]) if len(buckets) else None)
    last = (plan.end // w) * w if not plan.open_end else (int(buckets[-1]) if len(buckets) else None)
    if first is None or last is None:
        return buckets, values
    n = (last - first) // w + 1
    _check_limit(plan, n)
    grid = first + np.arange(n, dtype=np.int64) * w
    filled = np.full(n, np.nan)
    pos = ((buckets - first) // w).astype(np.int64)
    inside = (pos >= 0) & (pos < n)
    filled[pos[inside]] = values[inside]
    if plan.fill == "zero":
        filled[np.isnan(filled)] = 0.0
    elif plan.fill == "previous":
        idx = np.where(~np.isnan(filled), np.arange(n), -1)
        np.maximum.accumulate(idx, out=idx)
        has = idx >= 0
        filled[has] = filled[idx[has]]
    elif isinstance(plan.fill, (int, float)) and not isinstance(plan.fill, bool):
        filled[np.isnan(filled)] = float(plan.fill)
    elif plan.fill != "null":
        raise InvalidQueryError(f"unknown fill {plan.fill!r}: expected null, zero, previous or a number", field="fill")
    return grid, filled
