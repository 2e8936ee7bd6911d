"""Contracts between the query layer and storage, apart from any implementation.

Like Prometheus's ``storage/interface.go``: the query layer (native aggregations, PromQL) talks
to anything that satisfies ``Querier``; today that is ``tsdb.TSDB`` over in-process shards, and a
shard living in another process would fit the same hole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from tsdb.labels import LabelSet, Matcher

__all__ = ["Querier", "SeriesData"]


@dataclass(frozen=True, slots=True)
class SeriesData:
    """Raw samples of one series in a time range.

    ``timestamps`` are int64 ns, strictly increasing (duplicates already resolved, last write
    wins); ``values`` are float64 and may contain Prometheus staleness markers (see
    ``tsdb._types.is_stale``). ``labels`` excludes the metric name.
    """

    metric: str
    labels: LabelSet
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


class Querier(Protocol):
    """What a query evaluator needs from storage."""

    def select_raw(self, matchers: Sequence[Matcher], start_ns: int, end_ns: int) -> list[SeriesData]:
        """Every series matching all ``matchers`` (the metric name is label ``__name__``) with
        its samples in the inclusive range ``[start_ns, end_ns]``; series with no sample in
        the range are left out. Sorted by metric then labels."""
        ...

    def select_series(self, matchers: Sequence[Matcher]) -> list[tuple[str, LabelSet]]:
        """Every stored series matching all ``matchers``, sorted by metric then labels."""
        ...
