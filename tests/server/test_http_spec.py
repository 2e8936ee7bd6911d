"""The spec's API on a real server: POST /data and GET /metrics exactly as documented."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from conftest import ServerProcess

SPEC_MESSAGE = b'{"message": "Data point ingested successfully"}'


def all_pages(http: httpx.Client, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Follow the Link/X-Next-Cursor chain; return the merged listing and the page count."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    order: list[tuple[str, str]] = []
    pages = 0
    cursor = None
    while True:
        r = http.get("/metrics", params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        pages += 1
        for s in r.json():
            key = (s["metric"], json.dumps(s["labels"], sort_keys=True))
            if key not in merged:
                merged[key] = {**s, "data": []}
                order.append(key)
            merged[key]["data"].extend(s["data"])
        cursor = r.headers.get("X-Next-Cursor")
        if cursor is None:
            assert "Link" not in r.headers
            return [merged[k] for k in order], pages
        assert r.headers["Link"].endswith('rel="next"') and f"cursor={cursor}" in r.headers["Link"]


def test_spec_examples_byte_for_byte(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()  # spec defaults except retention (the example spans 600 s)
    http = server.client()
    r = http.post("/data", content=b'{\n  "timestamp": "2025-05-14T09:00:00Z",\n  "value": 42\n}')
    assert r.status_code == 200
    assert r.content == SPEC_MESSAGE
    assert r.headers["content-type"] == "application/json"
    # The GET example: m1 at 1684050000 -> 42 and 1684050600 -> 45 (no metric: the default m1).
    server2 = start_server()
    http2 = server2.client()
    for ts, value in ((1684050000, 42), (1684050600, 45)):
        assert http2.post("/data", json={"timestamp": ts, "value": value}).content == SPEC_MESSAGE
    r = http2.get("/metrics")
    assert r.status_code == 200
    expected = [
        {
            "metric": "m1",
            "labels": {},
            "data": [{"timestamp": 1684050000, "value": 42}, {"timestamp": 1684050600, "value": 45}],
        }
    ]
    assert r.json() == expected
    assert r.content == orjson.dumps(expected)  # ints stay ints: "value": 42, not 42.0
    # The first server answers the RFC 3339 example in epoch seconds.
    assert http.get("/metrics").json() == [
        {"metric": "m1", "labels": {}, "data": [{"timestamp": 1747213200, "value": 42}]}
    ]


def test_array_is_one_batch_and_message_counts(http: httpx.Client, base: int) -> None:
    points = [{"timestamp": base + i, "value": i * 1.5, "metric": "arr_count"} for i in range(3)]
    r = http.post("/data", json=points)
    assert r.status_code == 200
    assert r.json() == {"message": "3 data points ingested successfully"}
    listing = http.get("/metrics", params={"metric": "arr_count"}).json()
    assert listing == [
        {
            "metric": "arr_count",
            "labels": {},
            "data": [{"timestamp": base + i, "value": v} for i, v in enumerate((0, 1.5, 3))],
        }
    ]


def test_labels_float_timestamps_and_filters(http: httpx.Client, base: int) -> None:
    pts = [
        {"timestamp": base + 0.25, "value": 1, "metric": "flt", "labels": {"host": "a"}},
        {"timestamp": base + 10, "value": 2, "metric": "flt", "labels": {"host": "b"}},
        {"timestamp": base + 20, "value": 3, "metric": "flt", "labels": {"host": "a"}},
    ]
    assert http.post("/data", json=pts).status_code == 200
    got = http.get("/metrics", params={"match": 'flt{host="a"}'}).json()
    assert got == [
        {
            "metric": "flt",
            "labels": {"host": "a"},
            "data": [{"timestamp": base + 0.25, "value": 1}, {"timestamp": base + 20, "value": 3}],
        }
    ]
    got = http.get("/metrics", params={"metric": "flt", "start": base + 5, "end": base + 15}).json()
    assert got == [{"metric": "flt", "labels": {"host": "b"}, "data": [{"timestamp": base + 10, "value": 2}]}]
    iso = http.get("/metrics", params={"match": "flt", "start": "1970-01-01T00:00:00Z", "end": "now"}).json()
    assert sum(len(s["data"]) for s in iso) == 3


def test_paging_returns_everything_once(http: httpx.Client, base: int) -> None:
    # 7 series of 1..13 points: pages of 5 points cut series in the middle and at their ends.
    sent: dict[str, list[tuple[int, float]]] = {}
    for k in range(7):
        host = f"h{k}"
        pts = [(base + 100 + i, float(k * 100 + i)) for i in range(1 + 2 * k)]
        sent[host] = pts
        body = [{"timestamp": t, "value": v, "metric": "paged", "labels": {"host": host}} for t, v in pts]
        assert http.post("/data", json=body).status_code == 200
    listing, pages = all_pages(http, {"metric": "paged", "limit": 5})
    total = sum(len(v) for v in sent.values())
    assert pages == -(-total // 5) or pages == -(-total // 5) + 1
    assert [s["labels"]["host"] for s in listing] == sorted(sent)
    for s in listing:
        assert [(p["timestamp"], p["value"]) for p in s["data"]] == sent[s["labels"]["host"]]
    # The default page size (1000 on this server) holds it all in one page.
    one, pages = all_pages(http, {"metric": "paged"})
    assert pages == 1 and one == listing


def test_bad_cursor_is_400(http: httpx.Client) -> None:
    r = http.get("/metrics", params={"cursor": "not-a-cursor"})
    assert r.status_code == 400
    assert r.json()["field"] == "cursor"


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        ("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "openmetrics"),
        ("text/plain;version=0.0.4", "text"),
        ("text/plain", "text"),
        ("*/*", "json"),
        ("application/json", "json"),
        ("application/json, text/plain", "json"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "json"),
    ],
)
def test_metrics_content_negotiation(http: httpx.Client, accept: str, kind: str) -> None:
    r = http.get("/metrics", headers={"Accept": accept})
    assert r.status_code == 200
    ctype = r.headers["content-type"]
    if kind == "json":
        assert ctype == "application/json"
        assert isinstance(r.json(), list)
    elif kind == "openmetrics":
        assert ctype.startswith("application/openmetrics-text")
        assert r.text.rstrip().endswith("# EOF")
        assert "tsdb_series" in r.text
    else:
        assert ctype.startswith("text/plain")
        assert "# TYPE tsdb_http_requests_total counter" in r.text
