"""Replay: iterate the records of a shard's WAL segments after a position, cutting a torn tail.

Rules (FORMAT.md has the grammar):
- Segments must have consecutive ids; a gap, or a first segment after the position a snapshot
  covers, is CorruptionError (records are missing).
- Damage in the *last* segment after which no intact frame follows is a torn tail (a write that
  never finished, or a corrupt last record): it is cut off (the file truncated at the start of
  the incomplete group), logged and counted in ``ReplayStats``; replay then ends normally.
- Any other damage raises CorruptionError naming the file and offset; ``repair.py`` truncates there.
"""

from __future__ import annotations

import itertools
import logging
import mmap
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tsdb.errors import CorruptionError
from tsdb.wal.datadir import fsync_dir, storage_errors
from tsdb.wal.records import Record, SamplesRecord, decode_record
from tsdb.wal.segment import HEADER_SIZE, ReadBuffer, TailDamage, WalPosition, check_header, scan_segment

__all__ = ["ReplayStats", "WalReplay", "cut_torn_tail", "read_segment"]

logger = logging.getLogger("tsdb.wal")


@dataclass(slots=True)
class ReplayStats:
    """What a replay read and what it cut. Filled in as iteration proceeds."""

    segments: int = 0
    groups: int = 0
    records: int = 0
    samples: int = 0
    bytes: int = 0
    torn_tails: int = 0
    torn_bytes: int = 0
    damage: list[TailDamage] = field(default_factory=list)

    def add_damage(self, damage: TailDamage) -> None:
        """Count one cut tail."""
        self.torn_tails += 1
        self.torn_bytes += damage.size
        self.damage.append(damage)


def read_segment(path: Path) -> ReadBuffer:
    """The whole segment file, memory-mapped read-only (an empty file gives ``b""``).

    A mapping instead of ``read()`` saves copying every byte (3x faster replay here); decoded
    columns are views into it. Safe because only this process (it holds the data directory
    lock) changes the file, and a torn-tail cut only removes bytes after every view handed out.
    """
    with storage_errors("read WAL segment", path), path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return b""
        data = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
    data.madvise(mmap.MADV_SEQUENTIAL)
    return data


def _cut(damage: TailDamage) -> None:
    """Make the cut durable: truncate at the damage, or delete a segment without a whole header."""
    with storage_errors("cut the torn tail of WAL segment", damage.path):
        if damage.offset < HEADER_SIZE:
            damage.path.unlink()
        else:
            fd = os.open(damage.path, os.O_WRONLY)
            try:
                os.ftruncate(fd, damage.offset)
                os.fsync(fd)
            finally:
                os.close(fd)
    if damage.offset < HEADER_SIZE:
        fsync_dir(damage.path.parent)
    logger.warning(
        "WAL: cut %d bytes of torn or corrupt tail from %s at offset %d (%s)",
        damage.size,
        damage.path,
        damage.offset,
        damage.reason,
    )


def _tail_damage(
    data: ReadBuffer, path: Path, segment_id: int, shard: int | None, *, is_last: bool
) -> TailDamage | None:
    if is_last and len(data) < HEADER_SIZE:
        return TailDamage(path, 0, len(data), f"segment shorter than its {HEADER_SIZE}-byte header")
    check_header(data, path, shard=shard, segment_id=segment_id)
    return scan_segment(data, path, is_last=is_last).damage


def cut_torn_tail(segment_id: int, path: Path, *, shard: int | None = None) -> TailDamage | None:
    """Check the last segment of a log and cut its torn tail, if any (what ``WriteAheadLog.open`` does
    before starting a new segment, so the damage never ends up in the middle of the log)."""
    damage = _tail_damage(read_segment(path), path, segment_id, shard, is_last=True)
    if damage is not None:
        _cut(damage)
    return damage


class WalReplay:
    """Iterable over the records of ``segments`` (``(id, path)`` by increasing id) at or after ``after``.

    Records come out in log order, a group (one ``append``) only when all of it is intact.
    ``SamplesRecord`` columns are read-only views into the segment buffer: copy what you keep.
    With ``cut_tail`` a torn tail is truncated on disk; ``stats`` counts it either way.
    Iterate once; not thread-safe.
    """

    def __init__(
        self,
        segments: Sequence[tuple[int, Path]],
        after: WalPosition | None = None,
        *,
        shard: int | None = None,
        cut_tail: bool = True,
        stats: ReplayStats | None = None,
    ) -> None:
        self.segments = list(segments)
        self.after = after
        self.shard = shard
        self.cut_tail = cut_tail
        self.stats = stats if stats is not None else ReplayStats()

    def _check_sequence(self) -> list[tuple[int, Path]]:
        segs = self.segments
        for (a, _), (b, path) in itertools.pairwise(segs):
            if b != a + 1:
                raise CorruptionError(
                    f"WAL segment {a + 1:08d}.seg is missing before {str(path)!r}: records were lost",
                    path=str(path),
                    offset=0,
                )
        after = self.after
        if after is None:
            return segs
        if segs and segs[0][0] > after.segment:
            raise CorruptionError(
                f"the snapshot covers the WAL up to segment {after.segment} offset {after.offset}, but the log "
                f"starts at {str(segs[0][1])!r}: the segments between are missing",
                path=str(segs[0][1]),
                offset=0,
            )
        return [s for s in segs if s[0] >= after.segment]

    def __iter__(self) -> Iterator[Record]:
        segs = self._check_sequence()
        last_id = self.segments[-1][0] if self.segments else None
        for segment_id, path in segs:
            yield from self._replay_segment(segment_id, path, is_last=segment_id == last_id)

    def _replay_segment(self, segment_id: int, path: Path, *, is_last: bool) -> Iterator[Record]:
        data = read_segment(path)
        stats = self.stats
        stats.segments += 1
        if is_last and len(data) < HEADER_SIZE:
            self._on_damage(TailDamage(path, 0, len(data), f"segment shorter than its {HEADER_SIZE}-byte header"))
            return
        check_header(data, path, shard=self.shard, segment_id=segment_id)
        scan = scan_segment(data, path, is_last=is_last)
        if scan.damage is not None:
            self._on_damage(scan.damage)
        start = self.after.offset if self.after is not None and self.after.segment == segment_id else 0
        for group in scan.groups:
            if group[0].offset < start:
                continue
            stats.groups += 1
            for frame in group:
                try:
                    record = decode_record(frame.rtype, frame.payload)
                except ValueError as exc:
                    raise CorruptionError(
                        f"WAL segment {str(path)!r} has an undecodable record at offset {frame.offset}: {exc}",
                        path=str(path),
                        offset=frame.offset,
                    ) from exc
                stats.records += 1
                stats.bytes += len(frame.payload)
                if isinstance(record, SamplesRecord):
                    stats.samples += len(record)
                yield record

    def _on_damage(self, damage: TailDamage) -> None:
        self.stats.add_damage(damage)
        if self.cut_tail:
            _cut(damage)
        else:
            logger.warning("WAL: torn tail in %s at offset %d (%s), not cut", damage.path, damage.offset, damage.reason)
