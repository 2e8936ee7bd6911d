"""Helpers for the engine-level durability tests: an exact fingerprint of an engine's state."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from tsdb import TSDB
from tsdb.storage.read import read_samples

ALL = (-(2**62), 2**62)


def _bits(a: np.ndarray) -> bytes:
    """Bytes of an array, so that NaN payloads and -0.0 compare exactly."""
    return np.ascontiguousarray(a).tobytes()


def series_state(db: TSDB) -> dict[str, tuple[Any, ...]]:
    """Everything that defines each non-empty series' answers and future behaviour, bit for bit:
    id, samples, chunk pre-aggregate rows, head in arrival order, order state, rollup rows.

    Empty series are left out: a series created for a write that was then refused exists in
    memory until maintenance, but was never logged (it holds nothing to lose).
    """
    out: dict[str, tuple[Any, ...]] = {}
    for shard in db.shards:
        with shard.lock:
            for s in shard.series_locked():
                if s.is_empty:
                    continue
                view = s.view()
                ts, vals = read_samples(view, *ALL)
                tiers = None if s.tiers is None else tuple(_tier_bits(t.view()) for t in s.tiers)
                out[s.key] = (
                    shard.number,
                    s.sid,
                    _bits(ts),
                    _bits(vals),
                    _bits(view.istats),
                    _bits(view.fstats),
                    _bits(view.head_ts),
                    _bits(view.head_vals),
                    s.raw_from,
                    s.last,
                    s.in_order,
                    tiers,
                )
    return out


def _tier_bits(rows: Any) -> tuple[bytes, ...]:
    return tuple(_bits(getattr(rows, name)) for name in rows.__slots__)


def engine_state(db: TSDB) -> tuple[Any, ...]:
    """Series state plus the engine's retention clock."""
    return (db.stats()["newest_timestamp"], series_state(db))


def samples_of(db: TSDB) -> dict[str, dict[int, float]]:
    """Every stored sample: canonical key -> {timestamp ns: value} (no retention clamp)."""
    out: dict[str, dict[int, float]] = {}
    for shard in db.shards:
        for view in shard.views([]):
            ts, vals = read_samples(view, *ALL)
            if len(ts):
                out[view.series.key] = dict(zip(ts.tolist(), vals.tolist(), strict=True))
    return out


def mount_tmpfs(path: Path, size: str) -> bool:
    """Create ``path`` and mount a tmpfs of ``size`` there; False when this machine does not
    allow it (not root, or no mount(8)), so the caller can skip."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0
