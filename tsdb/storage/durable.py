"""Durability of the engine's shards: a write-ahead log and snapshots per shard, and recovery.

Write path, per shard and under its lock (``Shard`` calls these hooks *before* applying a
change, so a failed log write leaves memory unchanged): ``ShardLog.log_samples`` writes one WAL
group, a SERIES record for every series created since the last logged write (the shard's
``on_new_series`` hook collects them) followed by the SAMPLES, in the order the shard applies
them; ``log_delete`` and ``log_retention`` do the same for deletes and retention passes. The
caller releases the lock and then waits for the returned position (group commit: concurrent
writers share one fsync).

Recovery (``Durability.open``): lock the data directory, load each shard's newest valid
snapshot (``tsdb.storage.persist``), replay the WAL after the snapshot's position through the
shard's ordinary methods with logging off. Because every change is logged in the order it was
applied and replay is deterministic, the recovered shard equals the shard before the crash,
minus writes that were never acknowledged. Snapshots (``Durability.snapshot``) rotate the WAL
and capture the shard under its lock, write outside it, then drop the segments covered.

A write that spans shards is logged shard by shard; if a later shard's log write fails the
call raises, and the rows already logged in other shards stay (retrying the write is
idempotent: the same timestamps get the same values).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tsdb.errors import CorruptionError, StorageError
from tsdb.labels import Matcher, canonical_key
from tsdb.storage import persist
from tsdb.storage.rollup import TierSpec
from tsdb.storage.series import Series
from tsdb.storage.shard import Shard
from tsdb.wal import (
    DataDir,
    DeleteRecord,
    LogCutError,
    Record,
    ReplayStats,
    RetentionRecord,
    SamplesRecord,
    SeriesDef,
    SeriesRecord,
    SnapshotStore,
    WalPosition,
    WriteAheadLog,
    list_segments,
)

__all__ = ["Durability", "ShardLog"]

logger = logging.getLogger("tsdb.wal")

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: Open ends of a delete range and "no raw cutoff" in WAL records (engine times are within
#: +-2**62 ns, so these never collide with a real bound).
_OPEN_LO: Final = -(2**63)
_OPEN_HI: Final = 2**63 - 1
#: Snapshots kept per shard; the WAL is kept from the older one's position, so a newest
#: snapshot found corrupt at start-up can be replaced by the older one plus replay.
_KEEP_SNAPSHOTS: Final = 2


class ShardLog:
    """The WAL and snapshots of one shard. The ``log_*`` methods run under the shard's lock."""

    def __init__(self, shard: Shard, wal: WriteAheadLog, store: SnapshotStore, tiers: Sequence[TierSpec]) -> None:
        self.shard = shard
        self.wal = wal
        self.store = store
        self.tiers = tuple(tiers)
        #: Series created but not yet defined in the log (guarded by the shard lock).
        self._pending: list[Series] = []
        #: The WAL epoch the definitions written so far belong to (see ``_write``).
        self._epoch = wal.epoch
        #: Newest sample time logged, replayed or restored (ns; the engine's retention clock).
        self.newest = -(2**63)
        self._aliases: dict[int, Series] = {}
        self.replay_stats = ReplayStats()
        self.snapshot_loaded: Path | None = None
        self.snapshots_skipped = 0
        #: Something was logged (or replayed) since the last snapshot (guarded by the shard lock).
        self.dirty = False
        self._last_record: Record | None = None

    # -- write path (under the shard lock) ----------------------------------------------

    def note_series(self, series: Series) -> None:
        """The shard's ``on_new_series`` hook: define ``series`` in the next logged group."""
        self._pending.append(series)

    def log_samples(
        self, items: Sequence[tuple[Series, I64, F64]], columns: tuple[I64, F64] | None = None
    ) -> WalPosition:
        """Log rows about to be appended (``Shard.append_columns`` order; ``columns``: the items'
        rows already concatenated); raises with nothing logged."""
        if len(items) == 1:
            series, ts, vals = items[0]
            ids = np.full(len(ts), series.sid, dtype=np.int64)
        else:
            lens = [len(t) for _, t, _ in items]
            ids = np.repeat(np.fromiter((s.sid for s, _, _ in items), np.int64, len(items)), lens)
            if columns is not None:
                ts, vals = columns
            else:
                ts = np.concatenate([t for _, t, _ in items])
                vals = np.concatenate([v for _, _, v in items])
        pos = self._write(SamplesRecord(ids, ts, vals))
        if len(ts):
            top = int(ts.max())
            if top > self.newest:
                self.newest = top
        return pos

    def log_rows(self, ids: I64, ts: I64, vals: F64) -> WalPosition:
        """Log rows about to be appended by ``Shard.append_rows`` (series ids aligned with the
        columns); raises with nothing logged."""
        pos = self._write(SamplesRecord(ids, ts, vals))
        if len(ts):
            top = int(ts.max())
            if top > self.newest:
                self.newest = top
        return pos

    def log_delete(self, matchers: Sequence[Matcher], start: int | None, end: int | None) -> WalPosition:
        """Log a delete about to be applied (None: an open end)."""
        lo = _OPEN_LO if start is None else start
        hi = _OPEN_HI if end is None else end
        return self._write(DeleteRecord(tuple(matchers), lo, hi))

    def log_retention(self, cutoff: int | None, newest: int) -> WalPosition:
        """Log a retention pass about to run (``Shard.expire`` arguments). A pass with the same
        arguments right after the last logged one changes nothing and is not logged again."""
        record = RetentionRecord(_OPEN_LO if cutoff is None else cutoff, newest)
        if record == self._last_record:
            return self.wal.position()
        return self._write(record)

    def _write(self, record: Record) -> WalPosition:
        while True:
            group: list[Record] = []
            defs = tuple(SeriesDef(s.sid, s.metric, s.labels) for s in self._pending if not s.dead)
            if defs:
                group.append(SeriesRecord(defs))
            group.append(record)
            try:
                pos = self.wal.write(group, epoch=self._epoch)
                self.dirty = True
                self._last_record = record
            except LogCutError:
                # A failed fsync cut records from the log, maybe SERIES definitions that later
                # records rely on: define every live series again, in this very group.
                self._epoch = self.wal.epoch
                self._pending = self.shard.series_locked()
                continue
            except StorageError:
                self._forget_unlogged()
                raise
            self._pending.clear()
            return pos

    def _forget_unlogged(self) -> None:
        """After a failed write: drop the still-empty series it would have defined, so that
        nothing unacknowledged stays visible (a writer holding one re-creates it)."""
        keep = []
        for s in self._pending:
            if s.dead:
                continue
            if s.is_empty:
                self.shard.remove_locked(s)
            else:
                keep.append(s)  # defined again after a cut; must stay pending
        self._pending = keep

    def wait_durable(self, position: WalPosition) -> None:
        """Block (outside the shard lock) until ``position`` is durable under the fsync policy."""
        self.wal.wait_durable(position)

    # -- recovery -----------------------------------------------------------------------

    def recover(self) -> None:
        """Load the newest valid snapshot, then replay the WAL after it (logging off)."""
        loaded = self.store.load_latest()
        self.snapshots_skipped = len(loaded.skipped)
        after = None
        if loaded.snapshot is None and loaded.skipped:
            names = ", ".join(str(p) for p, _ in loaded.skipped)
            raise CorruptionError(
                f"no usable snapshot of shard {self.shard.number}: {names} failed verification, and the WAL "
                "alone may not hold everything they covered; restore them from a backup or move them away "
                "to start from the WAL alone",
                path=str(loaded.skipped[0][0]),
            )
        if loaded.snapshot is not None:
            try:
                self.newest = persist.restore(self.shard, loaded.snapshot, self.tiers)
            except ValueError as exc:
                raise CorruptionError(
                    f"snapshot {str(loaded.path)!r} cannot be loaded: {exc}", path=str(loaded.path)
                ) from exc
            self.snapshot_loaded = loaded.path
            after = loaded.snapshot.wal_position
        replay = self.wal.replay(after=after)
        for record in replay:
            self._apply(record)
        self.replay_stats = replay.stats
        self.dirty = replay.stats.records > 0 or (loaded.snapshot is None and self.shard.series_count() > 0)

    def _apply(self, record: Record) -> None:
        shard = self.shard
        if isinstance(record, SamplesRecord):
            self._replay_samples(record)
        elif isinstance(record, SeriesRecord):
            for d in record.series:
                series, _ = shard.get_or_create(canonical_key(d.metric, d.labels), d.metric, d.labels, d.series_id)
                if series.sid != d.series_id:  # only after a cut log: the key lives on under its old id
                    self._aliases[d.series_id] = series
        elif isinstance(record, DeleteRecord):
            lo = None if record.start_ns == _OPEN_LO else record.start_ns
            hi = None if record.end_ns == _OPEN_HI else record.end_ns
            shard.delete(list(record.matchers), lo, hi)
        elif isinstance(record, RetentionRecord):
            newest = self.newest if record.newest_ns is None else record.newest_ns
            self.newest = max(self.newest, newest)
            shard.expire(None if record.cutoff_ns == _OPEN_LO else record.cutoff_ns, newest)

    def _replay_samples(self, record: SamplesRecord) -> None:
        ids = record.series_ids
        n = len(ids)
        if not n:
            return
        # Runs of one id are the items of the logged call (each series once per call).
        starts = [0, *(np.flatnonzero(ids[1:] != ids[:-1]) + 1).tolist()]
        sids = ids[starts].tolist()
        items = []
        lookup, aliases = self.shard.series_by_id, self._aliases
        for sid, a, b in zip(sids, starts, [*starts[1:], n], strict=True):
            series = lookup(sid) or aliases.get(sid)
            if series is None:
                raise CorruptionError(
                    f"the WAL of shard {self.shard.number} has samples for series id {sid}, which no SERIES "
                    "record or snapshot defines"
                )
            items.append((series, record.timestamps[a:b], record.values[a:b]))
        self.shard.append_columns(items)
        top = int(record.timestamps.max())
        if top > self.newest:
            self.newest = top

    def attach(self) -> None:
        """Start logging: from now on every change of the shard goes through this log."""
        with self.shard.lock:
            self._epoch = self.wal.epoch
            self.shard.on_new_series = self.note_series
            self.shard.log = self

    # -- snapshots ----------------------------------------------------------------------

    def snapshot(self, *, force: bool = True) -> int:
        """Write a snapshot of the shard and drop the WAL segments it makes unnecessary;
        returns its size in bytes (0: skipped, nothing logged since the last one and not
        ``force``). Writers wait only while the state is captured."""
        shard = self.shard
        with shard.lock:
            if not (force or self.dirty):
                return 0
            position = self.wal.rotate()
            image = persist.capture(shard, self.newest, len(self.tiers))
            self.dirty = False
        try:
            path = self.store.write(persist.to_snapshot(image, position, self.tiers))
        except BaseException:
            self.dirty = True  # still owed
            raise
        oldest_kept = self.store.prune(keep=_KEEP_SNAPSHOTS)
        if oldest_kept is not None:
            self.wal.drop_before(oldest_kept)
        try:
            return path.stat().st_size
        except OSError:  # only for stats; the snapshot itself is durable
            return 0


class Durability:
    """The data directory of one engine: a ``ShardLog`` per shard, snapshots and WAL stats.

    Thread-safe: writers use the shard logs under their shard locks; ``snapshot`` and
    ``close`` serialize on their own lock.
    """

    def __init__(self, datadir: DataDir, logs: list[ShardLog], recovery_seconds: float) -> None:
        self.datadir = datadir
        self.logs = logs
        self.recovery_seconds = recovery_seconds
        self._lock = threading.Lock()
        self._closed = False
        self._snapshots = 0
        self._snapshot_errors = 0
        self._last_snapshot: tuple[float, int, float] | None = None  # unix time, bytes, seconds
        self._last_attempt = time.monotonic()

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], shards: Sequence[Shard], tiers: Sequence[TierSpec], *, fsync: str
    ) -> Durability:
        """Lock ``path``, recover every shard into ``shards`` (empty), then start logging.

        Raises DataDirLockedError when another process owns the directory, CorruptionError
        (naming the file, the offset and the repair command) when recovery cannot proceed,
        StorageError (DiskFullError, ...) when the directory is unusable.
        """
        start = time.perf_counter()
        datadir = DataDir.open(path, len(shards))
        logs: list[ShardLog] = []
        try:
            for shard in shards:
                store = SnapshotStore(datadir.snapshot_dir(shard.number), shard=shard.number)
                wal = WriteAheadLog.open(datadir.wal_dir(shard.number), shard=shard.number, fsync=fsync)
                logs.append(ShardLog(shard, wal, store, tiers))
            for log in logs:
                log.recover()
        except CorruptionError as exc:
            cls._abandon(datadir, logs)
            raise CorruptionError(
                f"{exc.message} (to keep everything before the damage: tsdb repair --data-dir {os.fspath(path)})",
                path=exc.path,
                offset=exc.offset,
            ) from exc
        except BaseException:
            cls._abandon(datadir, logs)
            raise
        for log in logs:
            log.attach()
        durability = cls(datadir, logs, time.perf_counter() - start)
        stats = [log.replay_stats for log in logs]
        logger.info(
            "recovered %s in %.3f s: %d snapshot(s) loaded, %d WAL records (%d samples) replayed, %d torn tail(s) cut",
            os.fspath(path),
            durability.recovery_seconds,
            sum(log.snapshot_loaded is not None for log in logs),
            sum(s.records for s in stats),
            sum(s.samples for s in stats),
            sum(s.torn_tails for s in stats),
        )
        return durability

    @staticmethod
    def _abandon(datadir: DataDir, logs: list[ShardLog]) -> None:
        for log in logs:
            with contextlib.suppress(StorageError):
                log.wal.close()
        datadir.close()

    def abandon(self) -> None:
        """Close the logs and release the lock without a snapshot (an engine dropped without
        ``close``: the next open recovers from the WAL, as after a crash). Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._abandon(self.datadir, self.logs)

    @property
    def newest(self) -> int:
        """Newest sample time recovered or logged over all shards (ns)."""
        return max(log.newest for log in self.logs)

    def wait(self, waits: Sequence[tuple[ShardLog, WalPosition]]) -> None:
        """Wait until every ``(log, position)`` is durable, shard after shard.

        (Waiting for the shards' fsyncs side by side from helper threads measured no faster:
        the file system's journal commits them one after the other anyway.)"""
        for log, pos in waits:
            log.wait_durable(pos)

    def wait_all(self) -> None:
        """Wait until everything logged so far is durable (after deletes and retention)."""
        self.wait([(log, log.wal.position()) for log in self.logs])

    def snapshot_due(self, interval_s: float) -> bool:
        """Whether ``interval_s`` seconds passed since the last snapshot attempt."""
        return time.monotonic() - self._last_attempt >= interval_s

    def snapshot(self, *, force: bool = True) -> dict[str, float]:
        """Snapshot every shard (without ``force``: those that changed since their last one, see
        ``ShardLog.snapshot``); returns bytes written and seconds taken."""
        with self._lock:
            if self._closed:
                raise StorageError("the data directory is closed", field="data_dir")
            return self._snapshot_locked(force)

    def _snapshot_locked(self, force: bool) -> dict[str, float]:
        start = time.perf_counter()
        self._last_attempt = time.monotonic()
        try:
            size = sum(log.snapshot(force=force) for log in self.logs)
        except StorageError:
            self._snapshot_errors += 1
            raise
        seconds = time.perf_counter() - start
        self._snapshots += 1
        self._last_snapshot = (time.time(), size, seconds)
        return {"bytes": size, "seconds": seconds}

    def close(self) -> None:
        """Snapshot (best effort: the WAL holds everything anyway), make the WAL durable, close
        it and release the directory lock. Idempotent; raises a failed final fsync's error."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            error: StorageError | None = None
            try:
                self._snapshot_locked(False)
            except StorageError as exc:
                logger.warning("snapshot at close failed (the WAL still holds every write): %s", exc.message)
            finally:
                for log in self.logs:
                    try:
                        log.wal.close()
                    except StorageError as exc:
                        error = error or exc
                self.datadir.close()
            if error is not None:
                raise error

    def stats(self) -> dict[str, Any]:
        """WAL and snapshot counters over every shard (see ``TSDB.stats`` for the keys)."""
        wal = [log.wal.stats() for log in self.logs]
        replay = [log.replay_stats for log in self.logs]
        segments = disk_bytes = 0
        for log in self.logs:
            with contextlib.suppress(StorageError):  # stats never fail; the next write will say why
                for _, seg in list_segments(log.wal.directory):
                    with contextlib.suppress(OSError):  # dropped by a snapshot meanwhile
                        disk_bytes += seg.stat().st_size
                        segments += 1
        last = self._last_snapshot
        return {
            "fsync": str(self.logs[0].wal.policy) if self.logs else None,
            "segments": segments,
            "bytes": disk_bytes,
            "appends": sum(w.appends for w in wal),
            "records": sum(w.records for w in wal),
            "bytes_written": sum(w.bytes for w in wal),
            "fsyncs": sum(w.fsyncs for w in wal),
            "write_errors": sum(w.write_errors for w in wal),
            "fsync_errors": sum(w.fsync_errors for w in wal),
            "torn_tails": sum(r.torn_tails for r in replay),
            "torn_bytes": sum(r.torn_bytes for r in replay),
            "replayed_records": sum(r.records for r in replay),
            "replayed_samples": sum(r.samples for r in replay),
            "recovery_seconds": self.recovery_seconds,
            "snapshots_loaded": sum(log.snapshot_loaded is not None for log in self.logs),
            "snapshots_skipped": sum(log.snapshots_skipped for log in self.logs),
            "snapshots": self._snapshots,
            "snapshot_errors": self._snapshot_errors,
            "last_snapshot_time": None if last is None else last[0],
            "last_snapshot_bytes": None if last is None else last[1],
            "last_snapshot_seconds": None if last is None else last[2],
        }
