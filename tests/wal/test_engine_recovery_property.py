"""Property: after any sequence of engine operations, recovery reproduces the engine exactly.

Random writes (batches with late, duplicate and staleness-marker samples, single samples),
deletes, maintenance passes (retention, rollup expiry, snapshots) and explicit snapshots run
on an engine with a data directory. At random points the data directory is copied, which is
what a crash leaves behind (every write has returned, so its records are in the page cache);
the engine's exact state is recorded then. Each copy, opened afterwards, must recover to that
state bit for bit (samples, chunk pre-aggregates, heads, order state, rollup rows), and a
clean close + reopen must reproduce the final state. Without retention the samples must also
equal a naive model (last write wins, deletes remove).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from engine_testutil import engine_state, samples_of
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tsdb import TSDB, Batch, InvalidTimestampError, Matcher
from tsdb._types import STALE_NAN
from tsdb.labels import MatchOp, canonical_key

#: tmpfs when there is one: fsync is free there, and what is checked is the content, not timing.
TMP_ROOT = "/dev/shm" if Path("/dev/shm").is_dir() else None
SERIES = [("cpu", (("host", "a"),)), ("cpu", (("host", "b"),)), ("mem", (("host", "a"),)), ("up", ())]
NS = 1_000_000_000

finite_st = st.integers(-40, 40).map(lambda x: x / 4)
value_st = st.one_of(finite_st, st.just(STALE_NAN))  # markers: NaN payloads must survive exactly
row_st = st.tuples(st.integers(0, len(SERIES) - 1), st.integers(0, 400), value_st)
#: A run of one series at regular steps: fills chunks with narrow spans, which retention expires.
run_st = st.builds(
    lambda k, start, step, values: [(k, start + i * step, v) for i, v in enumerate(values)],
    st.integers(0, len(SERIES) - 1),
    st.integers(0, 400),
    st.integers(1, 10),
    st.lists(value_st, min_size=1, max_size=12),
)
op_st = st.one_of(
    st.tuples(st.just("batch"), st.lists(row_st, min_size=1, max_size=30)),
    st.tuples(st.just("batch"), run_st),
    st.tuples(st.just("one"), st.tuples(st.integers(0, len(SERIES) - 1), st.integers(0, 400), finite_st)),
    st.tuples(
        st.just("delete"),
        st.sampled_from(["cpu", "mem", "up"]),
        st.one_of(st.none(), st.integers(0, 400)),
        st.one_of(st.none(), st.integers(0, 400)),
    ),
    st.tuples(st.just("maintenance")),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("crash")),
)


def _open(path: Path, retention: float) -> TSDB:
    return TSDB(
        data_dir=path,
        chunk_size=4,
        num_shards=2,
        retention_seconds=retention,
        rollups="10s:2m,1m:10m",
        future_tolerance_seconds=None,
        fsync="never",  # the copy sees the page cache; fsync timing is not what this test checks
        snapshot_interval_seconds=0,
    )


class Model:
    """Samples per canonical key, last write wins; deletes remove (no retention)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[int, float]] = {}

    def write(self, k: int, ts: int, v: float) -> None:
        metric, labels = SERIES[k]
        self.data.setdefault(canonical_key(metric, labels), {})[ts * NS] = v

    def delete(self, metric: str, lo: int | None, hi: int | None) -> None:
        for key, pts in self.data.items():
            if key == metric or key.startswith(metric + "{"):
                for t in [t for t in pts if (lo is None or t >= lo * NS) and (hi is None or t <= hi * NS)]:
                    del pts[t]

    def samples(self) -> dict[str, dict[int, Any]]:
        return {k: {t: _bits(v) for t, v in pts.items()} for k, pts in self.data.items() if pts}


def _bits(v: float) -> int:
    return int(np.float64(v).view(np.uint64))


def _apply(db: TSDB, model: Model, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "batch":
        rows = op[1]
        batch = Batch(
            list(SERIES),
            np.array([r[0] for r in rows], dtype=np.int64),
            np.array([r[1] * NS for r in rows], dtype=np.int64),
            np.array([r[2] for r in rows], dtype=np.float64),
        )
        try:
            db.write_batch(batch)
        except InvalidTimestampError:  # older than retention allows: nothing stored
            return
        for k, ts, v in rows:
            model.write(k, ts, v)
    elif kind == "one":
        k, ts, v = op[1]
        metric, labels = SERIES[k]
        try:
            db.write(metric, ts, v, labels=dict(labels))
        except InvalidTimestampError:
            return
        model.write(k, ts, v)
    elif kind == "delete":
        _, metric, lo, hi = op
        if lo is not None and hi is not None and lo > hi:
            lo, hi = hi, lo
        db.delete([Matcher("__name__", MatchOp.EQ, metric)], lo, hi)
        model.delete(metric, lo, hi)
    elif kind == "maintenance":
        db.run_maintenance()
    elif kind == "snapshot":
        db.snapshot()


@settings(max_examples=200)
@given(ops=st.lists(op_st, min_size=1, max_size=40), retention=st.sampled_from([0, 90]))
# A retention pass that seals an expired head feeds a tier row older than the tier's retention;
# it must expire in that same pass, or an identical later pass (which the WAL skips) drops it.
@example(ops=[("batch", [(0, 0, 0.0)]), ("batch", [(1, 130, 0.0)]), ("maintenance",), ("maintenance",)], retention=90)
def test_recovery_reproduces_the_state_at_every_crash_point(ops: list[tuple[Any, ...]], retention: float) -> None:
    # Sealing a chunk that holds staleness markers (signalling NaNs) sums them, which sets
    # numpy's "invalid" flag; that is the engine's business, not this test's.
    with tempfile.TemporaryDirectory(dir=TMP_ROOT) as tmp:
        root = Path(tmp)
        model = Model()
        crashes: list[tuple[Path, Any]] = []
        db = _open(root / "db", retention)
        try:
            for op in ops:
                if op[0] == "crash":
                    copy = root / f"crash{len(crashes)}"
                    shutil.copytree(root / "db", copy)
                    crashes.append((copy, engine_state(db)))
                else:
                    _apply(db, model, op)
            final = engine_state(db)
            if not retention:
                assert {k: {t: _bits(v) for t, v in p.items()} for k, p in samples_of(db).items()} == model.samples()
        finally:
            db.close()
        for copy, expected in crashes:
            recovered = _open(copy, retention)
            try:
                assert engine_state(recovered) == expected
            finally:
                recovered.close()
        reopened = _open(root / "db", retention)
        try:
            assert engine_state(reopened) == final
        finally:
            reopened.close()
