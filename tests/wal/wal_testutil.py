"""Shared strategies and helpers for the WAL tests (imported by the test modules)."""

from __future__ import annotations

import re
import string
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tsdb.labels import Matcher, MatchOp
from tsdb.wal.records import DeleteRecord, Record, RetentionRecord, SamplesRecord, SeriesDef, SeriesRecord
from tsdb.wal.segment import encode_frames, encode_header

I64_MIN, I64_MAX = -(2**63), 2**63 - 1

# names need not start with a digit; alphabets without digits keep generation fast and valid
metric_names = st.text(alphabet=string.ascii_letters + "_:", min_size=1, max_size=12)
label_names = st.text(alphabet=string.ascii_letters + "_", min_size=1, max_size=12)
label_values = st.text(min_size=1, max_size=20)
labelsets = st.dictionaries(label_names, label_values, max_size=5).map(lambda d: tuple(sorted(d.items())))
int64s = st.integers(I64_MIN, I64_MAX)

series_defs = st.builds(SeriesDef, int64s, metric_names, labelsets)
series_records = st.lists(series_defs, max_size=6).map(lambda s: SeriesRecord(tuple(s)))


@st.composite
def samples_records(draw: st.DrawFn, max_size: int = 50) -> SamplesRecord:
    n = draw(st.integers(0, max_size))
    ids = draw(hnp.arrays(np.int64, n))
    ts = draw(hnp.arrays(np.int64, n))
    # arbitrary bit patterns: every NaN payload (staleness markers included) must survive
    bits = draw(hnp.arrays(np.uint64, n))
    return SamplesRecord(ids, ts, bits.view(np.float64))


@st.composite
def matchers(draw: st.DrawFn) -> Matcher:
    op = draw(st.sampled_from(list(MatchOp)))
    text = draw(st.text(max_size=10))
    value = re.escape(text) + draw(st.sampled_from(["", ".*", "|x"])) if op in (MatchOp.RE, MatchOp.NRE) else text
    return Matcher(draw(st.sampled_from(["__name__", "host", "job"])), op, value)


delete_records = st.builds(DeleteRecord, st.lists(matchers(), max_size=4).map(tuple), int64s, int64s)
retention_records = st.builds(RetentionRecord, int64s)
any_record = st.one_of(series_records, samples_records(), delete_records, retention_records)


def same_record(a: Record, b: Record) -> bool:
    """Equality of records; SAMPLES columns compared bit for bit."""
    if isinstance(a, SamplesRecord) and isinstance(b, SamplesRecord):
        return (
            np.array_equal(a.series_ids, b.series_ids)
            and np.array_equal(a.timestamps, b.timestamps)
            and np.array_equal(np.asarray(a.values).view(np.uint64), np.asarray(b.values).view(np.uint64))
        )
    return a == b


def same_groups(got: list[Record], groups: list[list[Record]]) -> bool:
    """Whether ``got`` is exactly the records of ``groups`` in order."""
    want = [r for g in groups for r in g]
    return len(got) == len(want) and all(same_record(x, y) for x, y in zip(got, want, strict=True))


def write_raw_segment(path: Path, groups: list[list[Record]], *, shard: int = 0, segment_id: int = 1) -> list[int]:
    """Write a segment file directly; returns the end offset of every group."""
    data = bytearray(encode_header(shard, segment_id))
    ends = []
    for g in groups:
        data += encode_frames(g)
        ends.append(len(data))
    path.write_bytes(bytes(data))
    return ends


def small_samples(k: int, n: int = 10) -> SamplesRecord:
    """A deterministic SAMPLES record whose content encodes ``k``."""
    return SamplesRecord(np.full(n, k, np.int64), np.arange(n, dtype=np.int64) + k * 1000, np.full(n, k + 0.5))
