"""Snapshot + WAL replay reproduce a shard's state exactly, against a naive reference model.

The model is what an engine keeps: series, and per series a dict timestamp -> value (last write
wins). Every operation is logged the way the engine will log it; at random points the model is
snapshotted (rotate, write, prune, drop covered segments) or the process "crashes" and the state
is rebuilt from the newest snapshot plus the WAL after it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsdb import codec
from tsdb.labels import Matcher
from tsdb.wal import (
    ChunkTableBuilder,
    DeleteRecord,
    HeadTableBuilder,
    Record,
    RetentionRecord,
    SamplesRecord,
    SeriesDef,
    SeriesRecord,
    Snapshot,
    SnapshotStore,
    WriteAheadLog,
)

CHUNK = 4
STATS = ("sum", "min", "max", "first", "last")


class Model:
    """The reference: series definitions and their samples."""

    def __init__(self) -> None:
        self.series: dict[int, SeriesDef] = {}
        self.samples: dict[int, dict[int, float]] = {}

    def apply(self, record: Record) -> None:
        if isinstance(record, SeriesRecord):
            for s in record.series:
                self.series[s.series_id] = s
                self.samples.setdefault(s.series_id, {})
        elif isinstance(record, SamplesRecord):
            for sid, ts, v in zip(
                record.series_ids.tolist(), record.timestamps.tolist(), record.values.tolist(), strict=True
            ):
                self.samples[sid][ts] = v
        elif isinstance(record, DeleteRecord):
            for sid, s in self.series.items():
                if all(m.matches(dict(s.labels).get(m.name, "")) for m in record.matchers):
                    pts = self.samples[sid]
                    for ts in [t for t in pts if record.start_ns <= t <= record.end_ns]:
                        del pts[ts]
        elif isinstance(record, RetentionRecord):
            for pts in self.samples.values():
                for ts in [t for t in pts if t < record.cutoff_ns]:
                    del pts[ts]

    def snapshot(self, shard: int, position: object) -> Snapshot:
        chunks, head = ChunkTableBuilder(STATS), HeadTableBuilder()
        for sid, pts in self.samples.items():
            items = sorted(pts.items())
            sealed = len(items) - len(items) % CHUNK
            for i in range(0, sealed, CHUNK):
                ts = np.array([t for t, _ in items[i : i + CHUNK]], np.int64)
                vs = np.array([v for _, v in items[i : i + CHUNK]], np.float64)
                stats = (vs.sum(), vs.min(), vs.max(), vs[0], vs[-1])
                chunks.add(sid, int(ts[0]), int(ts[-1]), CHUNK, stats, codec.encode_i64(ts), codec.encode_f64(vs))
            rest = items[sealed:]
            head.add(sid, [t for t, _ in rest], [v for _, v in rest])
        return Snapshot(shard, position, tuple(self.series.values()), chunks.build(), head.build())  # type: ignore[arg-type]

    @classmethod
    def load(cls, snap: Snapshot | None) -> Model:
        m = cls()
        if snap is None:
            return m
        m.apply(SeriesRecord(snap.series))
        for row in snap.chunks.rows():
            ts, vs = codec.decode_i64(row.ts_bytes), codec.decode_f64(row.val_bytes)
            assert (row.count, row.min_t, row.max_t) == (len(ts), ts[0], ts[-1])
            m.apply(SamplesRecord(np.full(len(ts), row.series_id), ts, vs))
        for sid, ts, vs in snap.head.rows():
            m.apply(SamplesRecord(np.full(len(ts), sid), ts, vs))
        return m


timestamps = st.integers(0, 40)
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.integers(0, 2),
            st.lists(st.tuples(st.integers(0, 9), timestamps, st.floats(-1e6, 1e6)), min_size=1, max_size=12),
        ),
        st.tuples(st.just("delete"), st.sampled_from(["h0", "h1", "h2"]), timestamps, timestamps),
        st.tuples(st.just("retention"), timestamps),
        st.tuples(st.just("snapshot"), st.integers(1, 2)),
        st.tuples(st.just("crash")),
    ),
    max_size=25,
)


def _recover(wal_dir: Path, store: SnapshotStore) -> tuple[WriteAheadLog, Model]:
    loaded = store.load_latest()
    log = WriteAheadLog.open(wal_dir, fsync="never", segment_bytes=4096)
    model = Model.load(loaded.snapshot)
    replay = log.replay(after=loaded.snapshot.wal_position if loaded.snapshot else None)
    for record in replay:
        model.apply(record)
    assert replay.stats.torn_tails == 0
    return log, model


def _assert_same(a: Model, b: Model) -> None:
    assert a.series == b.series
    assert a.samples == b.samples


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(script=ops)
def test_snapshot_plus_replay_reproduces_the_state_exactly(tmp_path: Path, script: list) -> None:
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    store = SnapshotStore(root / "snap", shard=0)
    log, _ = _recover(root / "wal", store)
    model = Model()
    for op in script:
        if op[0] == "write":
            _, new, rows = op
            group: list[Record] = []
            if new or not model.series:
                first = len(model.series)
                defs = tuple(SeriesDef(first + i, "m", (("host", f"h{(first + i) % 3}"),)) for i in range(max(new, 1)))
                group.append(SeriesRecord(defs))
            ids = sorted(
                {*model.series, *(s.series_id for r in group if isinstance(r, SeriesRecord) for s in r.series)}
            )
            group.append(
                SamplesRecord(
                    np.array([ids[i % len(ids)] for i, _, _ in rows]),
                    np.array([t for _, t, _ in rows]),
                    np.array([v for _, _, v in rows]),
                )
            )
        elif op[0] == "delete":
            group = [DeleteRecord((Matcher.eq("host", op[1]),), min(op[2], op[3]), max(op[2], op[3]))]
        elif op[0] == "retention":
            group = [RetentionRecord(op[1])]
        elif op[0] == "snapshot":
            pos = log.rotate()  # the engine holds the shard lock from here ...
            snap = model.snapshot(0, pos)  # ... to here
            store.write(snap)
            log.drop_before(store.prune(keep=op[1]))
            continue
        else:
            log.close()
            log, recovered = _recover(root / "wal", store)
            _assert_same(recovered, model)
            continue
        log.append(group)
        for record in group:
            model.apply(record)
    log.close()
    _, recovered = _recover(root / "wal", store)
    _assert_same(recovered, model)
