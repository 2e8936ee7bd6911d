"""WAL format 2: RETENTION with newest_ns, version 1 segments still read, the cut epoch."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st
from wal_testutil import I64_MAX, I64_MIN, small_samples, write_raw_segment

from tsdb.errors import StorageError
from tsdb.wal import FileOps, LogCutError, RetentionRecord, WriteAheadLog
from tsdb.wal.records import decode_record, encode_record
from tsdb.wal.segment import SEGMENT_VERSION


@given(st.integers(I64_MIN, I64_MAX), st.one_of(st.none(), st.integers(I64_MIN, I64_MAX)))
def test_retention_records_round_trip_with_and_without_newest(cutoff: int, newest: int | None) -> None:
    rtype, pieces = encode_record(RetentionRecord(cutoff, newest))
    payload = b"".join(bytes(p) for p in pieces)
    assert len(payload) == (8 if newest is None else 16)
    assert decode_record(rtype, payload) == RetentionRecord(cutoff, newest)


def _as_version(path: Path, version: int) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, 8, version)
    struct.pack_into("<Q", data, 24, xxhash.xxh3_64_intdigest(bytes(data[:24])))
    path.write_bytes(bytes(data))


def test_version_1_segments_are_still_read(tmp_path: Path) -> None:
    old = [[small_samples(1)], [RetentionRecord(5)]]
    write_raw_segment(tmp_path / "00000001.seg", old)
    _as_version(tmp_path / "00000001.seg", 1)
    with WriteAheadLog.open(tmp_path, fsync="never") as log:
        records = list(log.replay())
    assert records[1] == RetentionRecord(5) and len(records) == 2


def test_a_newer_segment_version_is_refused(tmp_path: Path) -> None:
    write_raw_segment(tmp_path / "00000001.seg", [[small_samples(1)]])
    _as_version(tmp_path / "00000001.seg", SEGMENT_VERSION + 1)
    with pytest.raises(StorageError, match=f"version {SEGMENT_VERSION + 1}"):
        WriteAheadLog.open(tmp_path, fsync="never")


def test_a_cut_after_a_failed_fsync_advances_the_epoch_and_refuses_stale_writers(tmp_path: Path) -> None:
    failing = {"on": False}

    def fsync(fd: int) -> None:
        if failing["on"]:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fsync(fd)

    log = WriteAheadLog.open(tmp_path, ops=FileOps(fsync=fsync))
    try:
        epoch = log.epoch
        log.wait_durable(log.write(small_samples(1), epoch=epoch))
        failing["on"] = True
        pos = log.write(small_samples(2), epoch=epoch)
        with pytest.raises(StorageError, match="not made durable"):
            log.wait_durable(pos)
        failing["on"] = False
        assert log.epoch == epoch + 1
        size = log.position()
        with pytest.raises(LogCutError):
            log.write(small_samples(3), epoch=epoch)  # refers to what the cut may have removed
        assert log.position() == size  # nothing written
        log.wait_durable(log.write(small_samples(4), epoch=log.epoch))
    finally:
        log.close()
    with WriteAheadLog.open(tmp_path, fsync="never") as again:
        got = [int(r.series_ids[0]) for r in again.replay()]
    assert got == [1, 4]
