"""WAL benchmark: append throughput of 5,000-sample SAMPLES records and replay speed.

    python bench/bench_wal.py [--dir DIR] [--seconds 2] [--replay-samples 10000000]

Append: each writer thread appends ready-made 5,000-sample batches (series ids, int64 ns
timestamps, float64 values) for ``--seconds``; ``always`` waits for the group-commit fsync,
``never`` only writes to the page cache. The per-batch cost is what the WAL adds to one engine
write of 5,000 samples. Replay: write ``--replay-samples`` samples with ``never``, reopen, and
iterate every record, concatenating the columns as an engine would copy them.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from tsdb.wal import SamplesRecord, WriteAheadLog
from tsdb.wal.segment import encode_frames

BATCH = 5000


def make_batch(rng: np.random.Generator, k: int) -> SamplesRecord:
    ids = rng.integers(0, 1000, BATCH)
    ts = 1_700_000_000_000_000_000 + (np.arange(BATCH, dtype=np.int64) + k * BATCH) * 1_000_000
    return SamplesRecord(ids, ts, np.round(rng.standard_normal(BATCH), 3))


def bench_append(directory: Path, policy: str, threads: int, seconds: float) -> dict[str, float]:
    rng = np.random.default_rng(threads)
    batches = [make_batch(rng, k) for k in range(16)]
    log = WriteAheadLog.open(directory, fsync=policy)
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def writer(t: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            log.append(batches[(t + n) % len(batches)])
            n += 1
        counts[t] = n

    start = time.perf_counter()
    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    stats = log.stats()
    log.close()
    n = sum(counts)
    return {
        "batches": n,
        "samples_per_s": n * BATCH / elapsed,
        "us_per_batch": elapsed / n * 1e6 * threads,  # wall time each writer spent per batch
        "fsyncs": stats.fsyncs,
        "mb_per_s": stats.bytes / elapsed / 1e6,
    }


def bench_encode(reps: int = 2000) -> float:
    batch = make_batch(np.random.default_rng(0), 0)
    start = time.perf_counter()
    for _ in range(reps):
        encode_frames([batch])
    return (time.perf_counter() - start) / reps * 1e6


def bench_replay(directory: Path, samples: int) -> dict[str, float]:
    rng = np.random.default_rng(1)
    batches = [make_batch(rng, k) for k in range(16)]
    with WriteAheadLog.open(directory, fsync="never") as log:
        for k in range(samples // BATCH):
            log.append(batches[k % len(batches)])
        log.sync()
    start = time.perf_counter()
    with WriteAheadLog.open(directory, fsync="never") as log:
        replay = log.replay()
        ids, ts, vals = [], [], []
        for rec in replay:
            ids.append(rec.series_ids)
            ts.append(rec.timestamps)
            vals.append(rec.values)
        cols = (np.concatenate(ids), np.concatenate(ts), np.concatenate(vals))
    elapsed = time.perf_counter() - start
    assert len(cols[0]) == replay.stats.samples
    return {"samples": replay.stats.samples, "seconds": elapsed, "samples_per_s": replay.stats.samples / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", help="where to write (default: a temp dir, removed afterwards)")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each append run")
    parser.add_argument("--replay-samples", type=int, default=10_000_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-wal-", dir=args.dir))
    try:
        print(f"encode one 5,000-sample record: {bench_encode():.1f} us")
        print(f"{'fsync':<8}{'threads':>8}{'batches':>9}{'Msamples/s':>12}{'us/batch':>10}{'fsyncs':>8}{'MB/s':>8}")
        for policy, threads in (("never", 1), ("never", 4), ("always", 1), ("always", 4), ("always", 8)):
            r = bench_append(root / f"{policy}-{threads}", policy, threads, args.seconds)
            print(
                f"{policy:<8}{threads:>8}{r['batches']:>9.0f}{r['samples_per_s'] / 1e6:>12.2f}"
                f"{r['us_per_batch']:>10.0f}{r['fsyncs']:>8.0f}{r['mb_per_s']:>8.0f}"
            )
        r = bench_replay(root / "replay", args.replay_samples)
        print(
            f"replay {r['samples'] / 1e6:.0f}M samples: {r['seconds']:.2f} s "
            f"({r['samples_per_s'] / 1e6:.1f} Msamples/s, open + read + decode + concatenate)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
