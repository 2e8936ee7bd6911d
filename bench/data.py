"""Benchmark data: what a 1 s scrape of a noisy gauge and of a smooth signal looks like.

* timestamps: every 1 s from 2023-11-14T22:13:20Z, with integer-millisecond jitter uniform in
  [-5, +5] ms (most sources stamp in ms; ns-random jitter is incompressible noise by design);
* noisy gauge: random walk, N(0, 0.5) steps, rounded to 2 decimals;
* smooth: 50 + 10 sin(2 pi t / 1 h) rounded to 2 decimals, on exact 1 s timestamps;
* constant: 42.0 on exact 1 s timestamps.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

T0_S = 1_700_000_000
NS = 1_000_000_000


def timestamps_ns(n: int, *, jitter_ms: int = 5, seed: int = 0, start_s: int = T0_S) -> npt.NDArray[np.int64]:
    """n timestamps 1 s apart (ns), each moved by a whole number of ms in [-jitter, +jitter]."""
    rng = np.random.default_rng(seed)
    base = (start_s + np.arange(n, dtype=np.int64)) * NS
    if jitter_ms:
        base += rng.integers(-jitter_ms, jitter_ms + 1, n) * 1_000_000
    return base


def noisy_gauge(n: int, *, seed: int = 0) -> npt.NDArray[np.float64]:
    """Random walk with N(0, 0.5) steps around 100, rounded to 2 decimals."""
    rng = np.random.default_rng(seed + 1)
    return np.round(100 + np.cumsum(rng.normal(0, 0.5, n)), 2)


def smooth(n: int) -> npt.NDArray[np.float64]:
    """A slow sine (period 1 h at 1 s spacing) rounded to 2 decimals."""
    return np.round(50 + 10 * np.sin(2 * np.pi * np.arange(n) / 3600), 2)
