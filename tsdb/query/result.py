"""Query results as numpy columns, with conversions for the embedded API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tsdb.timeutil import ns_to_seconds

__all__ = ["QueryResult", "SeriesResult"]


@dataclass(frozen=True, slots=True)
class SeriesResult:
    """One result series: ``timestamps`` int64 ns (sorted), ``values`` float64.

    For a raw query this is a stored series; for an aggregation it is a group, whose
    ``labels`` are the group-by labels and ``metric`` the metric name when it is known.
    """

    metric: str | None
    labels: dict[str, str]
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def points(self) -> list[tuple[int | float, float]]:
        """(timestamp in seconds, value) pairs; NaN values (empty filled buckets) become None."""
        vals = self.values.tolist()
        return [(ns_to_seconds(t), None if v != v else v) for t, v in zip(self.timestamps.tolist(), vals, strict=True)]

    @property
    def value(self) -> float | None:
        """The single value of a whole-range aggregate (None when empty)."""
        if len(self.values) == 0:
            return None
        v = float(self.values[0])
        return None if v != v else v


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The answer to ``TSDB.select``.

    ``kind`` says what the series hold: stored samples ("raw"), one point per group at the
    range start ("aggregate"), or one point per bucket ("downsample"). ``resolution`` names
    what answered: "raw", or a rollup tier such as "1m".
    """

    kind: Literal["raw", "aggregate", "downsample"]
    series: list[SeriesResult]
    resolution: str = "raw"
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.series)

    @property
    def num_points(self) -> int:
        """Points over every series."""
        return sum(len(s.timestamps) for s in self.series)

    def to_pandas(self) -> Any:
        """A long DataFrame: columns time (UTC datetime64[ns]), value, metric, then labels.

        Needs pandas (``pip install tsdb[pandas]``).
        """
        import pandas as pd  # optional dependency, imported only when asked for

        frames = []
        label_names = sorted({n for s in self.series for n in s.labels})
        for s in self.series:
            data: dict[str, Any] = {
                "time": pd.to_datetime(s.timestamps, unit="ns", utc=True),
                "value": s.values,
                "metric": s.metric,
            }
            for name in label_names:
                data[name] = s.labels.get(name)
            frames.append(pd.DataFrame(data))
        if not frames:
            return pd.DataFrame(columns=["time", "value", "metric", *label_names])
        return pd.concat(frames, ignore_index=True)
