"""Partial aggregates merge to what a single pass over all samples computes."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tsdb.storage.partials import combine_sequential, from_samples, merge_parallel

samples_st = st.lists(st.integers(-100, 100), min_size=1, max_size=60, unique=True).map(sorted)


def _series(times, seed):
    rng = np.random.default_rng(seed)
    return np.array(times, dtype=np.int64), rng.integers(0, 50, len(times)).astype(np.float64)


@given(samples_st, st.integers(0, 1000), st.sampled_from([None, 3, 10]), st.lists(st.integers(0, 59), max_size=4))
def test_sequential_pieces_merge_to_the_whole(times, seed, width, cuts) -> None:
    ts, vals = _series(times, seed)
    whole = combine_sequential([from_samples(ts, vals, width, -100)])
    bounds = sorted({0, len(ts), *(c for c in cuts if c < len(ts))})
    pieces = [from_samples(ts[a:b], vals[a:b], width, -100) for a, b in itertools.pairwise(bounds)]
    merged = combine_sequential(pieces)
    for field in ("bucket", "count", "min", "max", "first_t", "first", "last_t", "last"):
        assert np.array_equal(getattr(merged, field), getattr(whole, field)), field
    for field in ("sum", "m2", "inc"):
        assert np.allclose(getattr(merged, field), getattr(whole, field)), field


@given(samples_st, samples_st, st.sampled_from([None, 7]))
def test_parallel_merge_adds_counts_and_sums(t1, t2, width) -> None:
    a, b = _series(t1, 1), _series(t2, 2)
    pa, pb = from_samples(*a, width, -100), from_samples(*b, width, -100)
    m = merge_parallel([pa, pb])
    both_ts = np.concatenate([a[0], b[0]])
    both_v = np.concatenate([a[1], b[1]])
    keys = (both_ts // width) * width if width else np.full(len(both_ts), -100)
    for i, bucket in enumerate(m.bucket):
        sel = keys == bucket
        assert m.count[i] == sel.sum()
        assert np.isclose(m.sum[i], both_v[sel].sum())
        assert np.isclose(m.m2[i], ((both_v[sel] - both_v[sel].mean()) ** 2).sum())
        assert m.min[i] == both_v[sel].min() and m.max[i] == both_v[sel].max()
    assert set(m.bucket.tolist()) == set(keys.tolist())
