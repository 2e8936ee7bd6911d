"""The write-ahead log of one shard: append records, group commit, segment rotation.

Group commit (leader/follower): ``write`` puts a group of frames into the page cache under the
log's lock and returns its end position; ``wait_durable`` blocks until an fsync covers that
position. The first waiter finding no fsync in flight becomes the leader: it fsyncs everything
written so far *without* holding the lock, so writers keep appending while it waits on the
disk, and every waiter it covered wakes up together. N concurrent writers cost far fewer than
N fsyncs. ``append`` is ``write`` + ``wait_durable``.

Fsync policies (``FsyncPolicy.parse``):
- ``always`` (default): ``append`` returns only once its records are on disk.
- ``interval:<duration>`` (e.g. ``interval:1``, ``interval:250ms``): ``append`` returns after the
  write to the page cache; a background thread fsyncs every interval. A process crash loses
  nothing; an OS crash or power loss loses at most the last interval (plus one fsync time).
- ``never``: no fsync at all (benchmarks); a process crash still loses nothing.

Faults: a failed write is rolled back and raises (DiskFullError on ENOSPC); the log stays usable
and writes succeed again once space is back. A failed fsync under ``always`` fails every writer
it covered (their records are cut from the file) and continues in a new segment. Such a cut
bumps ``epoch``: a writer whose records refer to earlier ones (series ids defined by a SERIES
record) passes the epoch it saw to ``write`` and gets ``LogCutError`` if a cut happened since,
so it can write those definitions again (``tsdb.storage.durable`` does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from tsdb.errors import InvalidInputError, StorageError
from tsdb.timeutil import parse_duration_ns
from tsdb.wal.datadir import OS_FILE_OPS, FileOps, fsync_dir, make_dirs, storage_errors
from tsdb.wal.records import Record
from tsdb.wal.replay import ReplayStats, WalReplay, cut_torn_tail
from tsdb.wal.segment import HEADER_SIZE, SegmentWriter, TailDamage, WalPosition, encode_frames, list_segments

__all__ = ["DEFAULT_SEGMENT_BYTES", "FsyncPolicy", "LogCutError", "WalStats", "WriteAheadLog"]

logger = logging.getLogger("tsdb.wal")

#: Segment size limit. Big enough that rotation (an fsync + a file creation) is rare, small
#: enough that dropping covered segments after a snapshot frees space promptly.
DEFAULT_SEGMENT_BYTES: Final = 64 << 20
#: Failed-fsync ranges remembered so late waiters still see their failure; fsync failures are rare.
_MAX_FAILURES: Final = 4096


class LogCutError(Exception):
    """``write(..., epoch=e)`` refused: a failed fsync cut records from the log after epoch ``e``.

    Not a StorageError: nothing failed for the caller, who rebuilds its group and retries.
    """


@dataclass(frozen=True, slots=True)
class FsyncPolicy:
    """When the WAL fsyncs: ``always``, every ``interval_s`` seconds, or ``never``."""

    mode: Literal["always", "interval", "never"] = "always"
    interval_s: float = 0.0

    @classmethod
    def parse(cls, text: str | FsyncPolicy) -> FsyncPolicy:
        """Parse ``always``, ``never`` or ``interval:<duration>`` (seconds, or ``250ms``, ``2s``...)."""
        if isinstance(text, FsyncPolicy):
            return text
        spec = str(text).strip().lower()
        if spec in ("always", "never"):
            return cls(spec)  # type: ignore[arg-type]
        if spec.startswith("interval:"):
            try:
                ns = parse_duration_ns(spec.partition(":")[2], field="fsync")
            except InvalidInputError as exc:
                raise InvalidInputError(
                    f"fsync policy {text!r}: the interval must be a positive duration like 1, 0.5 or 250ms",
                    field="fsync",
                ) from exc
            return cls("interval", ns / 1e9)
        raise InvalidInputError(
            f"unknown fsync policy {text!r}: expected always, never or interval:<seconds>", field="fsync"
        )

    def __str__(self) -> str:
        return f"interval:{self.interval_s:g}" if self.mode == "interval" else self.mode


@dataclass(frozen=True, slots=True)
class WalStats:
    """Counters of one log since it was opened (a copy; see ``WriteAheadLog.stats``)."""

    appends: int
    records: int
    bytes: int
    fsyncs: int
    write_errors: int
    fsync_errors: int
    segments_created: int
    torn_tails: int


class WriteAheadLog:
    """The WAL of one shard in ``directory``. Thread-safe; see the module docstring.

    Open it, ``replay`` what the previous process left, then write. Every process writes into
    new segments of its own, so a segment is only ever appended to by one process.
    """

    def __init__(
        self,
        directory: Path,
        shard: int,
        policy: FsyncPolicy,
        segment_bytes: int,
        ops: FileOps,
        old_segments: list[tuple[int, Path]],
        tail: TailDamage | None,
    ) -> None:
        self.directory = directory
        self.shard = shard
        self.policy = policy
        self.segment_bytes = segment_bytes
        self._ops = ops
        self._old_segments = old_segments
        self._tail = tail
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._next_id = (old_segments[-1][0] + 1) if old_segments else 1
        self._seg: SegmentWriter | None = None
        self._written = WalPosition(self._next_id, HEADER_SIZE)
        self._durable = self._written
        self._syncing = False
        self._closed = False
        self._failures: list[tuple[WalPosition, WalPosition, StorageError]] = []
        self._epoch = 0  # bumped whenever a failed fsync cuts written records
        self._counts = dict.fromkeys(WalStats.__slots__, 0)  # guarded by _lock
        self._counts["torn_tails"] = int(tail is not None)
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        shard: int = 0,
        fsync: str | FsyncPolicy = "always",
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        ops: FileOps = OS_FILE_OPS,
    ) -> WriteAheadLog:
        """Open the log in ``directory`` (created if missing): cut a torn tail off the last
        segment, then start a fresh segment. Raises CorruptionError if the last segment is
        damaged before its tail, StorageError (DiskFullError, ...) if the directory is unusable."""
        policy = FsyncPolicy.parse(fsync)
        if segment_bytes < 4096:
            raise InvalidInputError(f"segment_bytes must be at least 4096, got {segment_bytes}", field="segment_bytes")
        path = make_dirs(Path(directory))
        segs = list_segments(path)
        tail = cut_torn_tail(*segs[-1], shard=shard) if segs else None
        if tail is not None and tail.offset == 0:
            segs.pop()  # the cut deleted a segment that had no complete header
        log = cls(path, shard, policy, segment_bytes, ops, segs, tail)
        with log._cond:
            log._seg = log._new_segment()
        if policy.mode == "interval":
            log._flusher = threading.Thread(target=log._flush_loop, name=f"wal-fsync-{shard}", daemon=True)
            log._flusher.start()
        return log

    # -- reading ------------------------------------------------------------------------------

    def replay(self, after: WalPosition | None = None) -> WalReplay:
        """Records written by earlier processes at or after ``after`` (a snapshot's position).

        The torn tail ``open`` cut is already counted in the returned replay's ``stats``.
        """
        stats = ReplayStats()
        if self._tail is not None:
            stats.add_damage(self._tail)
        return WalReplay(self._old_segments, after, shard=self.shard, cut_tail=True, stats=stats)

    # -- writing ------------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """How many times a failed fsync cut written records from the log (see ``write``)."""
        with self._cond:
            return self._epoch

    def write(self, records: Record | Sequence[Record], *, epoch: int | None = None) -> WalPosition:
        """Append one group of records to the page cache; returns the position after them.

        Not yet durable: pass the position to ``wait_durable``. Records of one call are applied
        together or not at all on replay. Raises DiskFullError / StorageError with nothing written,
        or LogCutError (nothing written) when ``epoch`` is given and differs from ``self.epoch``.
        """
        group = [records] if not isinstance(records, Sequence) else list(records)
        if not group:
            return self.position()
        data = encode_frames(group)  # outside the lock: concurrent writers encode in parallel
        with self._cond:
            if self._closed:
                raise StorageError(f"the WAL of shard {self.shard} is closed", field="data_dir")
            if epoch is not None and epoch != self._epoch:
                raise LogCutError(f"the WAL of shard {self.shard} cut records after epoch {epoch}")
            try:
                seg = self._segment_for(len(data))
                seg.append(data)
            except StorageError:
                self._counts["write_errors"] += 1
                raise
            self._written = WalPosition(seg.segment_id, seg.size)
            self._counts["appends"] += 1
            self._counts["records"] += len(group)
            self._counts["bytes"] += len(data)
            return self._written

    def wait_durable(self, position: WalPosition) -> None:
        """Block until ``position`` is durable under the policy (only ``always`` waits).

        Raises the StorageError of a failed fsync that covered ``position``.
        """
        if self.policy.mode == "always":
            self._sync_to(position)

    def append(self, records: Record | Sequence[Record]) -> WalPosition:
        """``write`` then ``wait_durable``: returns once the records are as durable as the policy says."""
        pos = self.write(records)
        self.wait_durable(pos)
        return pos

    def sync(self) -> None:
        """fsync everything written so far, whatever the policy (e.g. before a snapshot)."""
        with self._cond:
            target = self._written
        self._sync_to(target)

    def position(self) -> WalPosition:
        """The end of the log: the position after the last written record."""
        with self._cond:
            return self._written

    def rotate(self) -> WalPosition:
        """Finish the current segment (fsynced unless ``never``) and start a new one; returns its
        first position. A snapshot taken while writes are held records this position, so the
        segments before it can be dropped once the snapshot is durable."""
        with self._cond:
            if self._closed:
                raise StorageError(f"the WAL of shard {self.shard} is closed", field="data_dir")
            while self._syncing:
                self._cond.wait()
            seg = self._seg
            if seg is not None and seg.size == HEADER_SIZE:
                return WalPosition(seg.segment_id, HEADER_SIZE)
            if seg is not None:
                self._finish_segment(seg)
            self._seg = self._new_segment()
            return self._written

    def drop_before(self, position: WalPosition) -> int:
        """Delete the segments entirely before ``position.segment`` (covered by a durable snapshot);
        returns how many. The current segment is never deleted."""
        with self._cond:
            current = self._seg.segment_id if self._seg is not None else self._next_id
            doomed = [(i, p) for i, p in list_segments(self.directory) if i < min(position.segment, current)]
            for _, path in doomed:
                with storage_errors("delete WAL segment", path):
                    path.unlink(missing_ok=True)
            if doomed:
                fsync_dir(self.directory)
                gone = {i for i, _ in doomed}
                self._old_segments = [s for s in self._old_segments if s[0] not in gone]
            return len(doomed)

    def stats(self) -> WalStats:
        """A copy of the counters (appends, fsyncs, errors, ...)."""
        with self._cond:
            return WalStats(**self._counts)

    def close(self) -> None:
        """Stop the background fsync, make everything durable (unless ``never``), close the file.

        Idempotent. Raises the mapped StorageError if the final fsync fails (the file is closed anyway).
        """
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
        with self._cond:
            if self._closed:
                return
            while self._syncing:
                self._cond.wait()
            seg, self._seg = self._seg, None
            try:
                if seg is not None and self.policy.mode != "never" and self._durable < self._written:
                    seg.sync()
                    self._counts["fsyncs"] += 1
                    self._durable = self._written
            finally:
                if seg is not None:
                    seg.close()
                self._closed = True
                self._cond.notify_all()

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals (all called with the lock held) --------------------------------------------

    def _new_segment(self) -> SegmentWriter:
        seg = SegmentWriter.create(self.directory, self.shard, self._next_id, self._ops)
        self._next_id += 1
        self._counts["segments_created"] += 1
        self._written = self._durable = WalPosition(seg.segment_id, HEADER_SIZE)
        return seg

    def _segment_for(self, nbytes: int) -> SegmentWriter:
        while True:
            seg = self._seg
            if seg is not None and (seg.size + nbytes <= self.segment_bytes or seg.size == HEADER_SIZE):
                return seg
            if not self._syncing:
                break
            # The leader is fsyncing this very descriptor outside the lock; the state may have
            # changed (another writer rotated) by the time we wake, so look again.
            self._cond.wait()
        if seg is not None:
            self._finish_segment(seg)
        self._seg = self._new_segment()
        return self._seg

    def _finish_segment(self, seg: SegmentWriter) -> None:
        """Make all of ``seg`` durable (unless ``never``) and close it; no fsync may be in flight."""
        if self.policy.mode != "never" and self._durable < self._written:
            try:
                seg.sync()
                self._counts["fsyncs"] += 1
                self._durable = self._written
            except StorageError as exc:
                self._fsync_failed(exc)
        if self._seg is seg:
            seg.close()
            self._seg = None
        self._cond.notify_all()

    def _sync_to(self, position: WalPosition) -> None:
        with self._cond:
            while True:
                self._raise_if_failed(position)
                if self._durable >= position:
                    return
                if self._syncing:
                    self._cond.wait()
                elif self._seg is None:
                    why = "is closed" if self._closed else "has no open segment after an earlier error; retry"
                    raise StorageError(f"the WAL of shard {self.shard} {why}", field="data_dir")
                else:
                    self._lead_sync(self._seg)

    def _lead_sync(self, seg: SegmentWriter) -> None:
        """fsync ``seg`` up to everything written so far, releasing the lock meanwhile."""
        target = self._written
        self._syncing = True
        self._lock.release()
        error: StorageError | None = None
        try:
            seg.sync()
        except StorageError as exc:
            error = exc
        finally:
            self._lock.acquire()
            self._syncing = False
        if error is None:
            self._counts["fsyncs"] += 1
            self._durable = max(self._durable, target)
        else:
            self._fsync_failed(error)
        self._cond.notify_all()

    def _fsync_failed(self, exc: StorageError) -> None:
        """An fsync failed: every record written since the last good fsync may be lost."""
        self._counts["fsync_errors"] += 1
        logger.error("WAL: fsync of shard %d failed: %s", self.shard, exc.message)
        if self.policy.mode != "always":
            return  # writers were already answered; keep the data and retry at the next interval
        lo, hi = self._durable, self._written
        self._epoch += 1
        self._failures = [*self._failures[-_MAX_FAILURES + 1 :], (lo, hi, exc)]
        seg = self._seg
        if seg is not None:
            # Cut the unsynced writes so a restart cannot resurrect what was reported as failed,
            # and continue in a new segment so their positions are never handed out again.
            try:
                seg.truncate(lo.offset if lo.segment == seg.segment_id else HEADER_SIZE)
            except StorageError as cut_exc:
                logger.error("WAL: could not cut unsynced writes after a failed fsync: %s", cut_exc.message)
            seg.close()
            self._seg = None
        self._durable = hi

    def _raise_if_failed(self, position: WalPosition) -> None:
        for lo, hi, exc in reversed(self._failures):
            if lo < position <= hi:
                raise type(exc)(f"{exc.message}; the write was not made durable", field=exc.field) from exc

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.policy.interval_s):
            with contextlib.suppress(StorageError):  # logged and counted in _fsync_failed; retried next time
                self.sync()

    def __repr__(self) -> str:
        return f"WriteAheadLog({str(self.directory)!r}, shard={self.shard}, fsync={self.policy})"
