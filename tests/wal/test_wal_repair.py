"""The repair command's function: truncate at the first damage, keep everything before it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import xxhash
from wal_testutil import same_groups, small_samples, write_raw_segment

from tsdb.errors import CorruptionError, DataDirLockedError, StorageError
from tsdb.wal import DataDir, WriteAheadLog, repair_data_dir, repair_wal
from tsdb.wal.segment import FRAME_HEADER_SIZE, HEADER_SIZE, encode_frames, encode_header


def _groups(ks: range) -> list:
    return [[small_samples(k)] for k in ks]


def _replayed(directory: Path, shard: int = 0) -> list:
    with WriteAheadLog.open(directory, shard=shard, fsync="never") as log:
        return list(log.replay())


def _corrupt_middle(wal: Path, shard: int = 0) -> list[int]:
    """Segments 1 (groups 0-4, group 2 damaged) and 2 (groups 5-6); returns segment 1's group ends."""
    ends = write_raw_segment(wal / "00000001.seg", _groups(range(5)), shard=shard)
    write_raw_segment(wal / "00000002.seg", _groups(range(5, 7)), shard=shard, segment_id=2)
    data = bytearray((wal / "00000001.seg").read_bytes())
    data[ends[1] + FRAME_HEADER_SIZE + 5] ^= 0x40
    (wal / "00000001.seg").write_bytes(bytes(data))
    return ends


def test_repair_truncates_at_the_first_damage_and_keeps_the_prefix(tmp_path: Path) -> None:
    ends = _corrupt_middle(tmp_path)
    original = (tmp_path / "00000001.seg").read_bytes()
    second = (tmp_path / "00000002.seg").read_bytes()
    with pytest.raises(CorruptionError) as err:
        _replayed(tmp_path)  # start-up stops (after opening segment 3 for its own writes)
    assert (err.value.path, err.value.offset) == (str(tmp_path / "00000001.seg"), ends[1])
    report = repair_wal(tmp_path, shard=0)
    assert report.damage is not None and report.damage.offset == ends[1]
    assert report.segments_removed == (tmp_path / "00000002.seg", tmp_path / "00000003.seg")
    assert report.bytes_removed == len(original) - ends[1] + len(second) + HEADER_SIZE
    assert "00000001.seg at offset" in str(report)
    # the removed bytes are kept aside, byte for byte
    assert (tmp_path / "00000001.seg.damaged").read_bytes() == original
    assert (tmp_path / "00000002.seg.damaged").read_bytes() == second
    assert (tmp_path / "00000001.seg").stat().st_size == ends[1]
    assert same_groups(_replayed(tmp_path), _groups(range(2)))


def test_repair_of_an_intact_log_changes_nothing(tmp_path: Path) -> None:
    write_raw_segment(tmp_path / "00000001.seg", _groups(range(3)))
    before = (tmp_path / "00000001.seg").read_bytes()
    report = repair_wal(tmp_path)
    assert report.damage is None and report.bytes_removed == 0
    assert str(report).endswith("intact")
    assert (tmp_path / "00000001.seg").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000001.seg"]


def test_dry_run_reports_without_touching(tmp_path: Path) -> None:
    ends = _corrupt_middle(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    report = repair_wal(tmp_path, dry_run=True)
    assert report.damage is not None and report.damage.offset == ends[1]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_repair_without_backup_deletes(tmp_path: Path) -> None:
    _corrupt_middle(tmp_path)
    repair_wal(tmp_path, backup=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000001.seg"]
    assert same_groups(_replayed(tmp_path), _groups(range(2)))


def test_a_damaged_header_removes_that_segment_and_the_rest(tmp_path: Path) -> None:
    write_raw_segment(tmp_path / "00000001.seg", _groups(range(2)))
    write_raw_segment(tmp_path / "00000002.seg", _groups(range(2, 4)), segment_id=2)
    write_raw_segment(tmp_path / "00000003.seg", _groups(range(4, 6)), segment_id=3)
    data = bytearray((tmp_path / "00000002.seg").read_bytes())
    data[3] ^= 1
    (tmp_path / "00000002.seg").write_bytes(bytes(data))
    report = repair_wal(tmp_path)
    assert report.damage is not None and report.damage.offset == 0
    assert same_groups(_replayed(tmp_path), _groups(range(2)))


def test_a_gap_in_segment_ids_is_repaired_by_dropping_what_follows_it(tmp_path: Path) -> None:
    write_raw_segment(tmp_path / "00000001.seg", _groups(range(2)))
    write_raw_segment(tmp_path / "00000003.seg", _groups(range(2, 4)), segment_id=3)
    report = repair_wal(tmp_path)
    assert report.damage is not None and "00000002.seg is missing" in report.damage.reason
    assert same_groups(_replayed(tmp_path), _groups(range(2)))


def test_an_undecodable_record_with_a_valid_checksum_is_damage_too(tmp_path: Path) -> None:
    good = encode_frames([small_samples(1)])
    bad = bytearray(encode_frames([small_samples(2)]))
    bad[16:20] = (99).to_bytes(4, "little")  # claim 99 samples; fix the checksum so only the grammar is wrong
    struct.pack_into("<Q", bad, 0, xxhash.xxh3_64_intdigest(bytes(bad[8:])))
    (tmp_path / "00000001.seg").write_bytes(encode_header(0, 1) + bytes(good) + bytes(bad) + bytes(good))
    with pytest.raises(CorruptionError, match="undecodable record") as err:
        _replayed(tmp_path)
    assert err.value.offset == HEADER_SIZE + len(good)
    report = repair_wal(tmp_path)
    assert report.damage is not None and report.damage.offset == HEADER_SIZE + len(good)
    assert same_groups(_replayed(tmp_path), [[small_samples(1)]])


def test_repair_data_dir_repairs_every_shard_under_the_lock(tmp_path: Path) -> None:
    with DataDir.open(tmp_path, num_shards=2) as dd:
        write_raw_segment(dd.wal_dir(0) / "00000001.seg", _groups(range(2)))
        _corrupt_middle(dd.wal_dir(1), shard=1)
        # while a server holds the directory, repair is refused
        with pytest.raises(DataDirLockedError):
            repair_data_dir(tmp_path)
    reports = repair_data_dir(tmp_path)
    assert [r.damage is None for r in reports] == [True, False]
    with DataDir.open(tmp_path) as dd:
        assert same_groups(_replayed(dd.wal_dir(1), shard=1), _groups(range(2)))


def test_repair_refuses_a_directory_that_is_not_a_data_dir(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not a tsdb data directory"):
        repair_data_dir(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_tsdb_repair_command_is_wired_into_the_cli(tmp_path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "tsdb.cli", "repair", "--data-dir", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 1
    assert "not a tsdb data directory" in out.stderr
