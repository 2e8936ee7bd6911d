"""A shard's state as a snapshot: captured under the shard lock, encoded, and restored.

``capture`` takes, under the lock, everything that defines a shard's answers and its future
behaviour: series ids and identities, each series' sealed chunks (the compressed bytes
verbatim, never re-encoded, plus their pre-aggregate rows), head samples in arrival order, the
order-tracking state (``last``, ``in_order``, ``raw_from``) and the rollup tier rows. Encoding
into a ``tsdb.wal.Snapshot`` and writing happen outside the lock. ``restore`` puts it all back,
so that replaying the WAL after the snapshot reproduces the pre-crash shard exactly.

The engine's own EXTRA sections (payload grammar in ``tsdb/wal/FORMAT.md``, snapshot version 2):
``shard`` (next series id, newest sample time), ``series_state``, ``chunk_times`` (first/last
real-sample times of each chunk) and one ``rollup:<tier>`` per rollup tier. CHUNKS rows use
``STAT_FIELDS`` as stat names; their ``count`` is the real-sample count and their flags hold
the staleness-marker bit (bit 0) and the pcodec level (bits 8-15).
"""

from __future__ import annotations

import itertools
import struct
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tsdb.labels import canonical_key
from tsdb.storage.chunk import (
    I_COUNT,
    I_FIRST_T,
    I_LAST_T,
    I_MAXT,
    I_MINT,
    I_STALE,
    STAT_FIELDS,
    ChunkTable,
    SealedChunk,
)
from tsdb.storage.partials import Partials
from tsdb.storage.rollup import TierSpec, TierTable
from tsdb.storage.series import Series
from tsdb.storage.shard import Shard
from tsdb.wal import ChunkTable as ChunkRows
from tsdb.wal import HeadTable, SeriesDef, Snapshot, WalPosition

__all__ = ["ShardImage", "capture", "restore", "to_snapshot"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
#: Looks a series up by the id a section names (``what``: the section, for the error message).
_Get = Callable[[int, str], Series]

_MIN_TS: Final = -(2**63)
_FLAG_STALE: Final = 0x1
_LEVEL_SHIFT: Final = 8
_SHARD: Final = struct.Struct("<qq")  # next series id, newest sample time (ns)
_U64: Final = struct.Struct("<Q")
_TIER_HEAD: Final = struct.Struct("<qqQ")  # resolution ns, retention ns, series count
_LE_I64: Final = np.dtype("<i8")
_LE_F64: Final = np.dtype("<f8")
#: Partials columns in snapshot order, with their on-disk dtype.
_TIER_COLUMNS: Final = tuple(
    (f.name, _LE_I64 if f.name in ("bucket", "count", "first_t", "last_t") else _LE_F64) for f in fields(Partials)
)


@dataclass(slots=True)
class ShardImage:
    """Everything ``capture`` copied out of a shard; immutable once captured (arrays owned or
    views of rows no writer changes again, see ``ChunkTable.view``)."""

    number: int
    next_id: int
    newest: int
    series: list[SeriesDef] = field(default_factory=list)
    state: list[tuple[int, int, int, bool]] = field(default_factory=list)  # sid, raw_from, last, in_order
    chunk_sids: list[int] = field(default_factory=list)  # one per series with chunks
    chunks: list[list[SealedChunk]] = field(default_factory=list)
    istats: list[I64] = field(default_factory=list)
    fstats: list[F64] = field(default_factory=list)
    heads: list[tuple[int, I64, F64]] = field(default_factory=list)
    tiers: list[list[tuple[int, Partials]]] = field(default_factory=list)  # per tier: (sid, rows)


def capture(shard: Shard, newest: int, ntiers: int) -> ShardImage:
    """Copy the state of ``shard``; call under its lock (cost: one pass over its series, the
    head and tier rows copied, chunk bytes shared since sealed chunks are immutable)."""
    image = ShardImage(shard.number, shard.next_id, newest, tiers=[[] for _ in range(ntiers)])
    for s in shard.series_locked():
        image.series.append(SeriesDef(s.sid, s.metric, s.labels))
        image.state.append((s.sid, s.raw_from, s.last, s.in_order))
        table = s.table
        if table is not None and len(table):
            chunks, ist, fst = table.view()
            image.chunk_sids.append(s.sid)
            image.chunks.append(chunks)
            image.istats.append(ist)
            image.fstats.append(fst)
        if s.head_len:
            ts, vals = s.head_arrays()
            image.heads.append((s.sid, ts, vals))
        if s.tiers is not None and ntiers:
            for i, t in enumerate(s.tiers[:ntiers]):
                image.tiers[i].append((s.sid, t.view()))
    return image


def to_snapshot(image: ShardImage, position: WalPosition, tiers: Sequence[TierSpec]) -> Snapshot:
    """Encode a captured image as the snapshot of its shard at WAL ``position``."""
    extra = {
        "shard": _SHARD.pack(image.next_id, image.newest),
        "series_state": _series_state(image.state),
    }
    chunk_rows, first_last = _chunk_rows(image)
    extra["chunk_times"] = first_last
    for spec, rows in zip(tiers, image.tiers, strict=True):
        extra[f"rollup:{spec.name}"] = _tier_section(spec, rows)
    head_ids = np.array([h[0] for h in image.heads], dtype=np.int64)
    head = HeadTable(
        head_ids,
        np.array([len(h[1]) for h in image.heads], dtype=np.int64),
        np.concatenate([h[1] for h in image.heads]) if image.heads else np.empty(0, np.int64),
        np.concatenate([h[2] for h in image.heads]) if image.heads else np.empty(0, np.float64),
    )
    return Snapshot(image.number, position, tuple(image.series), chunk_rows, head, extra)


def _series_state(state: list[tuple[int, int, int, bool]]) -> bytes:
    m = len(state)
    cols = np.array([row[:3] for row in state], dtype=_LE_I64).reshape(m, 3)
    in_order = np.array([row[3] for row in state], dtype=np.uint8)
    return b"".join([_U64.pack(m), *(np.ascontiguousarray(cols[:, j]).tobytes() for j in range(3)), in_order.tobytes()])


def _chunk_rows(image: ShardImage) -> tuple[ChunkRows, bytes]:
    counts = np.array([len(c) for c in image.chunks], dtype=np.int64)
    ist = np.concatenate(image.istats) if image.istats else np.empty((0, 6), np.int64)
    fst = np.concatenate(image.fstats) if image.fstats else np.empty((0, len(STAT_FIELDS)), np.float64)
    chunks = [c for per_series in image.chunks for c in per_series]
    levels = np.fromiter((c.level for c in chunks), dtype=np.int64, count=len(chunks))
    flags = (ist[:, I_STALE] != 0).astype(np.int64) * _FLAG_STALE | (levels << _LEVEL_SHIFT)
    rows = ChunkRows(
        tuple(STAT_FIELDS),
        np.repeat(np.array(image.chunk_sids, dtype=np.int64), counts),
        ist[:, I_MINT].copy(),
        ist[:, I_MAXT].copy(),
        ist[:, I_COUNT].copy(),
        flags.astype(np.uint32),
        fst,
        [c.ts_bytes for c in chunks],
        [c.val_bytes for c in chunks],
    )
    times = b"".join(
        [
            _U64.pack(len(chunks)),
            ist[:, I_FIRST_T].astype(_LE_I64).tobytes(),
            ist[:, I_LAST_T].astype(_LE_I64).tobytes(),
        ]
    )
    return rows, times


def _tier_section(spec: TierSpec, rows: list[tuple[int, Partials]]) -> bytes:
    sids = np.array([r[0] for r in rows], dtype=_LE_I64)
    lens = np.array([len(r[1]) for r in rows], dtype=_LE_I64)
    parts = [_TIER_HEAD.pack(spec.resolution, spec.retention, len(rows)), sids.tobytes(), lens.tobytes()]
    for name, dtype in _TIER_COLUMNS:
        col = [getattr(r[1], name) for r in rows]
        parts.append(np.concatenate(col).astype(dtype).tobytes() if col else b"")
    return b"".join(parts)


# -- restore ----------------------------------------------------------------------------------


class _Reader:
    """Sequential reads of little-endian columns from one EXTRA payload; ValueError when short."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.what, self.pos = data, what, 0

    def column(self, dtype: np.dtype, n: int) -> npt.NDArray[np.generic]:
        size = dtype.itemsize * n
        if self.pos + size > len(self.data):
            raise ValueError(f"{self.what} section is truncated: needs {size} bytes at offset {self.pos}")
        out = np.frombuffer(self.data, dtype, n, self.pos).astype(dtype.newbyteorder("="))  # an owned copy
        self.pos += size
        return out

    def struct(self, fmt: struct.Struct) -> tuple[int, ...]:
        if self.pos + fmt.size > len(self.data):
            raise ValueError(f"{self.what} section is truncated at offset {self.pos}")
        out = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return out

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"{self.what} section has {len(self.data) - self.pos} trailing bytes")


def restore(shard: Shard, snap: Snapshot, tiers: Sequence[TierSpec]) -> int:
    """Load ``snap`` into an empty ``shard``; returns the newest sample time it recorded (ns).

    Raises ValueError on a grammar error in the engine's sections (the caller names the file).
    """
    by_id: dict[int, Series] = {}
    for d in snap.series:
        series, _ = shard.get_or_create(canonical_key(d.metric, d.labels), d.metric, d.labels, d.series_id)
        by_id[d.series_id] = series

    def get(sid: int, what: str) -> Series:
        try:
            return by_id[sid]
        except KeyError:
            raise ValueError(f"{what} refers to series id {sid}, absent from the series table") from None

    with shard.lock:
        next_id, newest = _restore_shard_meta(snap.extra)
        shard.reserve_ids(next_id)
        _restore_chunks(snap, get)
        for sid, ts, vals in snap.head.rows():
            s = get(sid, "HEAD")
            if len(ts):
                s.head_ts = array("q", ts.astype(np.int64).tobytes())
                s.head_vals = array("d", vals.astype(np.float64).tobytes())
        if not _restore_state(snap.extra, get):
            _derive_state(by_id.values())
        _restore_tiers(snap.extra, tiers, get)
    return newest


def _restore_shard_meta(extra: Mapping[str, bytes]) -> tuple[int, int]:
    data = extra.get("shard")
    if data is None:  # a version 1 snapshot: ids from the series table, newest from the data
        return 0, _MIN_TS
    if len(data) != _SHARD.size:
        raise ValueError(f"shard section has {len(data)} bytes, expected {_SHARD.size}")
    next_id, newest = _SHARD.unpack(data)
    return next_id, newest


def _restore_chunks(snap: Snapshot, get: _Get) -> None:
    rows = snap.chunks
    n = len(rows)
    if not n:
        return
    if tuple(rows.stat_names) != tuple(STAT_FIELDS):
        raise ValueError(f"CHUNKS stat names {rows.stat_names} differ from this engine's {STAT_FIELDS}")
    times = snap.extra.get("chunk_times")
    if times is None:
        raise ValueError("CHUNKS present without a chunk_times section")
    r = _Reader(times, "chunk_times")
    (count,) = r.struct(_U64)
    if count != n:
        raise ValueError(f"chunk_times has {count} rows, CHUNKS has {n}")
    first_t, last_t = r.column(_LE_I64, n), r.column(_LE_I64, n)
    r.done()
    ist = np.empty((n, 6), dtype=np.int64)
    ist[:, I_MINT], ist[:, I_MAXT] = rows.min_t, rows.max_t
    ist[:, I_FIRST_T], ist[:, I_LAST_T] = first_t, last_t
    ist[:, I_COUNT] = rows.counts
    flags = rows.flags.astype(np.int64)
    ist[:, I_STALE] = flags & _FLAG_STALE
    levels = ((flags >> _LEVEL_SHIFT) & 0xFF).tolist()
    fst = np.ascontiguousarray(rows.stats, dtype=np.float64)
    sealed = [SealedChunk(t, v, lv) for t, v, lv in zip(rows.ts_bytes, rows.val_bytes, levels, strict=True)]
    sids = rows.series_ids
    order = np.argsort(sids, kind="stable")  # rows of one series stay in time order
    sorted_ids = sids[order]
    bounds = [0, *(np.flatnonzero(np.diff(sorted_ids)) + 1).tolist(), n]
    for a, b in itertools.pairwise(bounds):
        idx = order[a:b]
        series = get(int(sorted_ids[a]), "CHUNKS")
        table = ChunkTable()
        table.replace(0, 0, [sealed[i] for i in idx.tolist()], list(ist[idx]), list(fst[idx]))
        series.table = table


def _derive_state(series: Iterable[Series]) -> None:
    """Order state for a version 1 snapshot, which did not record it: a head is treated as
    unsorted (readers sort it), ``last`` is the newest time held."""
    for s in series:
        last = int(s.table.istats[len(s.table) - 1, I_MAXT]) if s.table is not None and len(s.table) else _MIN_TS
        if s.head_ts:
            last = max(last, max(s.head_ts))
            s.in_order = False
        s.last = last


def _restore_state(extra: Mapping[str, bytes], get: _Get) -> bool:
    """Set each series' order state from the series_state section; False when there is none."""
    data = extra.get("series_state")
    if data is None:
        return False
    r = _Reader(data, "series_state")
    (m,) = r.struct(_U64)
    sids, raw_from, last = (r.column(_LE_I64, m).tolist() for _ in range(3))
    in_order = r.column(np.dtype(np.uint8), m).tolist()
    r.done()
    for sid, rf, la, io in zip(sids, raw_from, last, in_order, strict=True):
        s = get(sid, "series_state")
        s.raw_from, s.last, s.in_order = rf, la, bool(io)
    return True


def _restore_tiers(extra: Mapping[str, bytes], tiers: Sequence[TierSpec], get: _Get) -> None:
    for i, spec in enumerate(tiers):
        data = extra.get(f"rollup:{spec.name}")
        if data is None:
            continue  # a tier configured since the snapshot: it starts empty
        r = _Reader(data, f"rollup:{spec.name}")
        res, _, m = r.struct(_TIER_HEAD)
        if res != spec.resolution:
            raise ValueError(f"rollup:{spec.name} has resolution {res} ns, the tier has {spec.resolution} ns")
        sids = r.column(_LE_I64, m).tolist()
        lens = r.column(_LE_I64, m)
        total = int(lens.sum())
        cols: list[Any] = [r.column(dtype, total) for _, dtype in _TIER_COLUMNS]  # Partials field order
        r.done()
        bounds = [0, *np.cumsum(lens).tolist()]
        for j, sid in enumerate(sids):
            s = get(sid, f"rollup:{spec.name}")
            if s.tiers is None:
                s.tiers = [TierTable() for _ in tiers]
            a, b = bounds[j], bounds[j + 1]
            s.tiers[i] = TierTable.from_rows(Partials(*(c[a:b] for c in cols)))
