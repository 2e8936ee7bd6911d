"""kill -9 an embedded engine in the middle of concurrent writes; every acknowledged sample survives.

A child process writes batches from several threads into ``TSDB(data_dir=...)`` (fsync
``always``) and prints the id of each batch once ``write_batch`` has returned. Batches overlap
earlier ones (late and duplicate timestamps), one thread snapshots now and then, and the
child runs maintenance. The parent kills it with SIGKILL after a bounded number of
acknowledgements (or a bounded time), reopens the directory and checks: every acknowledged
batch is present with its exact values, and every stored sample is one some batch wrote, with
the value that batch gave it (unacknowledged batches may or may not be there). Two rounds: the
second child starts from what the first left.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from engine_testutil import samples_of

from tsdb import TSDB

WRITERS = 3
ROWS = 400  # per batch
NS = 1_000_000_000

CHILD = r"""
import sys, threading
import numpy as np
from tsdb import TSDB, Batch

data_dir, first, writers, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
db = TSDB(data_dir=data_dir, num_shards=2, chunk_size=64, future_tolerance_seconds=None, rollups="1m:1d")
out = threading.Lock()
SERIES = [("m", (("w", str(w)),)) for w in range(5)]

def batch(b):
    # rows of series b % 5 at seconds b*100 .. b*100+rows-1: each batch overlaps the three before
    # it on that series (late, duplicate timestamps); the value is a function of (series, time)
    k = b % 5
    t = b * 100 + np.arange(rows, dtype=np.int64)
    return Batch(SERIES, np.full(rows, k, np.int64), t * 1_000_000_000, t * 0.25 + k)

def writer(w):
    b = first + w
    while True:
        db.write_batch(batch(b))
        with out:
            print(b, flush=True)
        if w == 0 and b % 7 == 0:
            db.snapshot()
        if w == 1 and b % 11 == 0:
            db.run_maintenance()
        b += writers

for w in range(writers):
    threading.Thread(target=writer, args=(w,), daemon=True).start()
threading.Event().wait()
"""


def _expected(b: int) -> dict[int, float]:
    k = b % 5
    t = b * 100 + np.arange(ROWS, dtype=np.int64)
    return dict(zip((t * NS).tolist(), (t * 0.25 + k).tolist(), strict=True))


def _run_child(data_dir: Path, first: int, want_acks: int, max_seconds: float) -> list[int]:
    """Run the writer child until ``want_acks`` acknowledgements (or ``max_seconds``), kill -9 it."""
    acked: list[int] = []
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), str(first), str(WRITERS), str(ROWS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        out = proc.stdout
        reader = threading.Thread(target=lambda: acked.extend(int(line) for line in out), daemon=True)
        reader.start()
        deadline = time.monotonic() + max_seconds
        while len(acked) < want_acks and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()  # everything printed before the kill
        stderr = proc.stderr.read()
    assert proc.returncode == -signal.SIGKILL, stderr
    return acked


def _check(data_dir: Path, acked: list[int], started_below: int) -> dict[str, dict[int, float]]:
    """Reopen; assert every acknowledged sample is there and every stored one is plausible."""
    db = TSDB(data_dir=data_dir, num_shards=2, chunk_size=64, future_tolerance_seconds=None, rollups="1m:1d")
    try:
        stored = samples_of(db)
        for b in acked:
            series = f'm{{w="{b % 5}"}}'
            want = _expected(b)
            got = stored.get(series, {})
            missing = [t for t, v in want.items() if got.get(t) != v]
            assert not missing, f"acknowledged batch {b}: {len(missing)} samples missing or wrong"
        for series, points in stored.items():
            k = int(series.split('"')[1])
            ts = np.array(list(points), dtype=np.int64) // NS
            assert np.array_equal(np.array(list(points.values())), ts * 0.25 + k), series
            # some batch of this series that had started wrote each time: b % 5 == k, b*100 <= t < b*100+ROWS
            ok = np.zeros(len(ts), dtype=bool)
            for j in range(ROWS // 100):
                b = ts // 100 - j
                ok |= (b >= 0) & (b * 100 + ROWS > ts) & (b % 5 == k) & (b < started_below)
            assert ok.all(), f"{series}: {int((~ok).sum())} samples no batch wrote"
        return stored
    finally:
        db.close()


def test_kill_minus_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    acked = _run_child(data_dir, 0, want_acks=60, max_seconds=60)
    assert acked, "the child acknowledged nothing"
    stored = _check(data_dir, acked, max(acked) + WRITERS + 1)
    assert sum(map(len, stored.values())) >= len(set(acked)) * 100  # each batch adds >= 100 new times
    first = max(acked) + WRITERS + 1
    more = _run_child(data_dir, first, want_acks=60, max_seconds=60)
    assert more
    _check(data_dir, acked + more, max(more) + WRITERS + 1)
