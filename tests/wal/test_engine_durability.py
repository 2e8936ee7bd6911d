"""The engine with a data directory: round trips, crashes, damaged logs, repair, locking, faults."""

from __future__ import annotations

import errno
import gc
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from engine_testutil import engine_state, mount_tmpfs, samples_of

from tsdb import TSDB, Batch, Matcher
from tsdb.errors import CorruptionError, DataDirLockedError, DiskFullError, StorageError
from tsdb.labels import MatchOp
from tsdb.wal import FileOps, list_segments
from tsdb.wal.repair_cli import main as repair_main

T0 = 1_700_000_000  # seconds
NS = 1_000_000_000


def _open(path: Path, **kw: Any) -> TSDB:
    opts: dict[str, Any] = {"chunk_size": 8, "num_shards": 2, "future_tolerance_seconds": None, "rollups": "1m:1d"}
    opts.update(kw)
    return TSDB(data_dir=path, **opts)


def _fill(db: TSDB, n: int = 200, seed: int = 0) -> None:
    """In-order, out-of-order, duplicate and late writes over a few series."""
    rng = np.random.default_rng(seed)
    for host in ("a", "b", "c"):
        ts = T0 + np.arange(n)
        db.write_columns("cpu", ts, rng.normal(size=n).round(3), labels={"host": host})
    late = T0 + rng.integers(0, n, 30)
    db.write_columns("cpu", late, np.full(30, 7.25), labels={"host": "a"})  # overwrites, late
    for i in range(20):
        db.write("mem", T0 + n - i, float(i), labels={"host": "a"})  # backwards
    db.write("up", T0, 1.0)


def _answers(db: TSDB) -> list[Any]:
    end = T0 + 10_000
    return [
        db.query("cpu", T0, end, labels={"host": "a"}),
        db.query("mem", T0, end),
        db.query("cpu", T0, end, agg="sum"),
        db.select("cpu", T0, end, agg="max", downsample=60).resolution,
        [(s.labels, s.values.tolist()) for s in db.select("cpu", T0, end, agg="avg", downsample=60).series],
        [(s.labels, s.values.tolist()) for s in db.select("cpu", T0, end, agg="increase", downsample=120).series],
        db.series(),
    ]


def test_close_and_reopen_gives_identical_answers_and_state(tmp_path: Path) -> None:
    db = _open(tmp_path)
    _fill(db)
    before, state = _answers(db), engine_state(db)
    assert before[3] == "1m"  # the rollup tier answers
    db.close()
    db = _open(tmp_path)
    try:
        assert _answers(db) == before
        assert engine_state(db) == state
        wal = db.stats()["wal"]
        assert wal["snapshots_loaded"] == 2 and wal["replayed_samples"] == 0  # clean shutdown: snapshot only
    finally:
        db.close()


def test_dropped_without_close_recovers_from_the_wal(tmp_path: Path) -> None:
    db = _open(tmp_path)
    _fill(db)
    before, state = _answers(db), engine_state(db)
    del db  # no close: no snapshot; the lock is released when the object goes
    gc.collect()
    db = _open(tmp_path)
    try:
        assert _answers(db) == before
        assert engine_state(db) == state
        wal = db.stats()["wal"]
        assert wal["snapshots_loaded"] == 0 and wal["replayed_samples"] > 0
    finally:
        db.close()


def test_memory_only_engine_has_no_wal(tmp_path: Path) -> None:
    db = TSDB()
    db.write("up", T0, 1.0)
    assert db.stats()["wal"] is None
    assert all(shard.log is None for shard in db.shards)
    assert db.snapshot() is None
    db.close()
    assert TSDB(data_dir="").stats()["wal"] is None


def test_snapshot_drops_the_wal_it_covers(tmp_path: Path) -> None:
    db = _open(tmp_path, num_shards=1)
    try:
        for k in range(5):
            _fill(db, seed=k)
            db.snapshot()
        segments = list_segments(tmp_path / "shard-000" / "wal")
        # the WAL is kept from the older of the two snapshots kept on: a few segments, not one per write
        assert 1 <= len(segments) <= 3
        assert len(list((tmp_path / "snapshots" / "shard-000").glob("*.snap"))) == 2
        wal = db.stats()["wal"]
        assert wal["snapshots"] == 5 and wal["last_snapshot_bytes"] > 0 and wal["segments"] == len(segments)
    finally:
        db.close()


def test_maintenance_snapshots_on_its_interval(tmp_path: Path) -> None:
    db = _open(tmp_path, snapshot_interval_seconds=0)
    try:
        _fill(db)
        assert db.run_maintenance()["snapshot_bytes"] > 0
        assert db.run_maintenance()["snapshot_bytes"] == 0  # nothing changed since: nothing written
    finally:
        db.close()
    db = _open(tmp_path, snapshot_interval_seconds=3600)
    try:
        assert "snapshot_bytes" not in db.run_maintenance()
    finally:
        db.close()


def test_expired_data_does_not_come_back(tmp_path: Path) -> None:
    db = _open(tmp_path, retention_seconds=60, snapshot_interval_seconds=3600)
    for k in range(0, 600, 50):  # a batch may not span more than the retention window
        db.write_columns("cpu", T0 + np.arange(k, k + 50), np.arange(k, k + 50.0))
    db.run_maintenance()  # expires whole chunks older than newest - 60 s; no snapshot
    kept, raw = samples_of(db), db.query("cpu")
    oldest = min(min(p) for p in kept.values())
    assert oldest > T0 * NS
    del db
    gc.collect()
    db = _open(tmp_path, retention_seconds=60)
    try:
        assert samples_of(db) == kept  # the RETENTION record was replayed
        assert db.query("cpu") == raw  # raw answers stop at the same retention edge
        history = db.select("cpu", T0, T0 + 600, agg="count", downsample=60)
        assert history.resolution == "1m"  # the tier still holds what raw retention dropped
        assert sum(history.series[0].values.tolist()) == 600
    finally:
        db.close()


def test_an_older_snapshot_plus_the_wal_replaces_a_corrupt_newest_one(tmp_path: Path) -> None:
    db = _open(tmp_path, num_shards=1)
    _fill(db, seed=1)
    db.snapshot()
    _fill(db, seed=2)
    db.snapshot()
    _fill(db, seed=3)
    crash = _crash_copy(tmp_path)
    state = engine_state(db)
    db.close()
    newest = sorted((crash / "snapshots" / "shard-000").glob("*.snap"))[-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x40
    newest.write_bytes(bytes(data))
    db = _open(crash, num_shards=1)
    try:
        assert engine_state(db) == state
        assert db.stats()["wal"]["snapshots_skipped"] == 1
    finally:
        db.close()


def _crash_copy(root: Path) -> Path:
    """What a crash now would leave behind: a copy of the data directory (page cache included)."""
    crash = root.parent / (root.name + "-crash")
    shutil.copytree(root, crash)
    return crash


def _last_segment(root: Path) -> Path:
    return list_segments(root / "shard-000" / "wal")[-1][1]


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_a_torn_tail_is_cut_counted_and_loses_only_the_last_write(tmp_path: Path, damage: str) -> None:
    db = _open(tmp_path, num_shards=1)
    _fill(db)
    state = engine_state(db)
    db.write_columns("cpu", T0 + np.arange(1000, 1050), np.ones(50), labels={"host": "z"})
    crash = _crash_copy(tmp_path)
    db.close()
    seg = _last_segment(crash)
    data = bytearray(seg.read_bytes())
    if damage == "truncate":
        seg.write_bytes(bytes(data[:-100]))
    else:
        data[-100] ^= 0x01
        seg.write_bytes(bytes(data))
    db = _open(crash, num_shards=1)
    try:
        assert engine_state(db) == state
        assert db.stats()["wal"]["torn_tails"] == 1 and db.stats()["wal"]["torn_bytes"] > 0
    finally:
        db.close()


def test_damage_before_the_tail_stops_start_up_and_repair_keeps_what_precedes(tmp_path: Path) -> None:
    db = _open(tmp_path, num_shards=1)
    db.write_columns("cpu", T0 + np.arange(10), np.arange(10.0))
    first = samples_of(db)
    db.write_columns("cpu", T0 + np.arange(10, 20), np.arange(10.0, 20.0))
    db.write_columns("cpu", T0 + np.arange(20, 30), np.arange(20.0, 30.0))
    seg = _last_segment(tmp_path)
    del db
    gc.collect()
    data = bytearray(seg.read_bytes())
    size_first = 32 + (16 + 4 + 24 * 10) + (16 + 4 + 8 + 4 + 3)  # header, SAMPLES(10), SERIES("cpu")
    data[size_first + 40] ^= 0xFF  # inside the second write; the third stays intact
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="tsdb repair --data-dir") as err:
        _open(tmp_path, num_shards=1)
    assert seg.name in err.value.message and err.value.offset is not None
    out = io.StringIO()
    assert repair_main(["--data-dir", str(tmp_path), "--dry-run"], out=out) == 0
    assert "(dry run) shard 0" in out.getvalue()
    assert repair_main(["--data-dir", str(tmp_path)], out=out) == 0
    assert list(seg.parent.glob("*.damaged"))
    db = _open(tmp_path, num_shards=1)
    try:
        assert samples_of(db) == first
    finally:
        db.close()


def test_repair_command_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATA_DIR", raising=False)
    err = io.StringIO()
    assert repair_main([], err=err) == 2
    assert "--data-dir is required" in err.getvalue()
    err = io.StringIO()
    assert repair_main(["--data-dir", str(tmp_path / "nothing")], err=err) == 1
    assert "not a tsdb data directory" in err.getvalue()
    db = _open(tmp_path)
    try:
        err = io.StringIO()
        assert repair_main(["--data-dir", str(tmp_path)], err=err) == 1  # a running engine holds the lock
        assert "in use by process" in err.getvalue()
    finally:
        db.close()


def test_a_second_process_is_refused_with_the_owner_named(tmp_path: Path) -> None:
    db = _open(tmp_path)
    try:
        with pytest.raises(DataDirLockedError, match=f"PID {os.getpid()}"):
            _open(tmp_path)
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from tsdb import TSDB; TSDB(data_dir=sys.argv[1], num_shards=2)",
                tmp_path,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode != 0
        assert "DataDirLockedError" in child.stderr and f"PID {os.getpid()}" in child.stderr
    finally:
        db.close()
    _open(tmp_path).close()  # released by close


def test_another_shard_count_is_refused(tmp_path: Path) -> None:
    _open(tmp_path, num_shards=2).close()
    with pytest.raises(StorageError, match="num_shards=2"):
        _open(tmp_path, num_shards=3)


def test_a_data_dir_that_cannot_be_created_is_a_clear_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="file") as err:
        _open(tmp_path / "file" / "data")
    assert err.value.field == "data_dir"


def test_bad_durability_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        TSDB(data_dir=tmp_path, fsync="sometimes")
    with pytest.raises(ValueError, match="snapshot_interval_seconds"):
        TSDB(snapshot_interval_seconds=-1)


@pytest.mark.parametrize("fsync", ["interval:0.05", "never"])
def test_relaxed_fsync_policies_still_survive_a_process_crash(tmp_path: Path, fsync: str) -> None:
    db = _open(tmp_path, fsync=fsync)
    _fill(db)
    state = engine_state(db)
    del db
    gc.collect()
    db = _open(tmp_path, fsync=fsync)
    try:
        assert engine_state(db) == state
        assert db.stats()["wal"]["fsync"] == ("interval:0.05" if fsync != "never" else "never")
    finally:
        db.close()


# -- injected faults ----------------------------------------------------------------------


class Faults:
    """Arms ENOSPC on every file write, or EIO on fsync, at the WAL's file layer."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.enospc = False
        self.fsync_error = False
        import tsdb.wal.segment as segment
        import tsdb.wal.snapshot as snapshot

        real_write_all = segment.write_all

        def write_all(write: Any, fd: int, data: Any) -> None:
            if self.enospc:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_write_all(write, fd, data)

        monkeypatch.setattr(segment, "write_all", write_all)
        monkeypatch.setattr(snapshot, "write_all", write_all)

    def fsync(self, fd: int) -> None:
        if self.fsync_error:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fsync(fd)

    def arm_fsync(self, db: TSDB) -> None:
        """Route the WAL's fsyncs through ``fsync`` (test seam: the log's FileOps)."""
        ops = FileOps(fsync=self.fsync)
        for log in db._wal.logs:  # type: ignore[union-attr]
            log.wal._ops = ops
            if log.wal._seg is not None:
                log.wal._seg._ops = ops


def test_disk_full_refuses_the_write_leaves_memory_unchanged_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = Faults(monkeypatch)
    db = _open(tmp_path)
    _fill(db)
    state, series = engine_state(db), db.series()
    faults.enospc = True
    with pytest.raises(DiskFullError, match="disk full"):
        db.write_columns("cpu", T0 + np.arange(5), np.ones(5), labels={"host": "new"})
    with pytest.raises(DiskFullError):
        db.write("cpu", T0 + 1, 99.0, labels={"host": "a"})
    with pytest.raises(DiskFullError):
        db.delete([Matcher("__name__", MatchOp.EQ, "cpu")])
    with pytest.raises(DiskFullError):
        db.snapshot()
    assert engine_state(db) == state and db.series() == series  # nothing unacknowledged is visible
    assert db.stats()["wal"]["write_errors"] >= 3 and db.stats()["wal"]["snapshot_errors"] == 1
    faults.enospc = False  # space is back
    db.write_columns("cpu", T0 + np.arange(5), np.ones(5), labels={"host": "new"})
    state = engine_state(db)
    del db
    gc.collect()
    db = _open(tmp_path)
    try:
        assert engine_state(db) == state
    finally:
        db.close()


def test_a_failed_fsync_fails_the_write_and_later_writes_stay_recoverable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = Faults(monkeypatch)
    db = _open(tmp_path, num_shards=1)
    db.write("up", T0, 1.0)
    faults.arm_fsync(db)
    faults.fsync_error = True
    with pytest.raises(StorageError, match="not made durable"):
        db.write_columns("cpu", T0 + np.arange(3), np.ones(3), labels={"host": "n"})  # defines a new series
    faults.fsync_error = False
    # The cut took the series definition with it; acknowledged writes to the series must survive.
    db.write_columns("cpu", T0 + np.arange(3, 6), np.full(3, 2.0), labels={"host": "n"})
    db.write("up", T0 + 1, 1.0)
    acked = samples_of(db)
    crash = _crash_copy(tmp_path)
    db.close()
    db = _open(crash, num_shards=1)
    try:
        got = samples_of(db)
        assert got["up"] == acked["up"]
        assert {t: v for t, v in got['cpu{host="n"}'].items() if t >= (T0 + 3) * NS} == {
            (T0 + k) * NS: 2.0 for k in range(3, 6)
        }
    finally:
        db.close()


def test_a_really_full_disk_refuses_writes_until_space_is_freed(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    if not mount_tmpfs(mnt, "2m"):
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    try:
        db = _open(mnt / "data", num_shards=1, rollups="")
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (256 << 10))
        acked: dict[int, float] = {}
        batch = 0
        with pytest.raises(DiskFullError, match="disk full"):
            while batch < 10_000:
                ts = T0 + batch * 1000 + np.arange(1000)
                db.write_columns("m", ts, np.full(1000, float(batch)))
                acked.update(dict.fromkeys(((ts) * NS).tolist(), float(batch)))
                batch += 1
        assert samples_of(db)["m"] == acked  # the refused batch is not visible
        filler.unlink()  # space is back
        db.write_columns("m", T0 - np.arange(1, 11), np.full(10, -1.0))
        acked.update(dict.fromkeys(((T0 - np.arange(1, 11)) * NS).tolist(), -1.0))
        db.close()
        db = _open(mnt / "data", num_shards=1, rollups="")
        try:
            assert samples_of(db)["m"] == acked
        finally:
            db.close()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_read_only_file_system_is_a_clear_storage_error(tmp_path: Path) -> None:
    mnt = tmp_path / "ro"
    if not mount_tmpfs(mnt, "4m"):
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    try:
        _open(mnt / "data").close()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        with pytest.raises(StorageError, match="read-only file system"):
            _open(mnt / "data")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_permission_denied_is_a_clear_storage_error(tmp_path: Path) -> None:
    target = tmp_path / "data"
    _open(target).close()
    # Root ignores permission bits: the child drops to "nobody" after its imports.
    drop = "os.setgid(65534); os.setuid(65534)\n" if os.geteuid() == 0 else ""
    code = (
        "import os, sys\nfrom tsdb import TSDB\nfrom tsdb.errors import StorageError\n"
        f"{drop}"
        "try:\n    TSDB(data_dir=sys.argv[1], num_shards=2)\n"
        "except StorageError as e:\n    print(type(e).__name__, e.message)\n"
    )
    if not drop:
        target.chmod(0o555)
        (target / "LOCK").chmod(0o444)
    try:
        done = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=120)
    finally:
        target.chmod(0o755)
        (target / "LOCK").chmod(0o644)
    assert "StorageError permission denied" in done.stdout, done.stdout + done.stderr


def test_batches_spanning_shards_with_a_repeated_series_replay_exactly(tmp_path: Path) -> None:
    db = _open(tmp_path, chunk_size=4)
    ref = ("cpu", (("host", "a"),))
    batch = Batch(
        [ref, ("mem", ()), ref],  # the same series twice, as Batch.concat makes
        np.array([0, 2, 1, 0, 2, 1, 2], dtype=np.int64),
        (T0 + np.array([5, 1, 2, 1, 5, 3, 9], dtype=np.int64)) * NS,
        np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
    )
    db.write_batch(batch)
    assert db.query("cpu", labels={"host": "a"}) == [(T0 + 1, 4.0), (T0 + 5, 5.0), (T0 + 9, 7.0)]  # batch order wins
    state = engine_state(db)
    del db
    gc.collect()
    db = _open(tmp_path, chunk_size=4)
    try:
        assert engine_state(db) == state
    finally:
        db.close()
