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
