"""Sample values and batches."""

from __future__ import annotations

import numpy as np
import pytest

from tsdb._types import STALE_NAN, Batch, check_value, check_values, is_stale
from tsdb.errors import InvalidInputError, InvalidValueError


@pytest.mark.parametrize(
    "bad", [True, False, None, "42", float("nan"), float("inf"), -float("inf"), [1], np.bool_(True)]
)
def test_bad_values_are_refused(bad: object) -> None:
    with pytest.raises(InvalidValueError):
        check_value(bad)


def test_good_values() -> None:
    assert check_value(42) == 42.0 and isinstance(check_value(42), float)
    assert check_value(np.float32(1.5)) == 1.5
    assert check_values([1, 2]).dtype == np.float64
    with pytest.raises(InvalidValueError, match=r"values\[1\]"):
        check_values([1.0, float("nan")])
    with pytest.raises(InvalidValueError, match="booleans"):
        check_values(np.array([True]))


def test_staleness_marker_is_recognised_by_bits() -> None:
    assert is_stale(np.array([STALE_NAN, float("nan"), 0.0])).tolist() == [True, False, False]


def test_batch_validation() -> None:
    good = Batch([("m", ())], np.zeros(2, np.int64), np.array([1, 2]), np.array([1.0, STALE_NAN]))
    good.validate()
    with pytest.raises(InvalidInputError, match="differ in length"):
        Batch([("m", ())], np.zeros(2, np.int64), np.array([1]), np.array([1.0, 2.0])).validate()
    with pytest.raises(InvalidValueError, match="not finite"):
        Batch([("m", ())], np.zeros(1, np.int64), np.array([1]), np.array([np.nan])).validate()
    with pytest.raises(InvalidInputError, match="out of range"):
        Batch([("m", ())], np.ones(1, np.int64), np.array([1]), np.array([1.0])).validate()
