"""Snapshot files: the full state of one shard at a WAL position, written atomically.

A snapshot holds the series table, every sealed chunk as its compressed bytes verbatim (plus the
chunk's time bounds, count and pre-aggregates), the raw head samples not yet sealed, and opaque
named sections for whatever else the engine keeps (rollup tiers, ...). With it, the WAL before
``wal_position`` is no longer needed. Layout: ``header | section* | END`` (FORMAT.md), each
section typed, length-prefixed and checksummed, so new kinds of section can be added later.

Files are written as ``NNNNNNNN.snap.tmp``, fsynced, renamed to ``NNNNNNNN.snap`` and the
directory fsynced: a reader sees a whole snapshot or none, and a leftover ``.tmp`` from a crash
is ignored (and removed by ``SnapshotStore``).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt
import xxhash

from tsdb.errors import CorruptionError, StorageError
from tsdb.wal.datadir import (
    OS_FILE_OPS,
    FileOps,
    fsync_dir,
    make_dirs,
    storage_error,
    storage_errors,
    write_all,
)
from tsdb.wal.records import (
    F64,
    I64,
    U32,
    Buffer,
    SeriesDef,
    decode_series_table,
    decode_strings,
    encode_series_table,
    encode_strings,
)
from tsdb.wal.segment import WalPosition

__all__ = [
    "SNAPSHOT_MAGIC",
    "SNAPSHOT_VERSION",
    "ChunkRow",
    "ChunkTable",
    "ChunkTableBuilder",
    "HeadTable",
    "HeadTableBuilder",
    "LoadResult",
    "SectionType",
    "Snapshot",
    "SnapshotStore",
    "read_snapshot",
    "write_snapshot",
]

logger = logging.getLogger("tsdb.wal")

SNAPSHOT_MAGIC: Final = b"TSDBSNAP"
SNAPSHOT_VERSION: Final = 2
#: Versions this reader understands (2 adds the engine's EXTRA sections, see FORMAT.md; a
#: version 1 reader would silently skip them and lose rollup history, hence the bump).
READABLE_VERSIONS: Final = frozenset({1, 2})
# magic, version, header length, shard, WAL segment, WAL offset, created (ns), checksum
_HEADER: Final = struct.Struct("<8sHHIQQqQ")
HEADER_SIZE: Final = _HEADER.size  # 48
_SECTION: Final = struct.Struct("<IIQ")  # type, flags, payload length; an XXH3-64 u64 follows the payload
_U64: Final = struct.Struct("<Q")
_U32: Final = struct.Struct("<I")
#: A section a reader must understand; unknown sections without it are skipped.
FLAG_REQUIRED: Final = 0x1
_WRITE_BUFFER: Final = 1 << 20


class SectionType(IntEnum):
    """Type of a snapshot section."""

    SERIES = 1
    CHUNKS = 2
    HEAD = 3
    EXTRA = 4
    END = 0xFFFF


class ChunkRow(NamedTuple):
    """One sealed chunk: series id, time bounds (ns, inclusive), sample count, engine flags,
    pre-aggregates (in ``ChunkTable.stat_names`` order) and the compressed columns verbatim."""

    series_id: int
    min_t: int
    max_t: int
    count: int
    flags: int
    stats: tuple[float, ...]
    ts_bytes: bytes
    val_bytes: bytes


@dataclass(frozen=True, slots=True, eq=False)
class ChunkTable:
    """Sealed chunks as columns (one row per chunk); build one with ``ChunkTableBuilder``.

    ``stats`` is float64 of shape ``(n, len(stat_names))``; names are chosen by the engine
    (e.g. ``("sum", "min", "max", "first", "last")``) and stored, so a reader can tell.
    """

    stat_names: tuple[str, ...]
    series_ids: npt.NDArray[np.int64]
    min_t: npt.NDArray[np.int64]
    max_t: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    flags: npt.NDArray[np.uint32]
    stats: npt.NDArray[np.float64]
    ts_bytes: Sequence[bytes]
    val_bytes: Sequence[bytes]

    def __len__(self) -> int:
        return len(self.ts_bytes)

    def rows(self) -> Iterator[ChunkRow]:
        """The chunks one by one, in table order."""
        cols = zip(
            self.series_ids.tolist(),
            self.min_t.tolist(),
            self.max_t.tolist(),
            self.counts.tolist(),
            self.flags.tolist(),
            map(tuple, self.stats.tolist()),
            self.ts_bytes,
            self.val_bytes,
            strict=True,
        )
        for row in cols:
            yield ChunkRow(*row)


class ChunkTableBuilder:
    """Collects chunks row by row (the engine walks its series) and builds a ChunkTable."""

    def __init__(self, stat_names: Sequence[str] = ()) -> None:
        self.stat_names = tuple(stat_names)
        self._rows: list[tuple[int, int, int, int, int]] = []
        self._stats: list[Sequence[float]] = []
        self._ts: list[bytes] = []
        self._vals: list[bytes] = []

    def add(
        self,
        series_id: int,
        min_t: int,
        max_t: int,
        count: int,
        stats: Sequence[float],
        ts_bytes: bytes,
        val_bytes: bytes,
        flags: int = 0,
    ) -> None:
        """Add one chunk; ``stats`` has one float per stat name."""
        if len(stats) != len(self.stat_names):
            raise ValueError(f"chunk has {len(stats)} stats, expected {len(self.stat_names)} ({self.stat_names})")
        self._rows.append((series_id, min_t, max_t, count, flags))
        self._stats.append(stats)
        self._ts.append(bytes(ts_bytes))
        self._vals.append(bytes(val_bytes))

    def build(self) -> ChunkTable:
        """The table of every chunk added so far."""
        n, k = len(self._rows), len(self.stat_names)
        cols = np.array(self._rows, dtype=np.int64).reshape(n, 5)
        return ChunkTable(
            self.stat_names,
            cols[:, 0].copy(),
            cols[:, 1].copy(),
            cols[:, 2].copy(),
            cols[:, 3].copy(),
            cols[:, 4].astype(np.uint32),
            np.array(self._stats, dtype=np.float64).reshape(n, k),
            self._ts,
            self._vals,
        )


@dataclass(frozen=True, slots=True, eq=False)
class HeadTable:
    """Unsealed head samples: per series ``counts[i]`` rows of the concatenated columns, in order."""

    series_ids: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def rows(self) -> Iterator[tuple[int, npt.NDArray[np.int64], npt.NDArray[np.float64]]]:
        """``(series_id, timestamps, values)`` per series (views into the columns)."""
        bounds = [0, *np.cumsum(self.counts).tolist()]
        for sid, (a, b) in zip(self.series_ids.tolist(), itertools.pairwise(bounds), strict=True):
            yield sid, self.timestamps[a:b], self.values[a:b]


class HeadTableBuilder:
    """Collects each series' head columns and builds a HeadTable."""

    def __init__(self) -> None:
        self._ids: list[int] = []
        self._ts: list[npt.NDArray[np.int64]] = []
        self._vals: list[npt.NDArray[np.float64]] = []

    def add(self, series_id: int, timestamps: npt.ArrayLike, values: npt.ArrayLike) -> None:
        """Add the head of one series (int64 ns timestamps and float64 values, equal length)."""
        ts = np.ascontiguousarray(timestamps, dtype=np.int64)
        vals = np.ascontiguousarray(values, dtype=np.float64)
        if ts.shape != vals.shape or ts.ndim != 1:
            raise ValueError(f"head of series {series_id}: timestamps {ts.shape} and values {vals.shape} differ")
        self._ids.append(series_id)
        self._ts.append(ts)
        self._vals.append(vals)

    def build(self) -> HeadTable:
        """The table of every head added so far."""
        return HeadTable(
            np.array(self._ids, dtype=np.int64),
            np.array([len(t) for t in self._ts], dtype=np.int64),
            np.concatenate(self._ts) if self._ts else np.empty(0, np.int64),
            np.concatenate(self._vals) if self._vals else np.empty(0, np.float64),
        )


def _empty_chunks() -> ChunkTable:
    return ChunkTableBuilder().build()


def _empty_head() -> HeadTable:
    return HeadTableBuilder().build()


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """Everything one shard holds, as of ``wal_position`` of its WAL.

    ``extra`` maps section names (e.g. ``"rollup:1m"``) to bytes the engine encodes itself.
    """

    shard: int
    wal_position: WalPosition
    series: tuple[SeriesDef, ...] = ()
    chunks: ChunkTable = field(default_factory=_empty_chunks)
    head: HeadTable = field(default_factory=_empty_head)
    extra: Mapping[str, bytes] = field(default_factory=dict)
    created_ns: int = 0


# -- encoding ---------------------------------------------------------------------------------


def _chunk_section(table: ChunkTable) -> list[Buffer]:
    n = len(table)
    stats = np.ascontiguousarray(table.stats, dtype=F64).reshape(n, len(table.stat_names))
    ts_len = np.fromiter(map(len, table.ts_bytes), dtype=U32, count=n)
    val_len = np.fromiter(map(len, table.val_bytes), dtype=U32, count=n)
    pieces: list[Buffer] = [_U64.pack(n), *encode_strings(table.stat_names)]
    for col, dtype in (
        (table.series_ids, I64),
        (table.min_t, I64),
        (table.max_t, I64),
        (stats, F64),
        (table.counts, U32),
        (table.flags, U32),
        (ts_len, U32),
        (val_len, U32),
    ):
        pieces.append(np.ascontiguousarray(col, dtype=dtype).tobytes())
    for ts, vals in zip(table.ts_bytes, table.val_bytes, strict=True):
        pieces.append(ts)
        pieces.append(vals)
    return pieces


def _head_section(head: HeadTable) -> list[Buffer]:
    cols = ((head.series_ids, I64), (head.counts, I64), (head.timestamps, I64), (head.values, F64))
    return [_U64.pack(len(head.series_ids)), *(np.ascontiguousarray(c, dtype=d).tobytes() for c, d in cols)]


def _sections(snap: Snapshot) -> Iterator[tuple[SectionType, int, list[Buffer]]]:
    yield SectionType.SERIES, FLAG_REQUIRED, encode_series_table(snap.series)
    yield SectionType.CHUNKS, FLAG_REQUIRED, _chunk_section(snap.chunks)
    yield SectionType.HEAD, FLAG_REQUIRED, _head_section(snap.head)
    for name, data in snap.extra.items():
        yield SectionType.EXTRA, 0, [*encode_strings([name]), data]


class _Out:
    """Buffered writes to a descriptor through FileOps (so faults can be injected)."""

    def __init__(self, fd: int, ops: FileOps) -> None:
        self.fd, self.ops = fd, ops
        self.pending: list[Buffer] = []
        self.size = 0

    def put(self, data: Buffer) -> None:
        self.pending.append(data)
        self.size += len(data)
        if self.size >= _WRITE_BUFFER:
            self.flush()

    def flush(self) -> None:
        data = b"".join(self.pending)
        self.pending, self.size = [], 0
        write_all(self.ops.write, self.fd, data)


def _write_body(out: _Out, snap: Snapshot) -> None:
    body = _HEADER.pack(
        SNAPSHOT_MAGIC,
        SNAPSHOT_VERSION,
        HEADER_SIZE,
        snap.shard,
        snap.wal_position.segment,
        snap.wal_position.offset,
        snap.created_ns or time.time_ns(),
        0,
    )[:-8]
    out.put(body + _U64.pack(xxhash.xxh3_64_intdigest(body)))
    count = 0
    for stype, flags, pieces in _sections(snap):
        _put_section(out, stype, flags, pieces)
        count += 1
    _put_section(out, SectionType.END, FLAG_REQUIRED, [_U32.pack(count)])
    out.flush()


def _put_section(out: _Out, stype: int, flags: int, pieces: list[Buffer]) -> None:
    head = _SECTION.pack(stype, flags, sum(memoryview(p).nbytes for p in pieces))
    h = xxhash.xxh3_64(head)
    out.put(head)
    for p in pieces:
        h.update(p)
        out.put(p)
    out.put(_U64.pack(h.intdigest()))


def write_snapshot(path: Path, snap: Snapshot, ops: FileOps = OS_FILE_OPS) -> None:
    """Write ``snap`` to ``path`` atomically: ``path.tmp``, fsync, rename, fsync the directory.

    On any failure the temp file is removed and the mapped StorageError (DiskFullError on
    ENOSPC) raised; an existing file at ``path`` is untouched.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _write_body(_Out(fd, ops), snap)
            ops.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise storage_error(exc, "write snapshot", tmp) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


# -- decoding ---------------------------------------------------------------------------------


def _corrupt(path: Path, offset: int, what: str) -> CorruptionError:
    return CorruptionError(
        f"snapshot {str(path)!r} is corrupt at offset {offset}: {what}", path=str(path), offset=offset
    )


def _read_header(data: bytes, path: Path) -> tuple[int, WalPosition, int]:
    if len(data) < HEADER_SIZE:
        raise _corrupt(path, 0, f"{len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic, version, hlen, shard, seg, off, created, checksum = _HEADER.unpack_from(data, 0)
    if magic != SNAPSHOT_MAGIC or xxhash.xxh3_64_intdigest(data[: HEADER_SIZE - 8]) != checksum:
        raise _corrupt(path, 0, f"damaged header (magic {magic!r})")
    if version not in READABLE_VERSIONS or hlen != HEADER_SIZE:
        raise StorageError(
            f"snapshot {str(path)!r} has format version {version}; this tsdb reads versions "
            f"{min(READABLE_VERSIONS)} to {SNAPSHOT_VERSION}",
            field="data_dir",
        )
    return shard, WalPosition(seg, off), created


def _decode_chunks(p: memoryview) -> ChunkTable:
    (n,) = _U64.unpack_from(p, 0)
    names, off = decode_strings(p, 8)
    k = len(names)
    cols = []
    for dtype, width in ((I64, 1), (I64, 1), (I64, 1), (F64, k), (U32, 1), (U32, 1), (U32, 1), (U32, 1)):
        count = n * width
        if off + count * dtype.itemsize > len(p):
            raise ValueError(f"chunk table of {n} chunks is truncated")
        cols.append(np.frombuffer(p, dtype, count, off))
        off += count * dtype.itemsize
    ids, min_t, max_t, stats, counts, flags, ts_len, val_len = cols
    sizes = np.empty(2 * n, dtype=np.int64)
    sizes[0::2], sizes[1::2] = ts_len, val_len
    bounds = [off, *(off + np.cumsum(sizes)).tolist()]
    if bounds[-1] != len(p):
        raise ValueError(f"chunk blobs end at {bounds[-1]}, section payload has {len(p)} bytes")
    blobs = [bytes(p[a:b]) for a, b in itertools.pairwise(bounds)]
    return ChunkTable(
        tuple(names),
        ids.astype(np.int64),
        min_t.astype(np.int64),
        max_t.astype(np.int64),
        counts.astype(np.int64),
        flags.astype(np.uint32),
        stats.astype(np.float64).reshape(n, k),
        blobs[0::2],
        blobs[1::2],
    )


def _decode_head(p: memoryview) -> HeadTable:
    (m,) = _U64.unpack_from(p, 0)
    if 8 + 16 * m > len(p):
        raise ValueError(f"head table of {m} series is truncated")
    ids = np.frombuffer(p, I64, m, 8)
    counts = np.frombuffer(p, I64, m, 8 + 8 * m)
    total = int(counts.sum())
    if (counts.size and int(counts.min()) < 0) or len(p) != 8 + 16 * m + 16 * total:
        raise ValueError(f"head table of {m} series and {total} samples does not fill {len(p)} bytes")
    base = 8 + 16 * m
    return HeadTable(
        ids.astype(np.int64),
        counts.astype(np.int64),
        np.frombuffer(p, I64, total, base).astype(np.int64),
        np.frombuffer(p, F64, total, base + 8 * total).astype(np.float64),
    )


def read_snapshot(path: Path, *, shard: int | None = None) -> Snapshot:
    """Read and verify a snapshot file (every checksum and the grammar).

    Raises CorruptionError naming the file and offset, StorageError for an unreadable file or an
    unknown format version or required section.
    """
    with storage_errors("read snapshot", path):
        data = path.read_bytes()
    file_shard, position, created = _read_header(data, path)
    if shard is not None and file_shard != shard:
        raise _corrupt(path, 0, f"snapshot of shard {file_shard} found where shard {shard} was expected")
    view = memoryview(data)
    parts: dict[int, memoryview] = {}
    extra: dict[str, bytes] = {}
    pos, count = HEADER_SIZE, 0
    while True:
        if pos + _SECTION.size + 8 > len(data):
            raise _corrupt(path, pos, "file ends before the END section")
        stype, flags, length = _SECTION.unpack_from(data, pos)
        end = pos + _SECTION.size + length
        if end + 8 > len(data):
            raise _corrupt(path, pos, f"section of {length} bytes extends past the end of the file")
        if xxhash.xxh3_64_intdigest(view[pos:end]) != _U64.unpack_from(data, end)[0]:
            raise _corrupt(path, pos, f"checksum mismatch in section type {stype}")
        payload = view[pos + _SECTION.size : end]
        try:
            if stype == SectionType.END:
                if _U32.unpack_from(payload, 0)[0] != count or end + 8 != len(data):
                    raise ValueError("END section does not match the sections before it")
                break
            if stype == SectionType.EXTRA:
                (name,), off = decode_strings(payload, 0)
                extra[name] = bytes(payload[off:])
            elif stype in (SectionType.SERIES, SectionType.CHUNKS, SectionType.HEAD) and stype not in parts:
                parts[stype] = payload
            elif flags & FLAG_REQUIRED:
                raise StorageError(
                    f"snapshot {str(path)!r} needs section type {stype}, unknown to this tsdb", field="data_dir"
                )
        except (ValueError, struct.error) as exc:
            raise _corrupt(path, pos, str(exc)) from exc
        count += 1
        pos = end + 8
    return _assemble(path, file_shard, position, created, parts, extra)


def _assemble(
    path: Path, shard: int, position: WalPosition, created: int, parts: dict[int, memoryview], extra: dict[str, bytes]
) -> Snapshot:
    missing = {SectionType.SERIES, SectionType.CHUNKS, SectionType.HEAD} - parts.keys()
    if missing:
        raise _corrupt(path, HEADER_SIZE, f"missing sections {sorted(int(m) for m in missing)}")
    try:
        series, end = decode_series_table(parts[SectionType.SERIES])
        if end != len(parts[SectionType.SERIES]):
            raise ValueError("series table has trailing bytes")
        chunks = _decode_chunks(parts[SectionType.CHUNKS])
        head = _decode_head(parts[SectionType.HEAD])
    except (ValueError, struct.error) as exc:
        raise _corrupt(path, HEADER_SIZE, str(exc)) from exc
    return Snapshot(shard, position, series, chunks, head, extra, created)


# -- the directory of one shard's snapshots --------------------------------------------------

_NAME_RE: Final = re.compile(r"(\d{8,20})\.snap")


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The newest valid snapshot (or None), its file, and the newer files that failed to load."""

    snapshot: Snapshot | None
    path: Path | None
    skipped: tuple[tuple[Path, CorruptionError], ...] = ()


class SnapshotStore:
    """The snapshots of one shard in ``directory``: ``NNNNNNNN.snap`` by increasing sequence.

    Not thread-safe: the engine takes one snapshot of a shard at a time.
    """

    def __init__(self, directory: str | os.PathLike[str], shard: int, ops: FileOps = OS_FILE_OPS) -> None:
        self.directory = Path(directory)
        self.shard = shard
        self._ops = ops
        make_dirs(self.directory)
        with storage_errors("clean up snapshot directory", self.directory):
            for name in os.listdir(self.directory):
                if name.endswith(".snap.tmp"):  # an interrupted write: never renamed, so never valid
                    (self.directory / name).unlink(missing_ok=True)

    def files(self) -> list[tuple[int, Path]]:
        """``(sequence, path)`` of every snapshot file, oldest first."""
        with storage_errors("list", self.directory):
            names = os.listdir(self.directory)
        found = [(int(m.group(1)), self.directory / n) for n in names if (m := _NAME_RE.fullmatch(n))]
        return sorted(found)

    def write(self, snap: Snapshot) -> Path:
        """Write ``snap`` atomically as the next sequence number; returns its path."""
        files = self.files()
        seq = files[-1][0] + 1 if files else 1
        path = self.directory / f"{seq:08d}.snap"
        write_snapshot(path, snap, self._ops)
        return path

    def load_latest(self) -> LoadResult:
        """The newest snapshot that reads back intact; corrupt newer ones are logged and skipped
        (the WAL from the older snapshot's position must still exist; replay checks it)."""
        skipped: list[tuple[Path, CorruptionError]] = []
        for _, path in reversed(self.files()):
            try:
                snap = read_snapshot(path, shard=self.shard)
            except CorruptionError as exc:
                logger.error("snapshot %s is unusable, trying an older one: %s", path, exc.message)
                skipped.append((path, exc))
                continue
            return LoadResult(snap, path, tuple(skipped))
        return LoadResult(None, None, tuple(skipped))

    def prune(self, keep: int = 2) -> WalPosition | None:
        """Delete all but the newest ``keep`` snapshots; return the WAL position of the oldest
        kept one (segments before it may be dropped), or None when there is no snapshot."""
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        files = self.files()
        doomed, kept = files[:-keep], files[-keep:]
        for _, path in doomed:
            with storage_errors("delete snapshot", path):
                path.unlink(missing_ok=True)
        if doomed:
            fsync_dir(self.directory)
        if not kept:
            return None
        with storage_errors("read snapshot", kept[0][1]), kept[0][1].open("rb") as f:
            head = f.read(HEADER_SIZE)
        return _read_header(head, kept[0][1])[1]
