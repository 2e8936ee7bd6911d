"""The native columnar parser and the query-result formatter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsdb.errors import InvalidInputError
from tsdb.protocols import native_json

NS = 1_000_000_000


@st.composite
def blocks(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 20))
    ts = draw(st.lists(st.integers(0, 4_000_000_000), min_size=n, max_size=n))
    vals = draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=n, max_size=n))
    block: dict[str, Any] = {"metric": draw(st.sampled_from(["a", "b"])), "timestamps": ts, "values": vals}
    if draw(st.booleans()):
        block["labels"] = draw(st.dictionaries(st.sampled_from(["x", "y"]), st.sampled_from(["1", "2"]), max_size=2))
    return block


@given(st.lists(blocks(), max_size=6), st.sampled_from(["s", "ms", "us", "ns"]))
def test_columnar_matches_reference(body: list[dict[str, Any]], unit: str) -> None:
    mult = {"s": NS, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    b = native_json.parse_columnar(orjson.dumps(body), unit=unit)
    b.validate()
    expected = [
        ((blk["metric"], tuple(sorted(blk.get("labels", {}).items()))), t * mult, v)
        for blk in body
        for t, v in zip(blk["timestamps"], blk["values"], strict=True)
    ]
    got = [(b.series[int(i)], int(t), float(v)) for i, t, v in zip(b.series_idx, b.timestamps, b.values, strict=True)]
    assert got == expected
    assert len(set(b.series)) == len(b.series)


@pytest.mark.parametrize(
    ("doc", "field", "needle"),
    [
        ({"metric": "a", "timestamps": [1, 2], "values": [1]}, "values", "must match"),
        ({"metric": "a", "timestamps": [1], "values": [True]}, "value", "values[0]"),
        ({"metric": "a", "timestamps": [1, "x"], "values": [1, 2]}, "timestamp", "timestamps[1]"),
        ({"metric": "a", "timestamps": 1, "values": [1]}, "timestamps", "array"),
        ({"timestamps": [1], "values": [1]}, "metric", "missing"),
        ({"metric": "a", "timestamps": [1], "values": [1], "unit": "s"}, "unit", "unknown field"),
        ([{"metric": "a", "timestamps": [1], "values": [1]}, 5], "body", "block 1"),
        ({"metric": "a b", "timestamps": [1], "values": [1]}, "metric", "invalid metric name"),
    ],
)
def test_bad_blocks(doc: Any, field: str, needle: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        native_json.parse_columnar(orjson.dumps(doc))
    assert info.value.field == field
    assert needle in info.value.message


@dataclass
class _S:
    metric: str | None
    labels: dict[str, str]
    timestamps: np.ndarray
    values: np.ndarray


@dataclass
class _R:
    kind: str
    resolution: str
    series: list[_S]


def test_query_result_format() -> None:
    r = _R(
        "downsample",
        "raw",
        [_S("cpu", {"host": "a"}, np.array([60 * NS, 120 * NS]), np.array([0.5, np.nan]))],
    )
    assert orjson.loads(native_json.format_query_result(r)) == {
        "kind": "downsample",
        "resolution": "raw",
        "series": [{"metric": "cpu", "labels": {"host": "a"}, "timestamps": [60, 120], "values": [0.5, None]}],
    }
    frac = _R("raw", "raw", [_S(None, {}, np.array([NS // 4]), np.array([1.0]))])
    assert orjson.loads(native_json.format_query_result(frac))["series"][0]["timestamps"] == [0.25]
