"""The native API on a real server, checked against a naive reference computed in the test."""

from __future__ import annotations

from collections import defaultdict

import httpx
import numpy as np
import pytest
from conftest import BASE, ServerProcess

Q = "/api/native/query"
T0 = BASE - BASE % 3600  # an hour boundary, so 1-minute buckets line up with the data


@pytest.fixture(scope="module")
def data(server: ServerProcess) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """cpu{host=a|b|c}: 600 samples each, 1 s apart, seeded random values."""
    rng = np.random.default_rng(7)
    http = server.client()
    out = {}
    blocks = []
    for host in "abc":
        ts = np.arange(T0, T0 + 600, dtype=np.int64)
        vals = np.round(rng.normal(50, 10, len(ts)), 3)
        out[host] = (ts, vals)
        blocks.append({"metric": "cpu", "labels": {"host": host}, "timestamps": ts.tolist(), "values": vals.tolist()})
    r = http.post("/api/native/write", json=blocks)
    assert r.status_code == 200 and r.json() == {"accepted": 1800}
    return out


def query(http: httpx.Client, **params: object) -> dict:
    r = http.get(Q, params=params)
    assert r.status_code == 200, r.text[:300]
    return r.json()


def test_raw_query_by_selector_and_by_params(server: ServerProcess, data: dict) -> None:
    http = server.client()
    a = query(http, match='cpu{host="a"}', start=T0 + 10, end=T0 + 19)
    b = query(http, metric="cpu", label="host=a", start=T0 + 10, end=T0 + 19)
    assert a == b
    assert a["kind"] == "raw" and len(a["series"]) == 1
    ts, vals = data["a"]
    assert a["series"][0]["timestamps"] == ts[10:20].tolist()
    assert a["series"][0]["values"] == pytest.approx(vals[10:20].tolist())
    many = query(http, match='cpu{host=~"a|b"}', start=T0, end=T0 + 5)
    assert [s["labels"]["host"] for s in many["series"]] == ["a", "b"]


@pytest.mark.parametrize(("downsample", "width"), [("1m", 60), ("60", 60), ("5m", 300), ("30s", 30)])
def test_downsample_avg_matches_reference(server: ServerProcess, data: dict, downsample: str, width: int) -> None:
    got = query(server.client(), match="cpu", downsample=downsample, agg="avg", start=T0, end=T0 + 599)
    assert got["kind"] == "downsample"
    for s in got["series"]:
        ts, vals = data[s["labels"]["host"]]
        buckets = defaultdict(list)
        for t, v in zip(ts.tolist(), vals.tolist(), strict=True):
            buckets[t - t % width].append(v)
        assert s["timestamps"] == sorted(buckets)
        assert s["values"] == pytest.approx([np.mean(buckets[k]) for k in sorted(buckets)])


def test_group_by_and_whole_range_aggregates(server: ServerProcess, data: dict) -> None:
    http = server.client()
    together = query(http, match="cpu", agg="sum", group_by="")
    assert len(together["series"]) == 1
    assert together["series"][0]["values"][0] == pytest.approx(sum(v.sum() for _, v in data.values()))
    by_host = query(http, match="cpu", agg="max", group_by="host")
    assert {s["labels"]["host"]: s["values"][0] for s in by_host["series"]} == pytest.approx(
        {h: v.max() for h, (_, v) in data.items()}
    )
    per_series = query(http, match="cpu", agg="quantile", q=0.9)
    assert {s["labels"]["host"]: s["values"][0] for s in per_series["series"]} == pytest.approx(
        {h: float(np.quantile(v, 0.9)) for h, (_, v) in data.items()}
    )
    assert query(http, match="cpu", agg="count", group_by="")["series"][0]["values"] == [1800]


def test_fill_modes(server: ServerProcess, data: dict) -> None:
    http = server.client()
    common = {"match": 'cpu{host="a"}', "agg": "count", "downsample": "5m", "start": T0, "end": T0 + 1199}
    omitted = query(http, **common)["series"][0]
    assert omitted["timestamps"] == [T0, T0 + 300]
    zero = query(http, **common, fill="zero")["series"][0]
    assert zero["timestamps"] == [T0, T0 + 300, T0 + 600, T0 + 900] and zero["values"] == [300, 300, 0, 0]
    assert query(http, **common, fill="null")["series"][0]["values"] == [300, 300, None, None]
    assert query(http, **common, fill="previous")["series"][0]["values"] == [300, 300, 300, 300]
    assert query(http, **common, fill="-1")["series"][0]["values"] == [300, 300, -1, -1]


def test_listings(server: ServerProcess, data: dict) -> None:
    http = server.client()
    series = http.get("/api/native/series", params={"match": "cpu"}).json()
    assert series == [{"metric": "cpu", "labels": {"host": h}} for h in "abc"]
    assert "host" in http.get("/api/native/labels", params={"match": "cpu"}).json()
    assert http.get("/api/native/label/host/values", params={"match": "cpu"}).json() == ["a", "b", "c"]
    assert "cpu" in http.get("/api/native/label/__name__/values").json()


def test_write_units_and_rfc3339(server: ServerProcess) -> None:
    http = server.client()
    ms = {"metric": "units", "labels": {"u": "ms"}, "timestamps": [T0 * 1000 + 500], "values": [1]}
    assert http.post("/api/native/write", params={"unit": "ms"}, json=ms).json() == {"accepted": 1}
    iso = {"metric": "units", "labels": {"u": "iso"}, "timestamps": ["2025-05-14T09:00:00.25Z"], "values": [2]}
    assert http.post("/api/native/write", json=iso).json() == {"accepted": 1}
    got = {s["labels"]["u"]: s["timestamps"] for s in query(http, match="units")["series"]}
    assert got == {"ms": [T0 + 0.5], "iso": [1747213200.25]}
    assert http.post("/api/native/write", params={"unit": "minutes"}, json=ms).status_code == 400


def test_delete_by_selector_and_range(server: ServerProcess) -> None:
    http = server.client()
    for host in "xy":
        body = {"metric": "gone", "labels": {"host": host}, "timestamps": list(range(T0, T0 + 10)), "values": [1] * 10}
        assert http.post("/api/native/write", json=body).status_code == 200
    r = http.delete("/api/native/series", params={"match": 'gone{host="x"}', "start": T0 + 5, "end": T0 + 9})
    assert r.status_code == 200 and r.json() == {"deleted": 5}
    counts = query(http, match="gone", agg="count")
    assert {s["labels"]["host"]: s["values"][0] for s in counts["series"]} == {"x": 5, "y": 10}
    assert http.delete("/api/native/series", params={"metric": "gone"}).json() == {"deleted": 15}
    assert query(http, match="gone")["series"] == []


def test_openapi_documents_every_route_with_examples(server: ServerProcess) -> None:
    doc = server.client().get("/openapi.json").json()
    paths = doc["paths"]
    for path in ("/data", "/metrics", "/api/native/query", "/api/native/write", "/api/native/series", "/-/ready"):
        assert path in paths, path
    assert "examples" in paths["/data"]["post"]["requestBody"]["content"]["application/json"]
    assert "example" in paths["/api/native/query"]["get"]["responses"]["200"]["content"]["application/json"]
    assert server.client().get("/docs").status_code == 200
