"""Durability: write-ahead log, snapshots and the data directory (byte formats in FORMAT.md).

How the engine uses it, per shard ``i``::

    dd = DataDir.open(data_dir, num_shards)                 # locks the directory
    store = SnapshotStore(dd.snapshot_dir(i), shard=i)
    loaded = store.load_latest()                            # newest intact snapshot or None
    wal = WriteAheadLog.open(dd.wal_dir(i), shard=i, fsync=settings.fsync)
    ... load loaded.snapshot (series, chunks, head, extra) ...
    for record in wal.replay(after=loaded.snapshot.wal_position if loaded.snapshot else None):
        ... apply SeriesRecord / SamplesRecord / DeleteRecord / RetentionRecord ...

    # write path: under the shard lock, log first, then apply; acknowledge after the wait
    pos = wal.write([SeriesRecord(new_series), SamplesRecord(ids, ts, vals)])
    ... apply to memory, release the shard lock ...
    wal.wait_durable(pos)                                   # group commit with other writers

    # snapshot: under the shard lock rotate and capture; write and prune outside it
    pos = wal.rotate(); snap = Snapshot(i, pos, series, chunks, head, extra)
    store.write(snap); wal.drop_before(store.prune(keep=2))

The engine's implementation of exactly this is ``tsdb.storage.durable`` (with the snapshot
sections in ``tsdb.storage.persist``); ``tsdb.wal.repair_cli`` is the ``tsdb repair`` command.
"""

from tsdb.wal.datadir import DataDir, FileOps, storage_error
from tsdb.wal.log import DEFAULT_SEGMENT_BYTES, FsyncPolicy, LogCutError, WalStats, WriteAheadLog
from tsdb.wal.records import (
    DeleteRecord,
    Record,
    RecordType,
    RetentionRecord,
    SamplesRecord,
    SeriesDef,
    SeriesRecord,
)
from tsdb.wal.repair import RepairReport, repair_data_dir, repair_wal
from tsdb.wal.replay import ReplayStats, WalReplay
from tsdb.wal.segment import TailDamage, WalPosition, list_segments
from tsdb.wal.snapshot import (
    ChunkRow,
    ChunkTable,
    ChunkTableBuilder,
    HeadTable,
    HeadTableBuilder,
    LoadResult,
    Snapshot,
    SnapshotStore,
    read_snapshot,
    write_snapshot,
)

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "ChunkRow",
    "ChunkTable",
    "ChunkTableBuilder",
    "DataDir",
    "DeleteRecord",
    "FileOps",
    "FsyncPolicy",
    "HeadTable",
    "HeadTableBuilder",
    "LoadResult",
    "LogCutError",
    "Record",
    "RecordType",
    "RepairReport",
    "ReplayStats",
    "RetentionRecord",
    "SamplesRecord",
    "SeriesDef",
    "SeriesRecord",
    "Snapshot",
    "SnapshotStore",
    "TailDamage",
    "WalPosition",
    "WalReplay",
    "WalStats",
    "WriteAheadLog",
    "list_segments",
    "read_snapshot",
    "repair_data_dir",
    "repair_wal",
    "storage_error",
    "write_snapshot",
]
