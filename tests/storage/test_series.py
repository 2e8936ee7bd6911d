"""Series storage invariants under arbitrary arrival order."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tsdb.storage.chunk import I_MAXT, I_MINT
from tsdb.storage.read import read_samples
from tsdb.storage.series import Series


@given(st.lists(st.tuples(st.integers(0, 80), st.integers(-5, 5)), min_size=1, max_size=200), st.integers(2, 7))
def test_chunks_never_overlap_and_reads_are_exact(writes, chunk_size) -> None:
    series = Series(1, "m", (), "m")
    last: dict[int, float] = {}
    for t, v in writes:
        if series.append(t, float(v)) >= chunk_size:
            series.seal(chunk_size, 0)
        last[t] = float(v)
    table = series.table
    if table is not None and len(table) > 1:
        _, ist, _ = table.view()
        assert (ist[1:, I_MINT] > ist[:-1, I_MAXT]).all()
        assert (ist[:, I_MINT] <= ist[:, I_MAXT]).all()
    ts, vals = read_samples(series.view(), -1, 100)
    assert ts.tolist() == sorted(last)
    assert vals.tolist() == [last[t] for t in sorted(last)]
    series.seal(chunk_size, 0, force=True)
    assert series.head_len == 0
    ts2, vals2 = read_samples(series.view(), -1, 100)
    assert np.array_equal(ts, ts2) and np.array_equal(vals, vals2)


def test_idle_series_allocates_no_head() -> None:
    assert Series(1, "m", (), "m").head_ts is None


def test_decoded_chunk_cache_serves_repeated_reads_and_stays_bounded() -> None:
    from tsdb.storage.decoded_cache import DecodedCache

    cache = DecodedCache(max_bytes=3 * 16 * 10)  # room for three 10-sample chunks
    series = Series(1, "m", (), "m")
    series.append_many(np.arange(50, dtype=np.int64), np.arange(50, dtype=np.float64))
    series.seal(10, 0)
    chunks = series.table.chunks
    for c in chunks:
        ts, vals = cache.put(c, *c.decode())
        assert not ts.flags.writeable and not vals.flags.writeable
    assert cache.get(chunks[0]) is None  # evicted, least recently used
    hit = cache.get(chunks[-1])
    assert hit is not None and hit[0].tolist() == list(range(40, 50))
    assert cache.nbytes <= cache.max_bytes
    cache.configure(0)
    assert cache.nbytes == 0 and cache.get(chunks[-1]) is None
