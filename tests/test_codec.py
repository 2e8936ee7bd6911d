"""The column codec round-trips every value bit-exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tsdb import codec


@given(hnp.arrays(np.int64, st.integers(1, 600)), st.sampled_from([codec.FAST_LEVEL, codec.STRONG_LEVEL]))
def test_int64_round_trip(col: np.ndarray, level: int) -> None:
    assert np.array_equal(codec.decode_i64(codec.encode_i64(col, level)), col)


@given(hnp.arrays(np.float64, st.integers(1, 600), elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_float64_round_trip_is_bit_exact(col: np.ndarray) -> None:
    out = codec.decode_f64(codec.encode_f64(col))
    assert np.array_equal(out.view(np.uint64), col.view(np.uint64))


def test_regular_data_compresses_well() -> None:
    ts = 1_700_000_000_000_000_000 + np.arange(500, dtype=np.int64) * 1_000_000_000
    vals = np.full(500, 42.0)
    size = len(codec.encode_i64(ts)) + len(codec.encode_f64(vals))
    assert size / 500 < 1.0
