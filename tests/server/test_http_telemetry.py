"""The server's own metrics: route templates, statuses, samples ingested and rejected, engine gauges."""

from __future__ import annotations

import re

import httpx
from conftest import BASE, ServerProcess


def scrape(http: httpx.Client) -> str:
    r = http.get("/metrics", headers={"Accept": "text/plain;version=0.0.4"})
    assert r.status_code == 200
    return r.text


def value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_requests_are_counted_by_route_template(server: ServerProcess) -> None:
    http = server.client()
    before = scrape(http)
    for name in ("alpha", "beta", "gamma"):
        assert http.get(f"/api/native/label/{name}/values").status_code == 200
    http.get("/definitely/not/a/route/12345")
    text = scrape(http)
    key = 'tsdb_http_requests_total{method="GET",route="/api/native/label/{name}/values",status="200"}'
    assert value(text, key) - value(before, key) == 3
    assert "alpha" not in text and "12345" not in text
    unmatched = 'tsdb_http_requests_total{method="GET",route="<unmatched>",status="404"}'
    assert value(text, unmatched) - value(before, unmatched) == 1
    assert 'tsdb_http_request_duration_seconds_count{route="/api/native/label/{name}/values"}' in text


def test_samples_ingested_and_rejected(server: ServerProcess) -> None:
    http = server.client()
    before = scrape(http)
    assert http.post("/data", json=[{"timestamp": BASE + i, "value": i, "metric": "tele"} for i in range(7)]).is_success
    ok = http.post("/api/native/write", json={"metric": "tele", "timestamps": [BASE + 100], "values": [1]})
    assert ok.is_success
    assert http.post("/data", json={"timestamp": BASE, "value": True}).status_code == 400
    text = scrape(http)
    spec = 'tsdb_samples_ingested_total{protocol="spec_json"}'
    native = 'tsdb_samples_ingested_total{protocol="native_json"}'
    rejected = 'tsdb_samples_rejected_total{protocol="spec_json",reason="invalid_value"}'
    assert value(text, spec) - value(before, spec) == 7
    assert value(text, native) - value(before, native) == 1
    assert value(text, rejected) - value(before, rejected) == 1


def test_engine_gauges_and_query_durations(server: ServerProcess) -> None:
    http = server.client()
    http.post("/data", json={"timestamp": BASE, "value": 1, "metric": "gauge_check"})
    http.get("/api/native/query", params={"match": "gauge_check"})
    text = scrape(http)
    series = http.get("/api/native/series").json()
    assert value(text, "tsdb_series") == len(series)
    for name in ("tsdb_head_samples", "tsdb_sealed_samples", "tsdb_chunks", "tsdb_compressed_bytes"):
        assert re.search(rf"^{name} \d", text, re.M), name
    assert "tsdb_chunks_sealed_total" in text
    assert value(text, 'tsdb_query_duration_seconds_count{api="native"}') >= 1
    assert "process_resident_memory_bytes" in text
