"""Timestamp and duration parsing at the edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from tsdb.errors import InvalidQueryError, InvalidTimestampError
from tsdb.timeutil import ns_to_seconds, parse_duration_ns, to_ns, to_ns_array

T = 1_747_213_200  # 2025-05-14T09:00:00Z


@pytest.mark.parametrize(
    "value",
    [
        "2025-05-14T09:00:00Z",
        "2025-05-14T09:00:00+00:00",
        "2025-05-14T11:00:00+02:00",
        "2025-05-14 09:00:00",
        T,
        float(T),
        datetime(2025, 5, 14, 9, tzinfo=UTC),
        datetime(2025, 5, 14, 9),
        datetime(2025, 5, 14, 10, tzinfo=timezone(timedelta(hours=1))),
        np.datetime64("2025-05-14T09:00:00"),
        np.int64(T),
    ],
)
def test_every_accepted_form_gives_the_same_instant(value: object) -> None:
    assert to_ns(value) == T * 1_000_000_000


def test_units_are_explicit_never_guessed() -> None:
    assert to_ns(T * 1000, "ms") == T * 10**9
    assert to_ns(T * 10**9, "ns") == T * 10**9
    assert to_ns(1.5) == 1_500_000_000
    # A millisecond number read as seconds is far outside the accepted range: refused, not guessed.
    with pytest.raises(InvalidTimestampError, match="out of range"):
        to_ns(T * 10**9)


@pytest.mark.parametrize("bad", [True, None, "yesterday", "2025-13-01T00:00:00Z", float("nan"), float("inf"), [1]])
def test_bad_timestamps_are_refused(bad: object) -> None:
    with pytest.raises(InvalidTimestampError):
        to_ns(bad)


def test_unknown_unit() -> None:
    with pytest.raises(InvalidTimestampError, match="unknown timestamp unit"):
        to_ns(1, "minutes")


def test_sub_microsecond_precision_from_strings() -> None:
    assert to_ns("1970-01-01T00:00:01.000001Z") == 1_000_001_000


def test_arrays() -> None:
    assert to_ns_array([1, 2]).tolist() == [10**9, 2 * 10**9]
    assert to_ns_array(np.array(["2025-05-14T09:00:00"], dtype="datetime64[s]")).tolist() == [T * 10**9]
    assert to_ns_array(["2025-05-14T09:00:00Z"]).tolist() == [T * 10**9]
    with pytest.raises(InvalidTimestampError, match="booleans"):
        to_ns_array([True, False])
    with pytest.raises(InvalidTimestampError, match="NaN"):
        to_ns_array([1.0, float("nan")])


def test_seconds_out() -> None:
    assert ns_to_seconds(2 * 10**9) == 2 and isinstance(ns_to_seconds(2 * 10**9), int)
    assert ns_to_seconds(1_500_000_000) == 1.5


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("30s", 30 * 10**9),
        ("5m", 300 * 10**9),
        ("1h30m", 5400 * 10**9),
        ("250ms", 250 * 10**6),
        ("60", 60 * 10**9),
        (1.5, 1_500_000_000),
    ],
)
def test_durations(text: object, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("bad", ["", "5 minutes", "0s", "-1", 0, True, "1x"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(InvalidQueryError):
        parse_duration_ns(bad, field="downsample")


def test_float_seconds_keep_their_precision() -> None:
    # round(1795021754.25 * 1e9) would be off by ~100 ns.
    assert to_ns(1795021754.25) == 1_795_021_754_250_000_000
    assert to_ns_array([1795021754.25]).tolist() == [1_795_021_754_250_000_000]


def test_nanosecond_fractions_in_strings() -> None:
    assert to_ns("2025-05-14T09:00:00.123456789Z") == T * 10**9 + 123_456_789


def test_huge_float_columns_are_refused_without_overflow() -> None:
    with pytest.raises(InvalidTimestampError, match="out of range"):
        to_ns_array([1e300])
