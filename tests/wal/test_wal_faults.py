"""Disk faults injected at the file layer: ENOSPC, failed fsync, read-only and missing directories."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from wal_testutil import same_groups, small_samples

from tsdb.errors import DiskFullError, StorageError
from tsdb.wal import FileOps, Snapshot, SnapshotStore, WalPosition, WriteAheadLog, list_segments, storage_error
from tsdb.wal.snapshot import HeadTableBuilder


class FaultyDisk:
    """FileOps whose write/fsync/ftruncate fail while armed; a failing write first writes half."""

    def __init__(self) -> None:
        self.write_error: int | None = None
        self.fsync_error: int | None = None
        self.truncate_error: int | None = None
        self.ops = FileOps(write=self.write, fsync=self.fsync, ftruncate=self.ftruncate)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        if self.write_error is None:
            return os.write(fd, data)
        half = len(data) // 2
        if half:
            os.write(fd, memoryview(data)[:half])  # the disk took part of it, as a short write does
        raise OSError(self.write_error, os.strerror(self.write_error))

    def fsync(self, fd: int) -> None:
        if self.fsync_error is not None:
            raise OSError(self.fsync_error, os.strerror(self.fsync_error))
        os.fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        if self.truncate_error is not None:
            raise OSError(self.truncate_error, os.strerror(self.truncate_error))
        os.ftruncate(fd, length)


def _replayed(directory: Path) -> tuple[list, int]:
    with WriteAheadLog.open(directory, fsync="never") as log:
        replay = log.replay()
        return list(replay), replay.stats.torn_tails


def test_enospc_mid_write_raises_disk_full_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    disk = FaultyDisk()
    log = WriteAheadLog.open(tmp_path, ops=disk.ops)
    log.append(small_samples(1))
    size = (tmp_path / "00000001.seg").stat().st_size
    disk.write_error = errno.ENOSPC
    with pytest.raises(DiskFullError, match="disk full") as err:
        log.append(small_samples(2))
    assert err.value.field == "data_dir"
    assert (tmp_path / "00000001.seg").stat().st_size == size  # the half write was rolled back
    assert log.stats().write_errors == 1
    disk.write_error = None  # space is back
    log.append(small_samples(3))
    # crash: no close; recovery sees exactly the acknowledged writes and no damage
    got, torn = _replayed(tmp_path)
    assert same_groups(got, [[small_samples(1)], [small_samples(3)]])
    assert torn == 0
    log.close()


def test_a_failed_rollback_is_retried_before_the_next_write(tmp_path: Path) -> None:
    disk = FaultyDisk()
    log = WriteAheadLog.open(tmp_path, ops=disk.ops)
    log.append(small_samples(1))
    disk.write_error, disk.truncate_error = errno.ENOSPC, errno.EIO
    with pytest.raises(DiskFullError):
        log.append(small_samples(2))
    disk.write_error = None
    with pytest.raises(StorageError, match="roll back"):  # still cannot cut the garbage: refuse to write after it
        log.append(small_samples(3))
    disk.truncate_error = None
    log.append(small_samples(4))
    got, torn = _replayed(tmp_path)
    assert same_groups(got, [[small_samples(1)], [small_samples(4)]])
    assert torn == 0
    log.close()


def test_a_crash_before_the_rollback_succeeds_leaves_only_a_torn_tail(tmp_path: Path) -> None:
    disk = FaultyDisk()
    log = WriteAheadLog.open(tmp_path, ops=disk.ops)
    log.append(small_samples(1))
    disk.write_error, disk.truncate_error = errno.ENOSPC, errno.EIO
    with pytest.raises(DiskFullError):
        log.append(small_samples(2))
    got, torn = _replayed(tmp_path)  # the process dies here
    assert same_groups(got, [[small_samples(1)]])
    assert torn == 1


def test_enospc_creating_the_next_segment_fails_the_write_and_recovers(tmp_path: Path) -> None:
    disk = FaultyDisk()
    log = WriteAheadLog.open(tmp_path, ops=disk.ops, segment_bytes=4096)
    log.append(small_samples(1, n=150))  # 3.6 KB: the next append needs a new segment
    disk.write_error = errno.ENOSPC
    with pytest.raises(DiskFullError):
        log.append(small_samples(2, n=150))
    assert [i for i, _ in list_segments(tmp_path)] == [1]  # the half-made segment was removed
    disk.write_error = None
    log.append(small_samples(3, n=150))
    log.close()
    got, torn = _replayed(tmp_path)
    assert same_groups(got, [[small_samples(1, n=150)], [small_samples(3, n=150)]])
    assert torn == 0


def test_a_failed_fsync_fails_the_writers_it_covered_and_cuts_their_records(tmp_path: Path) -> None:
    disk = FaultyDisk()
    log = WriteAheadLog.open(tmp_path, ops=disk.ops)
    log.append(small_samples(1))
    pos = log.write(small_samples(2))
    disk.fsync_error = errno.EIO
    with pytest.raises(StorageError, match="EIO") as err:
        log.wait_durable(pos)
    assert "not made durable" in err.value.message
    with pytest.raises(StorageError):  # a late waiter on the same position sees the same failure
        log.wait_durable(pos)
    disk.fsync_error = None
    later = log.append(small_samples(3))
    assert later.segment > pos.segment  # failed positions are never handed out again
    assert log.stats().fsync_errors == 1
    log.close()
    got, torn = _replayed(tmp_path)
    assert same_groups(got, [[small_samples(1)], [small_samples(3)]])
    assert torn == 0


def test_enospc_on_fsync_is_disk_full(tmp_path: Path) -> None:
    disk = FaultyDisk()
    log = WriteAheadLog.open(tmp_path, ops=disk.ops)
    disk.fsync_error = errno.ENOSPC
    with pytest.raises(DiskFullError):
        log.append(small_samples(1))
    disk.fsync_error = None
    log.close()


def test_enospc_while_writing_a_snapshot_keeps_the_previous_one(tmp_path: Path) -> None:
    disk = FaultyDisk()
    store = SnapshotStore(tmp_path, shard=0, ops=disk.ops)
    head = HeadTableBuilder()
    head.add(1, [1, 2], [1.0, 2.0])
    store.write(Snapshot(0, WalPosition(1, 32), head=head.build()))
    disk.write_error = errno.ENOSPC
    with pytest.raises(DiskFullError):
        store.write(Snapshot(0, WalPosition(2, 32)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000001.snap"]  # no temp file left behind
    loaded = SnapshotStore(tmp_path, shard=0).load_latest()
    assert loaded.snapshot is not None
    assert loaded.snapshot.wal_position == WalPosition(1, 32)


@pytest.mark.parametrize(
    ("code", "kind", "text"),
    [
        (errno.ENOSPC, DiskFullError, "disk full"),
        (errno.EDQUOT, DiskFullError, "disk full"),
        (errno.EACCES, StorageError, "permission denied"),
        (errno.EPERM, StorageError, "permission denied"),
        (errno.EROFS, StorageError, "read-only file system"),
        (errno.ENOENT, StorageError, "missing file or directory"),
        (errno.EIO, StorageError, "I/O error EIO"),
    ],
)
def test_os_errors_map_to_the_storage_error_tree(code: int, kind: type, text: str) -> None:
    exc = storage_error(OSError(code, os.strerror(code)), "append to", "/data/x.seg")
    assert type(exc) is kind
    assert text in exc.message and "/data/x.seg" in exc.message
    assert exc.field == "data_dir"


def test_a_read_only_directory_fails_open_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def read_only_open(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if flags & os.O_CREAT and str(path).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only_open)
    with pytest.raises(StorageError, match="read-only file system") as err:
        WriteAheadLog.open(tmp_path)
    assert not isinstance(err.value, DiskFullError)


def test_a_vanished_directory_fails_the_write_then_works_once_restored(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    log = WriteAheadLog.open(wal, fsync="never", segment_bytes=4096)
    log.append(small_samples(1, n=150))
    (wal / "00000001.seg").unlink()
    wal.rmdir()
    with pytest.raises(StorageError, match="missing file or directory"):
        log.append(small_samples(2, n=150))  # needs a new segment in the missing directory
    wal.mkdir()
    log.append(small_samples(3, n=150))
    log.close()
