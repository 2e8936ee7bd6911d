"""Sealed chunks and their pre-aggregates.

A sealed chunk is an immutable, compressed run of one series' samples: timestamps strictly
increasing (sorted and deduplicated on seal). Beside the bytes, each chunk carries
pre-aggregates (``ChunkStats``) so that an aggregation over whole chunks never decompresses
them. The per-series table of chunk stats is columnar (``ChunkTable``) so a query over 20,000
chunks is a handful of numpy reductions, not a Python loop.

Staleness markers (Prometheus's special NaN) are stored like any value but excluded from every
pre-aggregate: ``count`` counts real samples only, and a chunk of markers alone has count 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from tsdb import codec
from tsdb._types import is_stale

__all__ = ["STAT_FIELDS", "ChunkTable", "SealedChunk", "compute_stats", "counter_deltas"]

#: Float pre-aggregate columns of a chunk, in ``ChunkTable.fstats`` column order.
#: m2 is the sum of squared deviations from the chunk mean (for mergeable variance);
#: inc is the counter increase between consecutive samples inside the chunk, resets handled.
STAT_FIELDS: Final = ("sum", "min", "max", "first", "last", "m2", "inc")
F_SUM, F_MIN, F_MAX, F_FIRST, F_LAST, F_M2, F_INC = range(7)
#: Integer columns of ``ChunkTable.istats``: time bounds (ns, stale markers included),
#: time of the first and last real sample, number of real samples, stale marker present.
I_MINT, I_MAXT, I_FIRST_T, I_LAST_T, I_COUNT, I_STALE = range(6)


def counter_deltas(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Increase from each sample to the next, treating a drop as a counter reset.

    Element i is the increase from ``values[i]`` to ``values[i+1]``: the difference when the
    counter went up, else ``values[i+1]`` itself (it restarted from zero), as Prometheus does.
    """
    nxt = values[1:]
    d = nxt - values[:-1]
    return np.where(d >= 0, d, nxt)


@dataclass(frozen=True, slots=True)
class SealedChunk:
    """Compressed timestamps (int64 ns) and values (float64) of one chunk; ``level`` is the
    pcodec level used, so maintenance knows which chunks to recompress."""

    ts_bytes: bytes
    val_bytes: bytes
    level: int

    @classmethod
    def encode(cls, ts: npt.NDArray[np.int64], vals: npt.NDArray[np.float64], level: int) -> SealedChunk:
        """Compress sorted, deduplicated, non-empty columns."""
        return cls(codec.encode_i64(ts, level), codec.encode_f64(vals, level), level)

    def decode(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The chunk's columns as new arrays."""
        return codec.decode_i64(self.ts_bytes), codec.decode_f64(self.val_bytes)

    @property
    def nbytes(self) -> int:
        """Compressed size in bytes (payload only)."""
        return len(self.ts_bytes) + len(self.val_bytes)


def compute_stats(ts: npt.NDArray[np.int64], vals: npt.NDArray[np.float64]) -> tuple[list[int], list[float]]:
    """Pre-aggregates of sorted, non-empty columns: (integer row, float row) for a ChunkTable."""
    # The staleness marker is a signalling NaN: summing it raises numpy's "invalid" flag.
    with np.errstate(invalid="ignore"):
        total = float(vals.sum())
    # A finite sum proves there is no NaN at all, so the staleness scan is skipped on the
    # common path (one reduction instead of three).
    has_stale = total != total and bool(is_stale(vals).any())
    if has_stale:
        stale = is_stale(vals)
        real_ts, real = ts[~stale], vals[~stale]
        total = float(real.sum())
    else:
        real_ts, real = ts, vals
    n = len(real)
    if n == 0:
        nan = float("nan")
        return [int(ts[0]), int(ts[-1]), int(ts[0]), int(ts[-1]), 0, 1], [0.0, np.inf, -np.inf, nan, nan, 0.0, 0.0]
    mean = total / n
    dev = real - mean
    inc = float(counter_deltas(real).sum()) if n > 1 else 0.0
    return (
        [int(ts[0]), int(ts[-1]), int(real_ts[0]), int(real_ts[-1]), n, int(has_stale)],
        [total, float(real.min()), float(real.max()), float(real[0]), float(real[-1]), float(dev @ dev), inc],
    )


class ChunkTable:
    """The sealed chunks of one series, in time order, with columnar pre-aggregates.

    Invariant: chunks do not overlap in time; ``istats[:, I_MAXT]`` is strictly increasing.
    Readers take a ``view()`` under the shard lock and use it without the lock: appends only
    write rows past every published view, and any other change builds new arrays.
    Not thread-safe by itself; the shard's lock guards writers.
    """

    __slots__ = ("_n", "chunks", "fstats", "istats")

    def __init__(self) -> None:
        self.chunks: list[SealedChunk] = []
        self.istats = np.empty((0, 6), dtype=np.int64)
        self.fstats = np.empty((0, 7), dtype=np.float64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, chunk: SealedChunk, irow: list[int], frow: list[float]) -> None:
        """Add a chunk newer than every chunk in the table."""
        n = self._n
        if n == len(self.istats):
            cap = max(4, 2 * n)
            istats = np.empty((cap, 6), dtype=np.int64)
            fstats = np.empty((cap, 7), dtype=np.float64)
            istats[:n] = self.istats[:n]
            fstats[:n] = self.fstats[:n]
            self.istats, self.fstats = istats, fstats
        self.istats[n] = irow
        self.fstats[n] = frow
        self.chunks.append(chunk)
        self._n = n + 1

    def replace(
        self, lo: int, hi: int, chunks: list[SealedChunk], irows: list[list[int]], frows: list[list[float]]
    ) -> None:
        """Replace chunks ``[lo, hi)`` by ``chunks`` (which must keep the table in time order)."""
        n = self._n
        ist = np.empty((0, 6), dtype=np.int64) if not irows else np.asarray(irows, dtype=np.int64)
        fst = np.empty((0, 7), dtype=np.float64) if not frows else np.asarray(frows, dtype=np.float64)
        self.istats = np.concatenate([self.istats[:lo], ist, self.istats[hi:n]])
        self.fstats = np.concatenate([self.fstats[:lo], fst, self.fstats[hi:n]])
        self.chunks = self.chunks[:lo] + chunks + self.chunks[hi:n]
        self._n = len(self.chunks)

    def view(self) -> tuple[list[SealedChunk], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """A consistent read-only snapshot: (chunks, istats rows, fstats rows)."""
        n = self._n
        return self.chunks[:n], self.istats[:n], self.fstats[:n]

    def set_chunk(self, i: int, chunk: SealedChunk) -> None:
        """Swap chunk ``i`` for an equivalent one (same samples, e.g. recompressed)."""
        chunks = list(self.chunks)
        chunks[i] = chunk
        self.chunks = chunks

    @property
    def nbytes(self) -> int:
        """Compressed payload bytes of every chunk."""
        return sum(c.nbytes for c in self.chunks)

    @property
    def samples(self) -> int:
        """Samples stored, staleness markers excluded."""
        return int(self.istats[: self._n, I_COUNT].sum())
