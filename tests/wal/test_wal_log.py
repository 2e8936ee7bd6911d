"""The per-shard WAL: rotation, group commit, fsync policies, positions and segment dropping."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from wal_testutil import same_groups, small_samples

from tsdb.errors import InvalidInputError, StorageError
from tsdb.wal import FileOps, FsyncPolicy, SeriesDef, SeriesRecord, WalPosition, WriteAheadLog, list_segments
from tsdb.wal.segment import HEADER_SIZE


class FsyncRecorder:
    """FileOps whose fsync records, per file, the size it made durable (the size when it began)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.lock = threading.Lock()
        self.durable: dict[str, int] = {}
        self.calls = 0
        self.delay = delay
        self.ops = FileOps(fsync=self.fsync)

    def fsync(self, fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        size = os.fstat(fd).st_size
        if self.delay:
            time.sleep(self.delay)  # a slow disk, so that writers pile up behind the leader
        os.fsync(fd)
        with self.lock:
            self.calls += 1
            self.durable[name] = max(self.durable.get(name, 0), size)

    def covers(self, directory: Path, pos: WalPosition) -> bool:
        path = str(directory / f"{pos.segment:08d}.seg")
        with self.lock:
            return self.durable.get(path, 0) >= pos.offset


def test_group_commit_many_threads_each_append_returns_only_after_an_fsync_covering_it(tmp_path: Path) -> None:
    rec = FsyncRecorder(delay=0.002)
    log = WriteAheadLog.open(tmp_path, fsync="always", ops=rec.ops, segment_bytes=64 << 10)
    threads, per_thread = 8, 40
    failures: list[str] = []
    positions: list[WalPosition] = []

    def writer(t: int) -> None:
        for i in range(per_thread):
            pos = log.append(small_samples(t * 1000 + i))
            if not rec.covers(tmp_path, pos):
                failures.append(f"append at {pos} returned before an fsync covered it")
            positions.append(pos)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stats = log.stats()
    log.close()
    assert failures == []
    assert len(set(positions)) == threads * per_thread
    assert stats.appends == threads * per_thread
    assert 0 < stats.fsyncs < stats.appends  # writers shared fsyncs
    assert rec.calls == stats.fsyncs
    got = list(WriteAheadLog.open(tmp_path, fsync="never").replay())
    assert sorted(int(r.series_ids[0]) for r in got) == sorted(
        t * 1000 + i for t in range(threads) for i in range(per_thread)
    )


def test_segments_rotate_at_the_size_limit_and_replay_in_order(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path, fsync="never", segment_bytes=4096) as log:
        for k in range(40):
            log.append(small_samples(k))  # 16 + 4 + 240 bytes each
        assert log.stats().segments_created > 2
    segs = list_segments(tmp_path)
    assert [i for i, _ in segs] == list(range(1, len(segs) + 1))
    assert all(p.stat().st_size <= 4096 for _, p in segs)
    with WriteAheadLog.open(tmp_path, fsync="never") as log:
        assert same_groups(list(log.replay()), [[small_samples(k)] for k in range(40)])


def test_a_record_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    big = small_samples(1, n=1000)  # 24 KB
    with WriteAheadLog.open(tmp_path, fsync="never", segment_bytes=4096) as log:
        log.append(small_samples(0))
        pos = log.append(big)
        log.append(small_samples(2))
    assert pos.offset > 4096
    with WriteAheadLog.open(tmp_path, fsync="never") as log:
        assert same_groups(list(log.replay()), [[small_samples(0)], [big], [small_samples(2)]])


def test_each_process_appends_to_new_segments_only(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path, fsync="never") as log:
        first = log.append(small_samples(1))
    with WriteAheadLog.open(tmp_path, fsync="never") as log:
        second = log.append(small_samples(2))
        assert same_groups(list(log.replay()), [[small_samples(1)]])  # its own writes are not replayed
    assert second.segment == first.segment + 1


def test_one_append_of_several_records_is_one_group(tmp_path: Path) -> None:
    series = SeriesRecord((SeriesDef(1, "cpu", (("host", "a"),)),))
    with WriteAheadLog.open(tmp_path) as log:
        log.append([series, small_samples(1)])
    with WriteAheadLog.open(tmp_path) as log:
        replay = log.replay()
        assert same_groups(list(replay), [[series, small_samples(1)]])
        assert replay.stats.groups == 1


def test_never_does_not_fsync_and_always_does(tmp_path: Path) -> None:
    counts = {}
    for policy in ("never", "always"):
        rec = FsyncRecorder()
        with WriteAheadLog.open(tmp_path / policy, fsync=policy, ops=rec.ops) as log:
            for k in range(5):
                log.append(small_samples(k))
        counts[policy] = rec.calls
    assert counts["never"] == 0
    assert counts["always"] >= 5  # one per sequential append (+ close)


def test_interval_policy_fsyncs_in_the_background(tmp_path: Path) -> None:
    rec = FsyncRecorder()
    log = WriteAheadLog.open(tmp_path, fsync="interval:0.01", ops=rec.ops)
    pos = log.append(small_samples(1))
    deadline = time.monotonic() + 30
    while not rec.covers(tmp_path, pos) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert rec.covers(tmp_path, pos)
    log.close()


def test_sync_forces_an_fsync_whatever_the_policy(tmp_path: Path) -> None:
    rec = FsyncRecorder()
    with WriteAheadLog.open(tmp_path, fsync="never", ops=rec.ops) as log:
        pos = log.append(small_samples(1))
        assert not rec.covers(tmp_path, pos)
        log.sync()
        assert rec.covers(tmp_path, pos)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("always", FsyncPolicy("always")),
        ("never", FsyncPolicy("never")),
        ("interval:1", FsyncPolicy("interval", 1.0)),
        ("interval:250ms", FsyncPolicy("interval", 0.25)),
        (" Interval:0.5 ", FsyncPolicy("interval", 0.5)),
    ],
)
def test_fsync_policy_parses(text: str, expected: FsyncPolicy) -> None:
    assert FsyncPolicy.parse(text) == expected


@pytest.mark.parametrize("text", ["sometimes", "interval:", "interval:-1", "interval:abc", "interval:0"])
def test_bad_fsync_policy_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        FsyncPolicy.parse(text)
    assert err.value.field == "fsync"
    assert repr(text) in err.value.message


def test_positions_increase_and_rotate_starts_a_new_segment(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path) as log:
        a = log.append(small_samples(1))
        b = log.append(small_samples(2))
        assert a < b == log.position()
        r = log.rotate()
        assert r == WalPosition(b.segment + 1, HEADER_SIZE)
        assert log.rotate() == r  # nothing written since: no new segment
        c = log.append(small_samples(3))
        assert c > r


def test_drop_before_deletes_covered_segments_and_replay_resumes_from_the_position(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path) as log:
        log.append(small_samples(1))
        pos = log.rotate()
        log.append(small_samples(2))
        assert log.drop_before(pos) == 1
        assert log.drop_before(WalPosition(10**6, 0)) == 0  # never the current segment
    assert [i for i, _ in list_segments(tmp_path)] == [pos.segment]
    with WriteAheadLog.open(tmp_path) as log:
        assert same_groups(list(log.replay(after=pos)), [[small_samples(2)]])


def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path)
    log.close()
    log.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        log.append(small_samples(1))


def test_a_5000_sample_batch_is_one_record_of_three_columns(tmp_path: Path) -> None:
    n = 5000
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 100, n)
    ts = rng.integers(0, 2**62, n)
    vals = rng.standard_normal(n)
    from tsdb.wal import SamplesRecord

    with WriteAheadLog.open(tmp_path) as log:
        log.append(SamplesRecord(ids, ts, vals))
        assert log.stats().bytes == 16 + 4 + 24 * n
    with WriteAheadLog.open(tmp_path) as log:
        (back,) = list(log.replay())
    assert np.array_equal(back.series_ids, ids) and np.array_equal(back.timestamps, ts)
    assert np.array_equal(back.values, vals)
