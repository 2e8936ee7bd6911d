"""A naive reference model of the engine: dicts of samples and plain-Python aggregation.

Property tests run the same operations on the engine and on this model and compare answers.
It shares no code with the engine beyond the label rules, so a bug must be made twice to hide.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

NS = 1_000_000_000


def _matches(op: str, pattern: str, value: str) -> bool:
    if op == "=":
        return value == pattern
    if op == "!=":
        return value != pattern
    found = re.fullmatch(pattern, value, re.DOTALL) is not None
    return found if op == "=~" else not found


@dataclass
class RefDB:
    """series key (metric, sorted label tuple) -> {ts_ns: value}; last write wins."""

    data: dict[tuple[str, tuple[tuple[str, str], ...]], dict[int, float]] = field(
        default_factory=lambda: defaultdict(dict)
    )

    def write(self, metric: str, labels: dict[str, str], ts: int, value: float) -> None:
        key = (metric, tuple(sorted((k, v) for k, v in labels.items() if v != "")))
        self.data[key][ts] = value

    def delete(self, matchers: list[tuple[str, str, str]], start: int | None, end: int | None) -> int:
        n = 0
        for key in list(self.data):
            if self.match(key, matchers):
                pts = self.data[key]
                for t in list(pts):
                    if (start is None or t >= start) and (end is None or t <= end):
                        del pts[t]
                        n += 1
                if not pts:
                    del self.data[key]
        return n

    @staticmethod
    def match(key, matchers) -> bool:
        metric, labels = key
        d = dict(labels)
        d["__name__"] = metric
        return all(_matches(op, pat, d.get(name, "")) for name, op, pat in matchers)

    def raw(self, matchers, start: int, end: int):
        out = []
        for key in sorted(self.data):
            if not self.match(key, matchers):
                continue
            pts = sorted((t, v) for t, v in self.data[key].items() if start <= t <= end)
            if pts:
                out.append((key, pts))
        return out

    def aggregate(self, matchers, start: int, end: int, agg: str, width: int | None, group_by, q=None):
        """{group key: [(bucket_ts, value)]} with the engine's documented semantics."""
        groups: dict[tuple, list[tuple[tuple, list[tuple[int, float]]]]] = defaultdict(list)
        for key, pts in self.raw(matchers, start, end):
            metric, labels = key
            d = dict(labels)
            d["__name__"] = metric
            gk = (("__name__", metric), *labels) if group_by is None else tuple((n, d.get(n, "")) for n in group_by)
            groups[gk].append((key, pts))
        out = {}
        for gk, members in groups.items():
            buckets: dict[int, list[tuple[int, float, int]]] = defaultdict(list)  # bucket -> (t, v, member order)
            incs: dict[int, float] = defaultdict(float)
            for order, (_key, pts) in enumerate(members):
                for i, (t, v) in enumerate(pts):
                    b = start if width is None else (t // width) * width
                    buckets[b].append((t, v, order))
                    if i > 0:
                        prev = pts[i - 1][1]
                        incs[b] += v - prev if v >= prev else v
            rows = []
            for b in sorted(buckets):
                items = buckets[b]
                vals = [v for _, v, _ in items]
                n = len(vals)
                if agg == "sum":
                    r = math.fsum(vals)
                elif agg == "avg":
                    r = math.fsum(vals) / n
                elif agg == "min":
                    r = min(vals)
                elif agg == "max":
                    r = max(vals)
                elif agg == "count":
                    r = float(n)
                elif agg == "first":
                    r = min(items, key=lambda x: (x[0], x[2]))[1]
                elif agg == "last":
                    r = max(items, key=lambda x: (x[0], x[2]))[1]
                elif agg in ("stddev", "stdvar"):
                    mean = math.fsum(vals) / n
                    var = math.fsum((v - mean) ** 2 for v in vals) / n
                    r = math.sqrt(var) if agg == "stddev" else var
                elif agg == "quantile":
                    s = sorted(vals)
                    rank = q * (n - 1)
                    lo, hi = math.floor(rank), math.ceil(rank)
                    r = s[lo] + (s[hi] - s[lo]) * (rank - lo)
                elif agg == "increase":
                    r = incs[b]
                elif agg == "rate":
                    window = (width if width is not None else end - start) / NS
                    r = incs[b] / window if window > 0 else math.nan
                else:
                    raise AssertionError(agg)
                if not math.isnan(r):
                    rows.append((b, r))
            if rows:
                out[gk] = rows
        return out
