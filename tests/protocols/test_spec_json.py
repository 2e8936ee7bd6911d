"""The spec's JSON parser and listing formatter against a naive reference model."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsdb.errors import InvalidInputError, InvalidNameError, InvalidTimestampError, InvalidValueError
from tsdb.labels import Limits
from tsdb.protocols import spec_json
from tsdb.storage.interface import SeriesData

NS = 1_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

metric_names = st.sampled_from(["cpu", "mem", "node_load1", "a:b"])
label_sets = st.dictionaries(st.sampled_from(["host", "dc", "job"]), st.sampled_from(["a", "b", "c"]), max_size=3)
int_seconds = st.integers(min_value=0, max_value=4_000_000_000)
float_seconds = st.floats(min_value=0, max_value=4e9, allow_nan=False).map(lambda x: round(x, 3))
rfc3339 = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000).isoformat(timespec="milliseconds") + "Z"
)
values = st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def points(draw: st.DrawFn) -> dict[str, Any]:
    p: dict[str, Any] = {"timestamp": draw(st.one_of(int_seconds, float_seconds, rfc3339)), "value": draw(values)}
    if draw(st.booleans()):
        p["metric"] = draw(metric_names)
    if draw(st.booleans()):
        p["labels"] = draw(label_sets)
    return p


def reference_ns(ts: Any) -> int:
    """Independent conversion: Decimal-exact seconds, datetime arithmetic for strings."""
    if isinstance(ts, str):
        d = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        delta = d - EPOCH
        return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000
    if isinstance(ts, int):
        return ts * NS
    from decimal import Decimal

    return int((Decimal(ts) * NS).to_integral_value())


@given(st.lists(points(), min_size=1, max_size=40))
def test_array_matches_reference(pts: list[dict[str, Any]]) -> None:
    parsed = spec_json.parse_points(orjson.dumps(pts), default_metric="m1")
    assert not parsed.single
    b = parsed.batch
    b.validate()
    assert len(b) == len(pts)
    for i, p in enumerate(pts):
        metric, labels = b.series[int(b.series_idx[i])]
        assert metric == p.get("metric", "m1")
        assert dict(labels) == p.get("labels", {})
        assert int(b.timestamps[i]) == reference_ns(p["timestamp"])
        assert b.values[i] == float(p["value"])
    # Each distinct series appears once.
    assert len(set(b.series)) == len(b.series)


@given(points())
def test_single_point_paths_agree(p: dict[str, Any]) -> None:
    parsed = spec_json.parse_points(orjson.dumps(p), default_metric="m1")
    assert parsed.single and len(parsed.batch) == 1
    sp = spec_json.single_point(p, default_metric="m1")
    assert sp.timestamp_ns == int(parsed.batch.timestamps[0])
    assert sp.value == parsed.batch.values[0]
    assert sp.metric == parsed.batch.series[0][0]
    assert dict(parsed.batch.series[0][1]) == (sp.labels or {})


@given(st.lists(points(), min_size=2, max_size=20), st.data())
def test_one_bad_point_fails_the_whole_array_naming_it(pts: list[dict[str, Any]], data: st.DataObject) -> None:
    bad = data.draw(st.integers(0, len(pts) - 1))
    kind = data.draw(st.sampled_from(["bool", "string", "missing", "metric", "label"]))
    p = dict(pts[bad])
    if kind == "bool":
        p["value"] = True
    elif kind == "string":
        p["value"] = "1"
    elif kind == "missing":
        del p["timestamp"]
    elif kind == "metric":
        p["metric"] = "0bad"
    else:
        p["labels"] = {"__reserved": "x"}
    pts[bad] = p
    with pytest.raises(InvalidInputError) as info:
        spec_json.parse_points(orjson.dumps(pts), default_metric="m1")
    # The first bad point is named (an earlier point may share the bad series).
    assert f"point {bad}:" in info.value.message or kind in ("metric", "label")
    assert "point " in info.value.message


@pytest.mark.parametrize(
    ("body", "error", "field"),
    [
        (b"", InvalidInputError, "body"),
        (b"{", InvalidInputError, "body"),
        (b"42", InvalidInputError, "body"),
        (b'{"timestamp": 1, "value": NaN}', InvalidInputError, "body"),
        (b'{"timestamp": 1, "value": false}', InvalidValueError, "value"),
        (b'{"timestamp": true, "value": 1}', InvalidTimestampError, "timestamp"),
        (b'{"timestamp": 1e300, "value": 1}', InvalidTimestampError, "timestamp"),
        (b'{"timestamp": "2025-13-01T00:00:00Z", "value": 1}', InvalidTimestampError, "timestamp"),
        (b'{"timestamp": 1, "value": 1, "labels": {"a": null}}', InvalidNameError, "labels"),
        (b'{"timestamp": 1, "value": 1, "labels": "a=b"}', InvalidInputError, "labels"),
        (b'{"timestamp": 1, "value": 1, "extra": 1}', InvalidInputError, "extra"),
    ],
)
def test_bad_bodies(body: bytes, error: type[Exception], field: str) -> None:
    with pytest.raises(error) as info:
        spec_json.parse_points(body, default_metric="m1")
    assert info.value.field == field  # type: ignore[attr-defined]


def test_limits_apply() -> None:
    limits = Limits(max_labels=2)
    body = orjson.dumps({"timestamp": 1, "value": 1, "labels": {"a": "1", "b": "2", "c": "3"}})
    with pytest.raises(InvalidNameError):
        spec_json.parse_points(body, default_metric="m1", limits=limits)


def test_rfc3339_with_offsets_and_fractions() -> None:
    pts = [
        {"timestamp": "2025-05-14T11:00:00+02:00", "value": 1},
        {"timestamp": "2025-05-14T09:00:00.123456Z", "value": 2},
    ]
    b = spec_json.parse_points(orjson.dumps(pts), default_metric="m1").batch
    assert b.timestamps.tolist() == [1747213200 * NS, 1747213200 * NS + 123456000]
    # All in UTC ("Z"): the column is parsed by numpy, to the nanosecond.
    pts = [{"timestamp": "2025-05-14T09:00:00.123456789Z", "value": 2}] * 2
    b = spec_json.parse_points(orjson.dumps(pts), default_metric="m1").batch
    assert b.timestamps.tolist() == [1747213200 * NS + 123456789] * 2


@given(st.lists(st.integers(-(2**40), 2**40), max_size=30))
def test_seconds_list_is_exact(ns_values: list[int]) -> None:
    ts = np.array(ns_values, dtype=np.int64)
    out = spec_json.seconds_list(ts)
    for n, s in zip(ns_values, out, strict=True):
        if n % NS == 0:
            assert isinstance(s, int) and s == n // NS
        else:
            assert s == pytest.approx(n / NS, rel=0, abs=1e-6)


def test_listing_format() -> None:
    s = SeriesData(
        "m1",
        (("host", "a"),),
        np.array([1684050000 * NS, 1684050600 * NS + NS // 2], dtype=np.int64),
        np.array([42.0, 45.5]),
    )
    assert spec_json.format_listing([s]) == (
        b'[{"metric":"m1","labels":{"host":"a"},"data":'
        b'[{"timestamp":1684050000,"value":42},{"timestamp":1684050600.5,"value":45.5}]}]'
    )


def test_json_number_list_keeps_big_and_fractional_values() -> None:
    vals = np.array([1.0, 2.5, -0.0, 2.0**60, math.pi])
    assert spec_json.json_number_list(vals) == [1, 2.5, 0, 2.0**60, math.pi]


def test_messages() -> None:
    assert spec_json.INGESTED_ONE == b'{"message": "Data point ingested successfully"}'
    assert orjson.loads(spec_json.ingested_message(3)) == {"message": "3 data points ingested successfully"}


def test_times_span_the_supported_range() -> None:
    early = (datetime(1900, 1, 2, tzinfo=UTC) - EPOCH) // timedelta(seconds=1)
    b = spec_json.parse_points(orjson.dumps([{"timestamp": early, "value": 1}]), default_metric="m1").batch
    assert b.timestamps[0] == early * NS
