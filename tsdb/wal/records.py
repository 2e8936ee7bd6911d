"""WAL record types and their binary payloads (the frame around a payload is in ``segment.py``).

Every record is a frozen dataclass; ``encode_record`` turns one into ``(type, payload pieces)`` and
``decode_record`` turns a payload back. Numbers are little-endian; numpy columns are written with
``tobytes`` and read back with ``np.frombuffer`` (zero-copy views), so a 5,000-sample batch costs
three memcpys to encode and nothing to decode. Strings are UTF-8 in a length-table + blob layout
shared with the snapshot series table. The byte grammar is in FORMAT.md.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from tsdb.errors import InvalidInputError
from tsdb.labels import LabelSet, Matcher, MatchOp

__all__ = [
    "DeleteRecord",
    "Record",
    "RecordType",
    "RetentionRecord",
    "SamplesRecord",
    "SeriesDef",
    "SeriesRecord",
    "decode_record",
    "decode_series_table",
    "decode_strings",
    "encode_record",
    "encode_series_table",
    "encode_strings",
]

Buffer = bytes | bytearray | memoryview

_U32: Final = struct.Struct("<I")
_I64: Final = struct.Struct("<q")
_I64X2: Final = struct.Struct("<qq")
# numpy dtypes of the on-disk columns; explicit byte order so a big-endian host still writes LE.
I64: Final = np.dtype("<i8")
F64: Final = np.dtype("<f8")
U32: Final = np.dtype("<u4")


class RecordType(IntEnum):
    """The type byte of a WAL frame."""

    SERIES = 1
    SAMPLES = 2
    DELETE = 3
    RETENTION = 4


class SeriesDef(NamedTuple):
    """A series as the WAL names it: the engine's id (unique within the shard) and its identity."""

    series_id: int
    metric: str
    labels: LabelSet


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """New series created by one write; written before the SAMPLES that use their ids."""

    series: tuple[SeriesDef, ...]


@dataclass(frozen=True, slots=True, eq=False)
class SamplesRecord:
    """One engine write batch for a shard, as three equally long columns (one row per sample).

    ``series_ids`` int64 ids from earlier SERIES records, ``timestamps`` int64 ns, ``values``
    float64 with every bit kept (staleness NaNs included). Rows in write order; unsorted is fine.
    Decoded records hold read-only views into the segment buffer: copy what you keep.
    """

    series_ids: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])


@dataclass(frozen=True, slots=True)
class DeleteRecord:
    """A delete: samples of series matching all ``matchers`` in ``[start_ns, end_ns]`` (inclusive)."""

    matchers: tuple[Matcher, ...]
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class RetentionRecord:
    """Retention ran and dropped data older than ``cutoff_ns``; replay re-applies the same rule
    so that expired samples still in the WAL do not come back after recovery.

    ``newest_ns`` is the newest sample time the pass measured rollup tier retention from
    (None in records written before WAL format 2, which did not carry it).
    """

    cutoff_ns: int
    newest_ns: int | None = None


Record = SeriesRecord | SamplesRecord | DeleteRecord | RetentionRecord


def encode_strings(strings: Sequence[str]) -> list[Buffer]:
    """``count u32 | byte lengths u32[count] | UTF-8 blob`` (surrogates passed through)."""
    raw = [s.encode("utf-8", "surrogatepass") for s in strings]
    lens = np.fromiter(map(len, raw), dtype=U32, count=len(raw))
    return [_U32.pack(len(raw)), lens.tobytes(), b"".join(raw)]


def decode_strings(buf: Buffer, offset: int) -> tuple[list[str], int]:
    """Inverse of ``encode_strings`` starting at ``offset``; returns the strings and the end offset."""
    view = memoryview(buf)
    (count,) = _U32.unpack_from(view, offset)
    offset += 4
    if count == 0:
        return [], offset
    _need(view, offset, 4 * count, "string length table")
    ends = np.cumsum(np.frombuffer(view, U32, count, offset), dtype=np.int64)
    offset += 4 * count
    total = int(ends[-1])
    _need(view, offset, total, "string blob")
    blob = bytes(view[offset : offset + total])
    starts = [0, *ends[:-1].tolist()]
    stops = ends.tolist()
    if blob.isascii():  # the common case: byte offsets are character offsets
        text = blob.decode("ascii")
        out = [text[a:b] for a, b in zip(starts, stops, strict=True)]
    else:
        out = [blob[a:b].decode("utf-8", "surrogatepass") for a, b in zip(starts, stops, strict=True)]
    return out, offset + total


def encode_series_table(series: Sequence[SeriesDef]) -> list[Buffer]:
    """``n u32 | ids i64[n] | label counts u32[n] | strings`` with, per series, the metric then
    each label's name and value. Shared by SERIES records and the snapshot series table."""
    ids = np.fromiter((s.series_id for s in series), dtype=I64, count=len(series))
    counts = np.fromiter((len(s.labels) for s in series), dtype=U32, count=len(series))
    strings: list[str] = []
    for s in series:
        strings.append(s.metric)
        for name, value in s.labels:
            strings.append(name)
            strings.append(value)
    return [_U32.pack(len(series)), ids.tobytes(), counts.tobytes(), *encode_strings(strings)]


def decode_series_table(buf: Buffer, offset: int = 0) -> tuple[tuple[SeriesDef, ...], int]:
    """Inverse of ``encode_series_table``; returns the series and the end offset."""
    view = memoryview(buf)
    (n,) = _U32.unpack_from(view, offset)
    offset += 4
    _need(view, offset, 12 * n, "series ids and label counts")
    ids = np.frombuffer(view, I64, n, offset).tolist()
    counts = np.frombuffer(view, U32, n, offset + 8 * n).tolist()
    strings, offset = decode_strings(view, offset + 12 * n)
    if len(strings) != n + 2 * sum(counts):
        raise ValueError(f"series table has {len(strings)} strings, expected {n + 2 * sum(counts)} for {n} series")
    out = []
    pos = 0
    for sid, c in zip(ids, counts, strict=True):
        end = pos + 1 + 2 * c
        labels = tuple(zip(strings[pos + 1 : end : 2], strings[pos + 2 : end : 2], strict=True))
        out.append(SeriesDef(sid, strings[pos], labels))
        pos = end
    return tuple(out), offset


def _column(values: object, dtype: np.dtype, field: str, n: int) -> npt.NDArray[np.generic]:
    arr = np.ascontiguousarray(values, dtype=dtype)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InvalidInputError(f"SAMPLES column {field} has shape {arr.shape}, expected ({n},)", field=field)
    return arr


def encode_record(record: Record) -> tuple[RecordType, list[Buffer]]:
    """The type byte and payload pieces (to be joined by the frame encoder) of one record."""
    if isinstance(record, SamplesRecord):
        n = len(record.timestamps)
        ids = _column(record.series_ids, I64, "series_ids", n)
        ts = _column(record.timestamps, I64, "timestamps", n)
        vals = _column(record.values, F64, "values", n)
        return RecordType.SAMPLES, [_U32.pack(n), ids.data, ts.data, vals.data]
    if isinstance(record, SeriesRecord):
        return RecordType.SERIES, encode_series_table(record.series)
    if isinstance(record, DeleteRecord):
        strings = [part for m in record.matchers for part in (m.name, m.op.value, m.value)]
        return RecordType.DELETE, [_I64X2.pack(record.start_ns, record.end_ns), *encode_strings(strings)]
    if isinstance(record, RetentionRecord):
        if record.newest_ns is None:
            return RecordType.RETENTION, [_I64.pack(record.cutoff_ns)]
        return RecordType.RETENTION, [_I64X2.pack(record.cutoff_ns, record.newest_ns)]
    raise TypeError(f"not a WAL record: {type(record).__name__}")


def decode_record(rtype: int, payload: Buffer) -> Record:
    """Decode one payload; raises ValueError (the caller adds file and offset) on bad grammar."""
    view = memoryview(payload)
    try:
        if rtype == RecordType.SAMPLES:
            return _decode_samples(view)
        if rtype == RecordType.SERIES:
            series, end = decode_series_table(view)
            _exact(view, end, "SERIES")
            return SeriesRecord(series)
        if rtype == RecordType.DELETE:
            start, stop = _I64X2.unpack_from(view, 0)
            parts, end = decode_strings(view, 16)
            _exact(view, end, "DELETE")
            if len(parts) % 3:
                raise ValueError(f"DELETE has {len(parts)} matcher strings, not a multiple of 3")
            matchers = tuple(Matcher(parts[i], MatchOp(parts[i + 1]), parts[i + 2]) for i in range(0, len(parts), 3))
            return DeleteRecord(matchers, start, stop)
        if rtype == RecordType.RETENTION:
            if len(view) == 16:
                return RetentionRecord(*_I64X2.unpack_from(view, 0))
            _exact(view, 8, "RETENTION")
            return RetentionRecord(_I64.unpack_from(view, 0)[0])
    except struct.error as exc:
        raise ValueError(f"record type {rtype} payload of {len(view)} bytes is truncated: {exc}") from exc
    raise ValueError(f"unknown record type {rtype} (written by a newer tsdb?)")


def _decode_samples(view: memoryview) -> SamplesRecord:
    (n,) = _U32.unpack_from(view, 0)
    if len(view) != 4 + 24 * n:
        raise ValueError(f"SAMPLES payload is {len(view)} bytes; {n} samples need {4 + 24 * n}")
    return SamplesRecord(
        np.frombuffer(view, I64, n, 4),
        np.frombuffer(view, I64, n, 4 + 8 * n),
        np.frombuffer(view, F64, n, 4 + 16 * n),
    )


def _need(view: memoryview, offset: int, size: int, what: str) -> None:
    if offset + size > len(view):
        raise ValueError(f"{what} needs {size} bytes at offset {offset}, payload has {len(view)}")


def _exact(view: memoryview, end: int, what: str) -> None:
    if end != len(view):
        raise ValueError(f"{what} payload has {len(view) - end} trailing bytes")
