"""Snapshot files: round trip, verbatim chunk bytes, atomic replacement, checksums, extensibility."""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from wal_testutil import series_defs

from tsdb import codec
from tsdb.errors import CorruptionError, StorageError
from tsdb.wal import (
    ChunkTableBuilder,
    HeadTableBuilder,
    SeriesDef,
    Snapshot,
    SnapshotStore,
    WalPosition,
    read_snapshot,
    write_snapshot,
)
from tsdb.wal.snapshot import HEADER_SIZE, SNAPSHOT_VERSION

STATS = ("sum", "min", "max", "first", "last")


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    series = tuple(draw(st.lists(series_defs, max_size=5)))
    chunks = ChunkTableBuilder(STATS)
    for _ in range(draw(st.integers(0, 6))):
        chunks.add(
            draw(st.integers(0, 2**40)),
            draw(st.integers(-(2**62), 2**62)),
            draw(st.integers(-(2**62), 2**62)),
            draw(st.integers(0, 2**32 - 1)),
            draw(st.lists(st.floats(allow_nan=False), min_size=5, max_size=5)),
            draw(st.binary(max_size=64)),
            draw(st.binary(max_size=64)),
            flags=draw(st.integers(0, 2**32 - 1)),
        )
    head = HeadTableBuilder()
    for sid in draw(st.lists(st.integers(0, 2**40), max_size=4)):
        n = draw(st.integers(0, 10))
        head.add(sid, draw(hnp.arrays(np.int64, n)), draw(hnp.arrays(np.float64, n)))
    extra = draw(st.dictionaries(st.text(max_size=10), st.binary(max_size=50), max_size=3))
    pos = WalPosition(draw(st.integers(1, 2**40)), draw(st.integers(32, 2**40)))
    return Snapshot(
        draw(st.integers(0, 999)), pos, series, chunks.build(), head.build(), extra, draw(st.integers(1, 2**62))
    )


def assert_same(a: Snapshot, b: Snapshot) -> None:
    assert (a.shard, a.wal_position, a.series, a.created_ns, dict(a.extra)) == (
        b.shard,
        b.wal_position,
        b.series,
        b.created_ns,
        dict(b.extra),
    )
    ca, cb = a.chunks, b.chunks
    assert ca.stat_names == cb.stat_names
    assert list(ca.rows()) == list(cb.rows())  # stats are drawn without NaN, so == is exact
    ha, hb = a.head, b.head
    for col in ("series_ids", "counts", "timestamps"):
        assert np.array_equal(getattr(ha, col), getattr(hb, col))
    assert np.array_equal(ha.values.view(np.uint64), hb.values.view(np.uint64))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(snap=snapshots())
def test_snapshot_round_trips(tmp_path: Path, snap: Snapshot) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "00000001.snap"
    write_snapshot(path, snap)
    assert_same(read_snapshot(path, shard=snap.shard), snap)


def _real_snapshot(n_series: int = 20, per_series: int = 2000, chunk: int = 500) -> tuple[Snapshot, dict]:
    rng = np.random.default_rng(7)
    builder = ChunkTableBuilder(STATS)
    original = {}
    for sid in range(n_series):
        ts = 1_700_000_000_000_000_000 + np.arange(per_series, dtype=np.int64) * 10_000_000_000
        vals = np.round(np.cumsum(rng.standard_normal(per_series)), 2)
        original[sid] = (ts, vals)
        for i in range(0, per_series, chunk):
            t, v = ts[i : i + chunk], vals[i : i + chunk]
            stats = (float(v.sum()), float(v.min()), float(v.max()), float(v[0]), float(v[-1]))
            builder.add(sid, int(t[0]), int(t[-1]), len(t), stats, codec.encode_i64(t), codec.encode_f64(v))
    series = tuple(SeriesDef(sid, "cpu", (("host", f"h{sid}"),)) for sid in range(n_series))
    return Snapshot(0, WalPosition(3, 32), series, builder.build()), original


def test_sealed_chunks_come_back_verbatim_and_the_file_is_close_to_their_size(tmp_path: Path) -> None:
    snap, original = _real_snapshot()
    path = tmp_path / "00000001.snap"
    write_snapshot(path, snap)
    back = read_snapshot(path)
    compressed = sum(len(t) + len(v) for t, v in zip(snap.chunks.ts_bytes, snap.chunks.val_bytes, strict=True))
    # per chunk: 3 i64 + 5 f64 stats + 4 u32 = 80 bytes of metadata; plus series table and headers
    assert path.stat().st_size <= compressed + 80 * len(snap.chunks) + 2000
    assert list(back.chunks.ts_bytes) == list(snap.chunks.ts_bytes)
    for sid, (ts, vals) in original.items():
        rows = [r for r in back.chunks.rows() if r.series_id == sid]
        assert np.array_equal(np.concatenate([codec.decode_i64(r.ts_bytes) for r in rows]), ts)
        assert np.array_equal(np.concatenate([codec.decode_f64(r.val_bytes) for r in rows]), vals)
        assert rows[0].stats[0] == pytest.approx(vals[:500].sum())


def test_a_leftover_temp_file_from_a_crash_is_ignored_and_removed(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, shard=0)
    store.write(Snapshot(0, WalPosition(1, 32)))
    (tmp_path / "00000002.snap.tmp").write_bytes(b"TSDBSNAP" + bytes(100))  # crashed mid-write
    loaded = SnapshotStore(tmp_path, shard=0).load_latest()
    assert loaded.snapshot is not None and loaded.path == tmp_path / "00000001.snap"
    assert loaded.skipped == ()
    assert not (tmp_path / "00000002.snap.tmp").exists()


def test_write_replaces_atomically_via_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append((Path(src).name, Path(dst).name, Path(dst).exists()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    SnapshotStore(tmp_path, shard=0).write(Snapshot(0, WalPosition(1, 32)))
    assert seen == [("00000001.snap.tmp", "00000001.snap", False)]


def test_a_corrupt_newest_snapshot_is_skipped_for_the_previous_one(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, shard=0)
    snap, _ = _real_snapshot(n_series=2, per_series=500)
    store.write(snap)
    newest = store.write(Snapshot(0, WalPosition(9, 32), snap.series, snap.chunks))
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x10
    newest.write_bytes(bytes(data))
    loaded = store.load_latest()
    assert loaded.path == tmp_path / "00000001.snap"
    assert loaded.snapshot is not None and loaded.snapshot.wal_position == WalPosition(3, 32)
    assert [p for p, _ in loaded.skipped] == [newest]


def test_a_bit_flip_raises_naming_file_and_section_offset(tmp_path: Path) -> None:
    snap, _ = _real_snapshot(n_series=2, per_series=500)
    path = tmp_path / "00000001.snap"
    write_snapshot(path, snap)
    data = bytearray(path.read_bytes())
    data[-100] ^= 1  # inside the chunk blobs
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="checksum mismatch") as err:
        read_snapshot(path)
    assert err.value.path == str(path)
    assert HEADER_SIZE <= err.value.offset < len(data) - 100


@pytest.mark.parametrize("keep", [0, 47, 60, -9, -1])
def test_a_truncated_snapshot_is_corrupt(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "00000001.snap"
    write_snapshot(path, _real_snapshot(n_series=1, per_series=100)[0])
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(CorruptionError):
        read_snapshot(path)


def test_a_snapshot_of_another_shard_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "00000001.snap"
    write_snapshot(path, Snapshot(5, WalPosition(1, 32)))
    with pytest.raises(CorruptionError, match="shard 5"):
        read_snapshot(path, shard=0)


def _with_section(path: Path, stype: int, flags: int, payload: bytes) -> None:
    """Insert a section before END, following the FORMAT.md grammar (also checks the grammar)."""
    data = path.read_bytes()
    pos, sections = HEADER_SIZE, []
    while True:
        t, _flags, length = struct.unpack_from("<IIQ", data, pos)
        end = pos + 16 + length + 8
        sections.append(data[pos:end])
        pos = end
        if t == 0xFFFF:
            break
    assert pos == len(data)
    head = struct.pack("<IIQ", stype, flags, len(payload)) + payload
    new = head + struct.pack("<Q", xxhash.xxh3_64_intdigest(head))
    (count,) = struct.unpack_from("<I", sections[-1], 16)
    end_head = struct.pack("<IIQ", 0xFFFF, 1, 4) + struct.pack("<I", count + 1)
    end = end_head + struct.pack("<Q", xxhash.xxh3_64_intdigest(end_head))
    path.write_bytes(data[:HEADER_SIZE] + b"".join(sections[:-1]) + new + end)


def test_unknown_optional_sections_are_skipped_and_required_ones_refused(tmp_path: Path) -> None:
    path = tmp_path / "00000001.snap"
    write_snapshot(path, Snapshot(0, WalPosition(1, 32), extra={"rollup:1m": b"abc"}))
    _with_section(path, 77, 0, b"from the future")
    back = read_snapshot(path)
    assert dict(back.extra) == {"rollup:1m": b"abc"}
    _with_section(path, 78, 1, b"must understand")
    with pytest.raises(StorageError, match="section type 78") as err:
        read_snapshot(path)
    assert not isinstance(err.value, CorruptionError)


def test_a_newer_format_version_is_refused_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "00000001.snap"
    write_snapshot(path, Snapshot(0, WalPosition(1, 32)))
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, 8, SNAPSHOT_VERSION + 1)
    struct.pack_into("<Q", data, 40, xxhash.xxh3_64_intdigest(bytes(data[:40])))
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=f"version {SNAPSHOT_VERSION + 1}") as err:
        SnapshotStore(tmp_path, shard=0).load_latest()
    assert not isinstance(err.value, CorruptionError)


def test_prune_keeps_the_newest_and_returns_the_oldest_kept_position(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, shard=0)
    assert store.prune() is None
    for seg in (2, 5, 9):
        store.write(Snapshot(0, WalPosition(seg, 32)))
    assert store.prune(keep=2) == WalPosition(5, 32)
    assert [p.name for _, p in store.files()] == ["00000002.snap", "00000003.snap"]
    assert store.prune(keep=1) == WalPosition(9, 32)
