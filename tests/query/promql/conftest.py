"""Fixtures for the PromQL tests.

``store`` is the real embedded ``TSDB`` behind a small helper (``add(metric, labels, times_s,
values)``), so the evaluator is tested through the Querier protocol exactly as it runs in
production. ``MemQuerier`` is a tiny in-memory Querier over numpy arrays; it is used only for
inputs the TSDB refuses by contract (NaN and infinite sample values) and by the hypothesis
reference test, which needs thousands of fresh stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from tsdb import TSDB
from tsdb._types import Batch
from tsdb.labels import LabelSet, Matcher, make_labelset
from tsdb.query.promql import instant_query, range_query
from tsdb.storage.interface import SeriesData

S = 1_000_000_000  # ns per second


def _ns(times_s: Iterable[float]) -> np.ndarray:
    return np.rint(np.asarray(list(times_s), dtype=np.float64) * S).astype(np.int64)


class MemQuerier:
    """A Querier over a dict of arrays; contract as ``tsdb.storage.interface.Querier`` says."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, LabelSet], tuple[np.ndarray, np.ndarray]] = {}

    def add(self, metric: str, labels: dict[str, str], times_s: Iterable[float], values: Iterable[float]) -> None:
        self.add_ns(metric, labels, _ns(times_s), values)

    def add_ns(self, metric: str, labels: dict[str, str], ts_ns: Iterable[int], values: Iterable[float]) -> None:
        """Add a series with exact int64 ns timestamps (epoch-sized times lose ns as float seconds)."""
        ts = np.asarray(list(ts_ns), dtype=np.int64)
        vs = np.asarray(list(values), dtype=np.float64)
        order = np.argsort(ts, kind="stable")
        self.series[(metric, tuple(sorted(labels.items())))] = (ts[order], vs[order])

    def _matches(self, metric: str, labels: LabelSet, matchers: Sequence[Matcher]) -> bool:
        d = dict(labels)
        d["__name__"] = metric
        return all(m.matches(d.get(m.name, "")) for m in matchers)

    def select_raw(self, matchers: Sequence[Matcher], start_ns: int, end_ns: int) -> list[SeriesData]:
        out = []
        for (metric, labels), (ts, vs) in sorted(self.series.items()):
            if not self._matches(metric, labels, matchers):
                continue
            keep = (ts >= start_ns) & (ts <= end_ns)
            if keep.any():
                out.append(SeriesData(metric, labels, ts[keep], vs[keep]))
        return out

    def select_series(self, matchers: Sequence[Matcher]) -> list[tuple[str, LabelSet]]:
        return [key for key in sorted(self.series) if self._matches(key[0], key[1], matchers)]


class TSDBStore:
    """The real engine with the same ``add`` helper (staleness markers go through write_batch)."""

    def __init__(self) -> None:
        self.db = TSDB()

    def add(self, metric: str, labels: dict[str, str], times_s: Iterable[float], values: Iterable[float]) -> None:
        batch = Batch.single(metric, make_labelset(labels), _ns(times_s), np.asarray(list(values), np.float64))
        self.db.write_batch(batch)

    def select_raw(self, matchers: Sequence[Matcher], start_ns: int, end_ns: int) -> list[SeriesData]:
        return self.db.select_raw(matchers, start_ns, end_ns)

    def select_series(self, matchers: Sequence[Matcher]) -> list[tuple[str, LabelSet]]:
        return self.db.select_series(matchers)


@pytest.fixture
def store() -> Iterator[TSDBStore]:
    s = TSDBStore()
    yield s
    s.db.close()


@pytest.fixture
def mem() -> MemQuerier:
    return MemQuerier()


def vec(querier: Any, expr: str, t_s: float) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant query's result as {labels: value}; fails if the result is not a vector."""
    result = instant_query(querier, expr, round(t_s * S))
    assert hasattr(result, "samples"), result
    return {s.labels: s.value for s in result.samples}


def one(querier: Any, expr: str, t_s: float) -> float:
    """The value of a single-element instant vector (or a scalar)."""
    result = instant_query(querier, expr, round(t_s * S))
    if hasattr(result, "samples"):
        assert len(result.samples) == 1, result
        return result.samples[0].value
    return result.value


def series(
    querier: Any, expr: str, start_s: float, end_s: float, step_s: float
) -> dict[Any, list[tuple[float, float]]]:
    """A range query as {labels: [(t_seconds, value), ...]}."""
    m = range_query(querier, expr, round(start_s * S), round(end_s * S), round(step_s * S))
    return {s.labels: list(zip((s.timestamps / S).tolist(), s.values.tolist(), strict=True)) for s in m.series}
