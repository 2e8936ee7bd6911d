"""Every kind of bad input gets a 4xx JSON error naming the field, and the store is unchanged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from conftest import BASE, ServerProcess

# The shared server: max_body_bytes 262144, max_points 5000.
BIG = b"x" * 300_000


def snapshot(http: httpx.Client) -> tuple[Any, Any, Any]:
    """Everything observable about the store: every point, every series, label names."""
    listing: list[Any] = []
    cursor = None
    while True:
        r = http.get("/metrics", params={"limit": 5000, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200
        listing.extend(r.json())
        cursor = r.headers.get("X-Next-Cursor")
        if cursor is None:
            break
    series = http.get("/api/native/series").json()
    labels = http.get("/api/native/labels").json()
    return listing, series, labels


@pytest.fixture(scope="module")
def seeded(server: ServerProcess) -> Iterator[httpx.Client]:
    http = server.client()
    pts = [{"timestamp": BASE + i, "value": i, "metric": "seed", "labels": {"host": f"h{i % 3}"}} for i in range(30)]
    assert http.post("/data", json=pts).status_code == 200
    big = {"metric": "big", "timestamps": list(range(BASE, BASE + 6000)), "values": [1.0] * 6000}
    assert http.post("/api/native/write", json=big).status_code == 200
    yield http


def many_labels(n: int) -> dict[str, str]:
    return {f"l{i}": "v" for i in range(n)}


def chunked(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), 16384):
        yield data[i : i + 16384]


NOW = int(time.time())
P = "/data"
W = "/api/native/write"
Q = "/api/native/query"
BAD_POSTS: list[tuple[str, str, bytes | Any, int, str]] = [
    # (case id, path, body (bytes = raw, else JSON), status, field)
    ("malformed-json", P, b'{"timestamp": 1, "value": ', 400, "body"),
    ("not-an-object", P, b'"hello"', 400, "body"),
    ("array-of-numbers", P, b"[1, 2]", 400, "body"),
    ("value-string", P, {"timestamp": BASE, "value": "42"}, 400, "value"),
    ("value-null", P, {"timestamp": BASE, "value": None}, 400, "value"),
    ("value-object", P, {"timestamp": BASE, "value": {"v": 1}}, 400, "value"),
    ("value-true", P, {"timestamp": BASE, "value": True}, 400, "value"),
    ("timestamp-false", P, {"timestamp": False, "value": 1}, 400, "timestamp"),
    ("timestamp-list", P, {"timestamp": [BASE], "value": 1}, 400, "timestamp"),
    ("timestamp-garbage", P, {"timestamp": "yesterday", "value": 1}, 400, "timestamp"),
    ("missing-value", P, {"timestamp": BASE}, 400, "value"),
    ("missing-timestamp", P, {"value": 1}, 400, "timestamp"),
    ("unknown-field", P, {"timestamp": BASE, "value": 1, "valeu": 2}, 400, "valeu"),
    ("nan-literal", P, b'{"timestamp": 1747213200, "value": NaN}', 400, "body"),
    ("infinity-literal", P, b'{"timestamp": 1747213200, "value": Infinity}', 400, "body"),
    ("overflow-to-inf", P, b'{"timestamp": 1747213200, "value": 1e400}', 400, "body"),
    ("value-infinity-string", P, {"timestamp": BASE, "value": "Infinity"}, 400, "value"),
    ("timestamp-far-future-number", P, {"timestamp": 1e12, "value": 1}, 400, "timestamp"),
    ("timestamp-year-9999", P, {"timestamp": "9999-12-31T00:00:00Z", "value": 1}, 400, "timestamp"),
    ("timestamp-far-past", P, {"timestamp": -1e11, "value": 1}, 400, "timestamp"),
    ("timestamp-beyond-future-tolerance", P, {"timestamp": NOW + 86400, "value": 1}, 400, "timestamp"),
    ("metric-invalid", P, {"timestamp": BASE, "value": 1, "metric": "9lives"}, 400, "metric"),
    ("metric-empty", P, {"timestamp": BASE, "value": 1, "metric": ""}, 400, "metric"),
    ("metric-number", P, {"timestamp": BASE, "value": 1, "metric": 5}, 400, "metric"),
    ("metric-too-long", P, {"timestamp": BASE, "value": 1, "metric": "m" * 1000}, 400, "metric"),
    ("label-reserved", P, {"timestamp": BASE, "value": 1, "labels": {"__x": "a"}}, 400, "labels"),
    ("label-invalid-name", P, {"timestamp": BASE, "value": 1, "labels": {"a-b": "a"}}, 400, "labels"),
    ("label-value-number", P, {"timestamp": BASE, "value": 1, "labels": {"a": 1}}, 400, "labels"),
    ("labels-array", P, {"timestamp": BASE, "value": 1, "labels": ["a"]}, 400, "labels"),
    ("too-many-labels", P, {"timestamp": BASE, "value": 1, "labels": many_labels(31)}, 400, "labels"),
    ("huge-label-value", P, {"timestamp": BASE, "value": 1, "labels": {"k": "v" * 100_000}}, 400, "labels"),
    (
        "array-one-bad-point",
        P,
        [{"timestamp": BASE + i, "value": 1, "metric": "atomic"} for i in range(5)]
        + [{"timestamp": BASE + 9, "value": True, "metric": "atomic"}],
        400,
        "value",
    ),
    (
        "array-one-future-point",
        P,
        [{"timestamp": BASE + i, "value": 1, "metric": "atomic"} for i in range(5)]
        + [{"timestamp": NOW + 86400, "value": 1, "metric": "atomic"}],
        400,
        "timestamp",
    ),
    ("body-over-limit", P, BIG, 413, "body"),
    ("columnar-length-mismatch", W, {"metric": "c", "timestamps": [BASE, BASE + 1], "values": [1]}, 400, "values"),
    ("columnar-bool-value", W, {"metric": "c", "timestamps": [BASE], "values": [True]}, 400, "value"),
    ("columnar-missing-metric", W, {"timestamps": [BASE], "values": [1]}, 400, "metric"),
    ("columnar-not-arrays", W, {"metric": "c", "timestamps": BASE, "values": 1}, 400, "timestamps"),
    (
        "columnar-second-block-bad",
        W,
        [{"metric": "c", "timestamps": [BASE], "values": [1]}, {"metric": "c d", "timestamps": [BASE], "values": [1]}],
        400,
        "metric",
    ),
    ("columnar-over-limit", W, BIG, 413, "body"),
]


@pytest.mark.parametrize(("path", "body", "status", "field"), [c[1:] for c in BAD_POSTS], ids=[c[0] for c in BAD_POSTS])
def test_bad_write_is_refused_and_nothing_changes(
    seeded: httpx.Client, path: str, body: Any, status: int, field: str
) -> None:
    before = snapshot(seeded)
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    r = seeded.post(path, content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text[:300]
    doc = r.json()
    assert doc["field"] == field
    assert isinstance(doc["error"], str) and len(doc["error"]) > 10
    assert snapshot(seeded) == before


def test_chunked_body_over_limit_is_413(seeded: httpx.Client) -> None:
    before = snapshot(seeded)
    r = seeded.post(P, content=chunked(BIG), headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers  # really sent chunked
    assert r.status_code == 413
    assert r.json()["field"] == "body"
    assert snapshot(seeded) == before


def test_error_messages_name_the_offending_value(seeded: httpx.Client) -> None:
    r = seeded.post(P, json=[{"timestamp": BASE, "value": 1}, {"timestamp": BASE, "value": True}])
    assert r.json()["error"] == "point 1: value must be a number, got boolean True"
    r = seeded.post(P, json={"timestamp": BASE, "value": 1, "metric": "9lives"})
    assert "9lives" in r.json()["error"]
    r = seeded.get(Q, params={"match": "seed", "agg": "median"})
    assert "median" in r.json()["error"]


BAD_QUERIES: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("unknown-agg", Q, {"match": "seed", "agg": "median"}, 400, "agg"),
    ("start-after-end", Q, {"match": "seed", "start": BASE + 10, "end": BASE}, 400, "start"),
    ("start-garbage", Q, {"match": "seed", "start": "last tuesday"}, 400, "start"),
    ("width-zero", Q, {"match": "seed", "downsample": "0"}, 400, "downsample"),
    ("width-negative", Q, {"match": "seed", "downsample": "-5"}, 400, "downsample"),
    ("width-zero-duration", Q, {"match": "seed", "downsample": "0s"}, 400, "downsample"),
    ("width-garbage", Q, {"match": "seed", "downsample": "fast"}, 400, "downsample"),
    ("no-selector", Q, {"agg": "avg"}, 400, "match"),
    ("bad-selector", Q, {"match": "seed{"}, 400, "match"),
    ("not-a-selector", Q, {"match": "rate(seed[5m])"}, 400, "match"),
    ("bad-fill", Q, {"match": "seed", "downsample": "5s", "fill": "sideways"}, 400, "fill"),
    ("quantile-out-of-range", Q, {"match": "seed", "agg": "quantile", "q": "2"}, 400, "q"),
    ("quantile-without-q", Q, {"match": "seed", "agg": "quantile"}, 400, "agg"),
    ("over-point-limit", Q, {"match": "big"}, 422, None),
    ("listing-limit-zero", "/metrics", {"limit": "0"}, 400, "limit"),
    ("listing-limit-over-max", "/metrics", {"limit": "5001"}, 422, "limit"),
    ("listing-bad-start", "/metrics", {"start": "soon"}, 400, "start"),
    ("listing-start-after-end", "/metrics", {"start": "10", "end": "5"}, 400, "start"),
]


@pytest.mark.parametrize(
    ("path", "params", "status", "field"), [c[1:] for c in BAD_QUERIES], ids=[c[0] for c in BAD_QUERIES]
)
def test_bad_query_is_4xx_json(
    seeded: httpx.Client, path: str, params: dict[str, Any], status: int, field: str | None
) -> None:
    before = snapshot(seeded)
    r = seeded.get(path, params=params)
    assert r.status_code == status, r.text[:300]
    doc = r.json()
    if field is not None:
        assert doc["field"] == field
    assert isinstance(doc["error"], str) and doc["error"]
    assert snapshot(seeded) == before


def test_point_limit_error_says_how_to_narrow(seeded: httpx.Client) -> None:
    r = seeded.get(Q, params={"match": "big"})
    assert r.status_code == 422
    message = r.json()["error"].lower()
    assert "5000" in message
    assert any(word in message for word in ("narrow", "downsample", "range"))
    # The same data downsampled fits.
    ok = seeded.get(Q, params={"match": "big", "downsample": "1m"})
    assert ok.status_code == 200
    assert sum(ok.json()["series"][0]["values"]) == pytest.approx(len(ok.json()["series"][0]["values"]))


def test_bad_delete_needs_a_selector(seeded: httpx.Client) -> None:
    before = snapshot(seeded)
    r = seeded.delete("/api/native/series")
    assert r.status_code == 400 and r.json()["field"] == "match"
    assert snapshot(seeded) == before


def test_server_survives_and_unknown_routes_are_json(seeded: httpx.Client) -> None:
    r = seeded.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"]
    r = seeded.put("/data", json={})
    assert r.status_code == 405
    assert seeded.get("/-/ready").status_code == 200
