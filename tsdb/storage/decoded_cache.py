"""A bounded LRU cache of decoded chunk columns, shared by every TSDB in the process.

Dashboards re-read the same recent chunks on every refresh; decoding is the largest cost of a
wide raw read (a Grafana panel over 1,000 series x 1 day decodes 17,000 chunks). Chunks are
immutable, so a decoded copy never goes stale: entries are keyed by the chunk object itself
(identity; the entry holds a reference, so an id cannot be reused while cached) and evicted
least-recently-used when the decoded bytes exceed the budget. Cached arrays are read-only.

This is process-wide mutable state by design (it is a cache); ``configure`` sets its budget.
Thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_BYTES", "DecodedCache", "cache"]

#: Default budget: 256 MiB of decoded samples (16 M samples at 16 bytes each).
DEFAULT_BYTES = 256 * 1024 * 1024

Columns = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]


class DecodedCache:
    """LRU of chunk -> (timestamps, values); see the module docstring."""

    def __init__(self, max_bytes: int = DEFAULT_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, tuple[Any, Columns]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def configure(self, max_bytes: int) -> None:
        """Set the budget (0 disables the cache) and evict down to it."""
        with self._lock:
            self.max_bytes = max_bytes
            self._evict_locked()

    def get(self, chunk: Any) -> Columns | None:
        """The cached columns of ``chunk``, or None."""
        with self._lock:
            entry = self._entries.get(id(chunk))
            if entry is None or entry[0] is not chunk:
                self.misses += 1
                return None
            self._entries.move_to_end(id(chunk))
            self.hits += 1
            return entry[1]

    def put(self, chunk: Any, ts: npt.NDArray[np.int64], vals: npt.NDArray[np.float64]) -> Columns:
        """Remember decoded columns (made read-only) and return them."""
        ts.flags.writeable = False
        vals.flags.writeable = False
        size = ts.nbytes + vals.nbytes
        if size > self.max_bytes:
            return ts, vals
        with self._lock:
            old = self._entries.pop(id(chunk), None)
            if old is not None:
                self._bytes -= old[1][0].nbytes + old[1][1].nbytes
            self._entries[id(chunk)] = (chunk, (ts, vals))
            self._bytes += size
            self._evict_locked()
        return ts, vals

    def _evict_locked(self) -> None:
        while self._bytes > self.max_bytes and self._entries:
            _, (_, (ts, vals)) = self._entries.popitem(last=False)
            self._bytes -= ts.nbytes + vals.nbytes

    @property
    def nbytes(self) -> int:
        """Decoded bytes held."""
        return self._bytes

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0


cache = DecodedCache()
