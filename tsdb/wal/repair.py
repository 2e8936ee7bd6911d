"""WAL repair: truncate a shard's log at its first damage, keeping everything before it.

What the ``repair`` command runs when start-up stopped with CorruptionError. The damaged segment
is cut at the start of the group holding the first bad frame (so a write stays all-or-nothing);
later segments are removed. Unless ``backup=False``, the damaged segment and every removed
segment are first kept as ``NNNNNNNN.seg.damaged`` beside the log (ignored by tsdb) so nothing is
destroyed that an operator might still want to inspect.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tsdb.errors import CorruptionError, StorageError
from tsdb.wal.datadir import DATADIR_META, DataDir, fsync_dir, storage_errors
from tsdb.wal.records import decode_record
from tsdb.wal.replay import read_segment
from tsdb.wal.segment import HEADER_SIZE, ReadBuffer, SegmentScan, TailDamage, check_header, list_segments, walk_segment

__all__ = ["RepairReport", "find_first_damage", "repair_data_dir", "repair_wal"]

logger = logging.getLogger("tsdb.wal")


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What ``repair_wal`` found and did (``damage`` None: the log was intact, nothing changed)."""

    directory: Path
    damage: TailDamage | None
    bytes_removed: int
    segments_removed: tuple[Path, ...]
    backups: tuple[Path, ...]

    def __str__(self) -> str:
        if self.damage is None:
            return f"{self.directory}: intact"
        d = self.damage
        return (
            f"{self.directory}: cut {d.path.name} at offset {d.offset} ({d.reason}); removed {self.bytes_removed} "
            f"bytes and {len(self.segments_removed)} later segment(s); backups: "
            f"{', '.join(p.name for p in self.backups) or 'none'}"
        )


def _first_bad_group(scan: SegmentScan, data: ReadBuffer, path: Path) -> TailDamage | None:
    """Damage of the segment, including intact frames whose payload does not decode."""
    for group in scan.groups:
        for frame in group:
            try:
                decode_record(frame.rtype, frame.payload)
            except ValueError as exc:
                start = group[0].offset
                return TailDamage(path, start, len(data) - start, f"undecodable record at {frame.offset}: {exc}")
    return scan.damage


def find_first_damage(directory: Path, *, shard: int | None = None) -> tuple[int, TailDamage] | None:
    """``(segment id, damage)`` of the first damage in the log in ``directory``, or None.

    A missing segment (a gap in the ids) is damage at offset 0 of the segment after the gap.
    """
    segs = list_segments(directory)
    prev = None
    for sid, path in segs:
        data = read_segment(path)
        if prev is not None and sid != prev + 1:
            return sid, TailDamage(path, 0, len(data), f"segment {prev + 1:08d}.seg is missing before it")
        prev = sid
        try:
            check_header(data, path, shard=shard, segment_id=sid)
        except CorruptionError as exc:
            return sid, TailDamage(path, 0, len(data), exc.message)
        damage = _first_bad_group(walk_segment(data, path)[0], data, path)
        if damage is not None:
            return sid, damage
    return None


def repair_wal(
    directory: str | os.PathLike[str], *, shard: int | None = None, backup: bool = True, dry_run: bool = False
) -> RepairReport:
    """Truncate the WAL in ``directory`` at its first damage; see the module docstring.

    The caller must own the data directory (``repair_data_dir`` takes its lock). Segments of an
    unknown format version raise StorageError and are left alone.
    """
    wal = Path(directory)
    found = find_first_damage(wal, shard=shard)
    if found is None:
        return RepairReport(wal, None, 0, (), ())
    sid, damage = found
    later = tuple(p for i, p in list_segments(wal) if i > sid)
    removed_bytes = damage.size + sum(p.stat().st_size for p in later)
    backups: list[Path] = []
    if not dry_run:
        if backup:
            backups.append(_backup(damage.path, copy=True))
            backups.extend(_backup(p, copy=False) for p in later)
        else:
            for p in later:
                with storage_errors("delete WAL segment", p):
                    p.unlink()
        _truncate(damage)
        fsync_dir(wal)
        logger.warning("WAL repair: %s", damage)
    return RepairReport(wal, damage, removed_bytes, later, tuple(backups))


def _backup(path: Path, *, copy: bool) -> Path:
    target = path.with_name(path.name + ".damaged")
    n = 1
    while target.exists():  # keep the backups of earlier repairs too
        target = path.with_name(f"{path.name}.damaged.{n}")
        n += 1
    with storage_errors("back up WAL segment", target):
        if copy:
            shutil.copyfile(path, target)
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            os.replace(path, target)
    return target


def _truncate(damage: TailDamage) -> None:
    with storage_errors("truncate WAL segment", damage.path):
        if damage.offset < HEADER_SIZE:
            damage.path.unlink(missing_ok=True)
            return
        fd = os.open(damage.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, damage.offset)
            os.fsync(fd)
        finally:
            os.close(fd)


def repair_data_dir(path: str | os.PathLike[str], *, backup: bool = True, dry_run: bool = False) -> list[RepairReport]:
    """Repair the WAL of every shard of the data directory at ``path``, holding its lock
    (DataDirLockedError while a server runs on it). One report per shard, by shard id."""
    if not (Path(path) / DATADIR_META).is_file():
        raise StorageError(
            f"{os.fspath(path)!r} is not a tsdb data directory (no {DATADIR_META} file)", field="data_dir"
        )
    with DataDir.open(path) as dd:
        return [
            repair_wal(dd.wal_dir(shard), shard=shard, backup=backup, dry_run=dry_run) for shard in range(dd.num_shards)
        ]
