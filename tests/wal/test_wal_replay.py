"""Replay: torn tails are cut and counted, corruption before the tail raises naming file and offset."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wal_testutil import any_record, same_groups, small_samples, write_raw_segment

from tsdb.errors import CorruptionError
from tsdb.wal import WalPosition, WalReplay, WriteAheadLog, list_segments
from tsdb.wal.segment import FRAME_HEADER_SIZE, HEADER_SIZE

groups_st = st.lists(st.lists(any_record, min_size=1, max_size=3), min_size=1, max_size=6)


def _replay(directory: Path, after: WalPosition | None = None, *, cut_tail: bool = True) -> tuple[list, WalReplay]:
    replay = WalReplay(list_segments(directory), after, shard=0, cut_tail=cut_tail)
    return list(replay), replay


def _flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=groups_st, data=st.data())
def test_a_tail_truncated_anywhere_replays_the_complete_groups_before_it(
    tmp_path: Path, groups: list, data: st.DataObject
) -> None:
    wal = Path(tempfile.mkdtemp(dir=tmp_path))
    path = wal / "00000001.seg"
    ends = write_raw_segment(path, groups)
    cut = data.draw(st.integers(0, ends[-1]), label="cut")
    with path.open("r+b") as f:
        f.truncate(cut)
    got, replay = _replay(wal)
    complete = [g for g, end in zip(groups, ends, strict=True) if end <= cut]
    assert same_groups(got, complete)
    at_boundary = cut == HEADER_SIZE or cut in ends
    assert replay.stats.torn_tails == (0 if at_boundary else 1)
    # the cut is on disk: the file ends at the last complete group (or is gone without a header)
    if cut < HEADER_SIZE:
        assert not path.exists()
    else:
        assert path.stat().st_size == max([HEADER_SIZE, *(e for e in ends if e <= cut)])
    again, replay2 = _replay(wal)
    assert same_groups(again, complete)
    assert replay2.stats.torn_tails == 0


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=groups_st, data=st.data())
def test_a_bit_flip_in_the_last_group_is_cut_as_a_torn_tail(tmp_path: Path, groups: list, data: st.DataObject) -> None:
    wal = Path(tempfile.mkdtemp(dir=tmp_path))
    path = wal / "00000001.seg"
    ends = write_raw_segment(path, groups)
    start = ends[-2] if len(ends) > 1 else HEADER_SIZE
    _flip(path, data.draw(st.integers(start, ends[-1] - 1)), data.draw(st.integers(0, 7)))
    got, replay = _replay(wal)
    assert same_groups(got, groups[:-1])
    assert replay.stats.torn_tails == 1
    assert replay.stats.damage[0].offset == start
    assert path.stat().st_size == start


def test_a_bit_flip_in_the_middle_of_the_last_segment_raises_naming_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "00000001.seg"
    ends = write_raw_segment(path, [[small_samples(k)] for k in range(5)])
    _flip(path, ends[1] + FRAME_HEADER_SIZE + 3)  # inside the payload of the third group
    before = path.read_bytes()
    with pytest.raises(CorruptionError) as err:
        _replay(tmp_path)
    assert err.value.path == str(path)
    assert err.value.offset == ends[1]
    assert str(path) in err.value.message and f"offset {ends[1]}" in err.value.message
    assert path.read_bytes() == before  # nothing cut: that is the repair command's decision


def test_a_damaged_length_field_in_the_middle_is_not_mistaken_for_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "00000001.seg"
    ends = write_raw_segment(path, [[small_samples(k)] for k in range(5)])
    _flip(path, ends[0] + 8 + 3, 6)  # high byte of the length: the frame now "extends past the end"
    with pytest.raises(CorruptionError, match="intact records follow") as err:
        _replay(tmp_path)
    assert err.value.offset == ends[0]


def test_damage_at_the_end_of_a_segment_that_is_not_the_last_raises(tmp_path: Path) -> None:
    first = tmp_path / "00000001.seg"
    ends = write_raw_segment(first, [[small_samples(1)], [small_samples(2)]])
    write_raw_segment(tmp_path / "00000002.seg", [[small_samples(3)]], segment_id=2)
    with first.open("r+b") as f:
        f.truncate(ends[-1] - 1)
    with pytest.raises(CorruptionError, match="not the last segment") as err:
        _replay(tmp_path)
    assert err.value.path == str(first)
    assert err.value.offset == ends[0]


def test_a_missing_segment_raises(tmp_path: Path) -> None:
    write_raw_segment(tmp_path / "00000001.seg", [[small_samples(1)]])
    write_raw_segment(tmp_path / "00000003.seg", [[small_samples(3)]], segment_id=3)
    with pytest.raises(CorruptionError, match=r"00000002\.seg is missing"):
        _replay(tmp_path)


def test_a_damaged_header_raises_with_offset_zero(tmp_path: Path) -> None:
    write_raw_segment(tmp_path / "00000001.seg", [[small_samples(1)]])
    write_raw_segment(tmp_path / "00000002.seg", [[small_samples(2)]], segment_id=2)
    _flip(tmp_path / "00000001.seg", 20)
    with pytest.raises(CorruptionError, match="damaged header") as err:
        _replay(tmp_path)
    assert err.value.offset == 0


def test_a_zero_filled_tail_is_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "00000001.seg"
    ends = write_raw_segment(path, [[small_samples(1)], [small_samples(2)]])
    with path.open("ab") as f:
        f.write(bytes(5000))  # what a file system can leave after a crash before the data landed
    got, replay = _replay(tmp_path)
    assert same_groups(got, [[small_samples(1)], [small_samples(2)]])
    assert replay.stats.torn_tails == 1
    assert replay.stats.torn_bytes == 5000
    assert path.stat().st_size == ends[-1]


def test_without_cut_tail_the_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "00000001.seg"
    write_raw_segment(path, [[small_samples(1)], [small_samples(2)]])
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size - 3)
    got, replay = _replay(tmp_path, cut_tail=False)
    assert same_groups(got, [[small_samples(1)]])
    assert replay.stats.torn_tails == 1
    assert path.stat().st_size == size - 3


def test_replay_after_a_position_skips_what_it_covers(tmp_path: Path) -> None:
    ends1 = write_raw_segment(tmp_path / "00000001.seg", [[small_samples(1)], [small_samples(2)]])
    write_raw_segment(tmp_path / "00000002.seg", [[small_samples(3)]], segment_id=2)
    got, _ = _replay(tmp_path, WalPosition(1, ends1[0]))
    assert same_groups(got, [[small_samples(2)], [small_samples(3)]])
    got, _ = _replay(tmp_path, WalPosition(2, HEADER_SIZE))
    assert same_groups(got, [[small_samples(3)]])


def test_a_position_before_the_first_segment_means_records_are_missing(tmp_path: Path) -> None:
    write_raw_segment(tmp_path / "00000005.seg", [[small_samples(5)]], segment_id=5)
    with pytest.raises(CorruptionError, match="segments between are missing"):
        _replay(tmp_path, WalPosition(3, HEADER_SIZE))


def test_a_segment_of_another_shard_is_refused(tmp_path: Path) -> None:
    write_raw_segment(tmp_path / "00000001.seg", [[small_samples(1)]], shard=3)
    with pytest.raises(CorruptionError, match="belongs to shard 3"):
        _replay(tmp_path)


def test_open_cuts_the_torn_tail_so_later_writes_never_follow_garbage(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path, fsync="never") as log:
        log.append(small_samples(1))
        log.append(small_samples(2))
    seg = tmp_path / "00000001.seg"
    with seg.open("r+b") as f:
        f.truncate(seg.stat().st_size - 7)  # the last append was torn by a crash
    log = WriteAheadLog.open(tmp_path, fsync="never")
    replay = log.replay()
    assert same_groups(list(replay), [[small_samples(1)]])
    assert replay.stats.torn_tails == 1
    assert log.stats().torn_tails == 1
    log.append(small_samples(3))
    log.close()
    with WriteAheadLog.open(tmp_path, fsync="never") as log2:
        replay2 = log2.replay()
        assert same_groups(list(replay2), [[small_samples(1)], [small_samples(3)]])
        assert replay2.stats.torn_tails == 0


def test_open_refuses_a_last_segment_corrupt_before_its_tail(tmp_path: Path) -> None:
    path = tmp_path / "00000001.seg"
    ends = write_raw_segment(path, [[small_samples(k)] for k in range(3)])
    _flip(path, ends[0] + FRAME_HEADER_SIZE)
    with pytest.raises(CorruptionError) as err:
        WriteAheadLog.open(tmp_path)
    assert err.value.offset == ends[0]
    assert [p.name for p in tmp_path.iterdir()] == ["00000001.seg"]  # no new segment was started
