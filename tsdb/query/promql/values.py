"""PromQL value types: what the evaluator passes between nodes and what a query returns.

Inside the evaluator every expression is evaluated at all steps of the query at once (an instant
query is a range query with one step, as in Prometheus). The internal shapes are:

* ``ScalarSteps``: one float64 per step, always present.
* ``StringValue``: a string literal (only valid as a function argument or a whole query).
* ``Block``: an instant vector at every step: ``labels[i]`` is the full label set of row ``i``
  (the metric name is the label ``__name__``), ``values`` and ``present`` are ``(rows, steps)``
  arrays; a row is absent at a step where ``present`` is False (its value there is meaningless).

Results handed to callers (``instant_query`` / ``range_query``) are ``Scalar``, ``String``,
``InstantVector`` and ``Matrix``; all timestamps are int64 nanoseconds since the epoch.

``Labels`` is a tuple of ``(name, value)`` pairs sorted by name, hashable, comparing like
Prometheus's ``labels.Compare`` (name, then value, pair by pair; a prefix sorts first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "METRIC_NAME",
    "Block",
    "InstantVector",
    "Labels",
    "Matrix",
    "MatrixSeries",
    "QueryResult",
    "Scalar",
    "ScalarSteps",
    "String",
    "StringValue",
    "VectorSample",
    "drop_name",
    "labels_from",
    "labels_without",
    "ns_to_seconds_array",
]

METRIC_NAME = "__name__"

Labels = tuple[tuple[str, str], ...]


def labels_from(pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> Labels:
    """A sorted Labels tuple from a mapping or pairs; empty values are dropped (as Prometheus does)."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return tuple(sorted((n, v) for n, v in items if v != ""))


def labels_without(labels: Labels, names: Iterable[str]) -> Labels:
    """``labels`` minus the given label names."""
    drop = set(names)
    return tuple(p for p in labels if p[0] not in drop)


def drop_name(labels: Labels) -> Labels:
    """``labels`` without the metric name (what arithmetic and most functions return)."""
    return tuple(p for p in labels if p[0] != METRIC_NAME)


def ns_to_seconds_array(ns: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Float seconds for int64 ns timestamps, bit-identical to Prometheus's ``float64(ms)/1000``
    whenever the timestamp is a whole number of milliseconds.

    ``float64(ns)`` alone would round (ns since the epoch exceed 2**53), so the whole
    milliseconds and the sub-millisecond rest are converted separately.
    """
    ns = np.asarray(ns, dtype=np.int64)
    ms, rest = np.divmod(ns, 1_000_000)
    return ms.astype(np.float64) / 1000.0 + rest.astype(np.float64) / 1e9


# --- evaluator-internal values -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScalarSteps:
    """A scalar at every step: ``values`` has one float64 per step."""

    values: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class StringValue:
    """A string literal."""

    value: str


@dataclass(slots=True)
class Block:
    """An instant vector at every step of the evaluation (see the module docstring).

    Invariant: ``values.shape == present.shape == (len(labels), steps)``. Rows may repeat a
    label set only transiently inside an operator; the evaluator merges or rejects duplicates
    before a Block leaves a node.
    """

    labels: list[Labels]
    values: npt.NDArray[np.float64]
    present: npt.NDArray[np.bool_]
    #: Sample timestamps (ns) of rows that come straight from a vector selector, used by
    #: ``timestamp()``; None once any operator has touched the block.
    sample_ts: npt.NDArray[np.int64] | None = field(default=None)

    @classmethod
    def empty(cls, steps: int) -> Block:
        """A vector with no series."""
        return cls([], np.empty((0, steps), np.float64), np.zeros((0, steps), np.bool_))

    @property
    def steps(self) -> int:
        """Number of evaluation steps."""
        return int(self.values.shape[1])

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: npt.NDArray[np.intp] | list[int]) -> Block:
        """The sub-block of the given row indexes (labels, values, presence)."""
        idx = np.asarray(rows, dtype=np.intp)
        return Block([self.labels[i] for i in idx.tolist()], self.values[idx], self.present[idx])

    def compact(self) -> Block:
        """The block without rows that are absent at every step."""
        keep = np.flatnonzero(self.present.any(axis=1))
        if len(keep) == len(self.labels):
            return self
        return self.take(keep)


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scalar:
    """A scalar result of an instant query, evaluated at ``timestamp_ns``."""

    timestamp_ns: int
    value: float


@dataclass(frozen=True, slots=True)
class String:
    """A string result of an instant query (a bare string literal)."""

    timestamp_ns: int
    value: str


@dataclass(frozen=True, slots=True)
class VectorSample:
    """One element of an instant vector: its full label set and value."""

    labels: Labels
    value: float

    @property
    def metric(self) -> dict[str, str]:
        """The label set as a dict (``__name__`` included when present)."""
        return dict(self.labels)


@dataclass(frozen=True, slots=True)
class InstantVector:
    """An instant vector result: every sample is stamped with the evaluation time ``timestamp_ns``.

    The order is Prometheus's evaluation order (``sort()``/``topk()`` order is kept).
    """

    timestamp_ns: int
    samples: list[VectorSample]

    def __len__(self) -> int:
        return len(self.samples)


@dataclass(frozen=True, slots=True)
class MatrixSeries:
    """One series of a matrix: ``timestamps`` int64 ns (strictly increasing) and float64 ``values``."""

    labels: Labels
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    @property
    def metric(self) -> dict[str, str]:
        """The label set as a dict (``__name__`` included when present)."""
        return dict(self.labels)


@dataclass(frozen=True, slots=True)
class Matrix:
    """A matrix result (a range query, or an instant query of a range vector), series sorted
    by labels as Prometheus sorts them."""

    series: list[MatrixSeries]

    def __len__(self) -> int:
        return len(self.series)


QueryResult = Scalar | String | InstantVector | Matrix
