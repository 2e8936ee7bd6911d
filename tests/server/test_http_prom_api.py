"""The Prometheus HTTP API on a real server (the module's shared server: TSDB_MAX_POINTS=5000,
TSDB_MAX_SERIES=500).

Query answers are compared byte for byte with the PromQL evaluator run in the test process on
the same data and encoded by ``prom_api`` (the HTTP layer must add nothing and lose nothing),
and instant selectors with a naive reference of the 5-minute lookback. Errors are checked for
Prometheus's exact envelopes and status codes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import BASE, ServerProcess

from tsdb import TSDB
from tsdb.protocols.prom_api import query_success_body
from tsdb.query.promql import instant_query, range_query

T0 = BASE - BASE % 3600  # an hour boundary
S = 1_000_000_000
HOSTS = [("a", "eu"), ("b", "eu"), ("c", "us")]


def _dataset() -> list[dict[str, Any]]:
    """Native-write blocks: pa_cpu gauges (10 s, 30 min, host c stops after 10 min) and a
    pa_req_total counter with a reset."""
    rng = np.random.default_rng(3)
    blocks = []
    for host, dc in HOSTS:
        n = 60 if host == "c" else 180
        ts = (T0 + 10 * np.arange(n)).tolist()
        values = np.round(rng.normal(50, 10, n), 2).tolist()
        blocks.append({"metric": "pa_cpu", "labels": {"host": host, "dc": dc}, "timestamps": ts, "values": values})
    for code in ("200", "500"):
        counts = np.cumsum(rng.integers(0, 20, 180)).astype(float)
        counts[100:] -= counts[99]  # a counter reset
        blocks.append(
            {
                "metric": "pa_req_total",
                "labels": {"code": code},
                "timestamps": (T0 + 10 * np.arange(180)).tolist(),
                "values": counts.tolist(),
            }
        )
    return blocks


BLOCKS = _dataset()


@pytest.fixture(scope="module")
def loaded(server: ServerProcess) -> TSDB:
    """The dataset in the server, and the same data in an embedded TSDB for reference answers."""
    r = server.client().post("/api/native/write", json=BLOCKS)
    assert r.status_code == 200, r.text
    local = TSDB(retention_seconds=0)
    for block in BLOCKS:
        local.write_columns(block["metric"], block["timestamps"], block["values"], block["labels"])
    return local


def prom(http: httpx.Client, path: str, method: str = "GET", **params: Any) -> httpx.Response:
    if method == "GET":
        return http.get(path, params=params)
    return http.post(path, data=params)


def success(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["status"] == "success"
    return doc["data"]


def error(r: httpx.Response, status: int, error_type: str) -> str:
    assert r.status_code == status, r.text[:500]
    doc = r.json()
    assert list(doc) == ["status", "errorType", "error"]
    assert doc["status"] == "error" and doc["errorType"] == error_type
    return str(doc["error"])


RANGE_QUERIES = [
    "pa_cpu",
    'pa_cpu{dc="eu"} * 2',
    "sum by (dc) (pa_cpu)",
    "rate(pa_req_total[1m])",
    "sum(increase(pa_req_total[5m]))",
    "avg_over_time(pa_cpu[2m])",
    "topk(1, pa_cpu)",
    "pa_cpu > 55",
    "time()",
    "1 + 1",
]


@pytest.mark.parametrize("expr", RANGE_QUERIES)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_query_range_is_the_evaluator_answer(http: httpx.Client, loaded: TSDB, expr: str, method: str) -> None:
    start, end, step = T0 - 60, T0 + 1800, 30
    r = prom(http, "/api/v1/query_range", method, query=expr, start=start, end=end, step=step)
    assert r.status_code == 200, r.text
    assert r.content == query_success_body(range_query(loaded, expr, start * S, end * S, step * S))


@pytest.mark.parametrize("expr", [*RANGE_QUERIES, "pa_cpu[1m]", "pa_req_total offset 5m"])
@pytest.mark.parametrize("at", [T0 + 5, T0 + 605, T0 + 1000.5, T0 + 2400])
def test_instant_query_is_the_evaluator_answer(http: httpx.Client, loaded: TSDB, expr: str, at: float) -> None:
    r = prom(http, "/api/v1/query", "POST", query=expr, time=at)
    assert r.status_code == 200, r.text
    assert r.content == query_success_body(instant_query(loaded, expr, round(at * S)))


@pytest.mark.parametrize("at", [T0 - 1, T0, T0 + 3, T0 + 605, T0 + 899, T0 + 900, T0 + 1790, T0 + 2089, T0 + 2091])
def test_instant_selector_matches_naive_lookback(http: httpx.Client, loaded: TSDB, at: int) -> None:
    """The latest sample at or before ``at`` and at most 5 minutes old, per series."""
    expected = {}
    for block in BLOCKS:
        if block["metric"] != "pa_cpu":
            continue
        ok = [(t, v) for t, v in zip(block["timestamps"], block["values"], strict=True) if at - 300 <= t <= at]
        if ok:
            expected[block["labels"]["host"]] = ok[-1][1]
    result = success(prom(http, "/api/v1/query", query="pa_cpu", time=at))["result"]
    assert {r["metric"]["host"]: float(r["value"][1]) for r in result} == expected
    assert all(r["value"][0] == at for r in result)


def test_time_parameter_formats(http: httpx.Client, loaded: TSDB) -> None:
    rfc = datetime.fromtimestamp(T0 + 600, tz=UTC).isoformat().replace("+00:00", "Z")
    by_float = prom(http, "/api/v1/query", query="pa_cpu", time=T0 + 600)
    assert prom(http, "/api/v1/query", query="pa_cpu", time=rfc).content == by_float.content
    assert prom(http, "/api/v1/query", query="pa_cpu", time=f"{T0 + 600}.0004").content == by_float.content
    # Sub-millisecond digits are rounded to the millisecond, as Prometheus does.
    rounded = success(prom(http, "/api/v1/query", query="time()", time=f"{T0}.12351"))
    assert rounded["result"] == [T0 + 0.124, str(T0 + 0.124)]
    ranged = prom(http, "/api/v1/query_range", query="pa_cpu", start=rfc, end=T0 + 660, step="15s")
    assert (
        ranged.content
        == prom(http, "/api/v1/query_range", query="pa_cpu", start=T0 + 600, end=T0 + 660, step=15).content
    )


def test_grafana_health_check(http: httpx.Client) -> None:
    """Grafana's "Save & test": an instant query of 1+1 at time 4, as a form POST."""
    r = http.post("/api/v1/query", data={"query": "1+1", "time": "4"})
    assert r.status_code == 200
    assert r.content == b'{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}'


def test_form_body_wins_over_url(http: httpx.Client, loaded: TSDB) -> None:
    r = http.post("/api/v1/query?query=pa_cpu&time=1", data={"query": "count(pa_cpu)", "time": str(T0 + 600)})
    assert success(r)["result"] == [{"metric": {}, "value": [T0 + 600, "3"]}]


@pytest.mark.parametrize(
    ("path", "params", "status", "error_type", "message"),
    [
        ("/api/v1/query", {}, 400, "bad_data", 'invalid parameter "query": parse error: the query is empty'),
        ("/api/v1/query", {"query": "sum(("}, 400, "bad_data", 'invalid parameter "query": parse error:'),
        ("/api/v1/query", {"query": "up", "time": "yesterday"}, 400, "bad_data",
         'invalid parameter "time": cannot parse "yesterday" to a valid timestamp'),
        ("/api/v1/query", {"query": "up", "timeout": "soon"}, 400, "bad_data",
         'invalid parameter "timeout": cannot parse "soon" to a valid duration'),
        ("/api/v1/query_range", {"query": "up", "end": "10", "step": "1"}, 400, "bad_data",
         'invalid parameter "start": cannot parse "" to a valid timestamp'),
        ("/api/v1/query_range", {"query": "up", "start": "10", "end": "5", "step": "1"}, 400, "bad_data",
         "end timestamp must not be before start time"),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "5", "step": "0"}, 400, "bad_data",
         "zero or negative query resolution step widths are not accepted. Try a positive integer"),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "5", "step": "abc"}, 400, "bad_data",
         'invalid parameter "step": cannot parse "abc" to a valid duration'),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "5"}, 400, "bad_data",
         'invalid parameter "step": cannot parse "" to a valid duration'),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "20000", "step": "1"}, 400, "bad_data",
         "exceeded maximum resolution of 11,000 points per timeseries"),
        ("/api/v1/query", {"query": "histogram_count(pa_cpu)"}, 422, "execution",
         "function histogram_count() is not supported"),
        ("/api/v1/query", {"query": "pa_cpu + on(dc) pa_cpu", "time": str(T0 + 60)}, 422, "execution", "many-to-many"),
        ("/api/v1/series", {}, 400, "bad_data", "no match[] parameter provided"),
        ("/api/v1/series", {"match[]": "up{"}, 400, "bad_data", 'invalid parameter "match[]": '),
        ("/api/v1/series", {"match[]": '{job=~".*"}'}, 400, "bad_data", "at least one non-empty matcher"),
        ("/api/v1/labels", {"limit": "-1"}, 400, "bad_data", 'invalid parameter "limit": limit must be non-negative'),
        ("/api/v1/labels", {"start": "x"}, 400, "bad_data", 'invalid parameter "start": cannot parse "x"'),
        ("/api/v1/labels", {"start": "10", "end": "5"}, 400, "bad_data", "end timestamp must not be before start time"),
        ("/api/v1/label/9x/values", {}, 400, "bad_data", 'invalid label name: "9x"'),
        ("/api/v1/query_exemplars", {"query": "sum(("}, 400, "bad_data", 'invalid parameter "query"'),
    ],
)  # fmt: skip
def test_errors_are_prometheus_envelopes(
    http: httpx.Client, loaded: TSDB, path: str, params: dict[str, str], status: int, error_type: str, message: str
) -> None:
    for method in ("GET", "POST"):
        text = error(prom(http, path, method, **params), status, error_type)
        assert text.startswith(message) or message in text, text


def test_result_over_max_points_is_an_execution_error(http: httpx.Client, loaded: TSDB) -> None:
    """2 x 2,091 + 900 points (a, b and c with the 5 m lookback) > TSDB_MAX_POINTS=5000 here."""
    r = prom(http, "/api/v1/query_range", query="pa_cpu", start=T0, end=T0 + 2100, step=1)
    text = error(r, 422, "execution")
    assert "TSDB_MAX_POINTS=5000" in text
    ok = prom(http, "/api/v1/query_range", query='pa_cpu{host="a"}', start=T0, end=T0 + 1800, step=1)
    assert len(success(ok)["result"][0]["values"]) == 1801


def test_series_listing(http: httpx.Client, loaded: TSDB) -> None:
    got = success(prom(http, "/api/v1/series", **{"match[]": ['pa_cpu{dc="eu"}', "pa_req_total", 'pa_cpu{host="a"}']}))
    assert got == [
        {"__name__": "pa_cpu", "dc": "eu", "host": "a"},
        {"__name__": "pa_cpu", "dc": "eu", "host": "b"},
        {"__name__": "pa_req_total", "code": "200"},
        {"__name__": "pa_req_total", "code": "500"},
    ]
    as_form = http.post(
        "/api/v1/series", data={"match[]": ['pa_cpu{dc="eu"}', "pa_req_total"], "start": T0, "end": T0 + 60}
    )
    assert success(as_form) == got
    limited = prom(http, "/api/v1/series", **{"match[]": "pa_cpu", "limit": 2}).json()
    assert len(limited["data"]) == 2 and limited["warnings"] == ["results truncated due to limit"]
    assert success(prom(http, "/api/v1/series", **{"match[]": "nothing_here"})) == []


def test_label_names_and_values(http: httpx.Client, loaded: TSDB) -> None:
    names = success(prom(http, "/api/v1/labels"))
    assert {"__name__", "code", "dc", "host"} <= set(names) and names == sorted(names)
    assert success(prom(http, "/api/v1/labels", **{"match[]": "pa_req_total"})) == ["__name__", "code"]
    union = http.post("/api/v1/labels", data={"match[]": ["pa_req_total", 'pa_cpu{host="c"}']})
    assert success(union) == ["__name__", "code", "dc", "host"]
    assert success(prom(http, "/api/v1/label/host/values")) == ["a", "b", "c"]
    assert success(prom(http, "/api/v1/label/host/values", **{"match[]": '{dc="eu"}'})) == ["a", "b"]
    metrics = success(prom(http, "/api/v1/label/__name__/values", start=T0, end=T0 + 60))
    assert {"pa_cpu", "pa_req_total"} <= set(metrics)
    limited = prom(http, "/api/v1/label/host/values", limit=1).json()
    assert limited == {"status": "success", "data": ["a"], "warnings": ["results truncated due to limit"]}
    assert success(prom(http, "/api/v1/label/nosuchlabel/values")) == []


def test_status_and_metadata_endpoints(http: httpx.Client, loaded: TSDB) -> None:
    build = success(prom(http, "/api/v1/status/buildinfo"))
    assert list(build) == ["version", "revision", "branch", "buildUser", "buildDate", "goVersion"]
    assert build["version"].startswith("2.") and build["revision"].startswith("tsdb-")
    runtime = success(prom(http, "/api/v1/status/runtimeinfo"))
    assert runtime["storageRetention"] == "unlimited" and runtime["reloadConfigSuccess"] is True
    assert datetime.fromisoformat(runtime["startTime"].replace("Z", "+00:00")).year >= 2024
    assert success(prom(http, "/api/v1/rules")) == {"groups": []}
    assert success(prom(http, "/api/v1/alerts")) == {"alerts": []}
    assert success(prom(http, "/api/v1/query_exemplars", query="pa_cpu", start=T0, end=T0 + 60)) == []
    assert success(prom(http, "/api/v1/metadata")) == {}


def test_status_tsdb_matches_a_naive_count(http: httpx.Client, loaded: TSDB) -> None:
    """Cardinality figures recomputed from the series listing, as Prometheus defines them."""
    listing = success(prom(http, "/api/v1/series", **{"match[]": '{__name__=~".+"}'}))
    per_metric: dict[str, int] = {}
    per_pair: dict[str, int] = {}
    values: dict[str, set[str]] = {}
    for labels in listing:
        per_metric[labels["__name__"]] = per_metric.get(labels["__name__"], 0) + 1
        for name, value in labels.items():
            per_pair[f"{name}={value}"] = per_pair.get(f"{name}={value}", 0) + 1
            values.setdefault(name, set()).add(value)

    def top(counts: dict[str, int], n: int) -> list[dict[str, Any]]:
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        return [{"name": k, "value": v} for k, v in ranked]

    status = success(prom(http, "/api/v1/status/tsdb", limit=3))
    assert status["seriesCountByMetricName"] == top(per_metric, 3)
    assert status["seriesCountByLabelValuePair"] == top(per_pair, 3)
    assert status["labelValueCountByLabelName"] == top({k: len(v) for k, v in values.items()}, 3)
    assert status["memoryInBytesByLabelName"] == top({k: sum(len(x) for x in v) for k, v in values.items()}, 3)
    head = status["headStats"]
    assert head["numSeries"] == len(listing)
    assert head["numLabelPairs"] == len(per_pair)
    assert head["minTime"] <= T0 * 1000 and head["maxTime"] >= (T0 + 1790) * 1000
    assert len(success(prom(http, "/api/v1/status/tsdb"))["seriesCountByLabelValuePair"]) <= 10


def test_delete_series(http: httpx.Client, server: ServerProcess) -> None:
    blocks = [
        {"metric": "pa_del", "labels": {"k": k}, "timestamps": list(range(T0, T0 + 100, 10)), "values": [1.0] * 10}
        for k in ("x", "y")
    ]
    assert http.post("/api/native/write", json=blocks).status_code == 200

    def counts() -> dict[str, str]:
        doc = success(prom(http, "/api/v1/query", query="count_over_time(pa_del[5m])", time=T0 + 120))
        return {r["metric"]["k"]: r["value"][1] for r in doc["result"]}

    assert counts() == {"x": "10", "y": "10"}
    # Missing match[]: an error, nothing deleted.
    error(http.post("/api/v1/admin/tsdb/delete_series", data={"start": T0}), 400, "bad_data")
    assert counts() == {"x": "10", "y": "10"}
    r = http.post(
        "/api/v1/admin/tsdb/delete_series", data={"match[]": 'pa_del{k="x"}', "start": T0 + 20, "end": T0 + 50}
    )
    assert r.status_code == 204 and r.content == b""
    assert counts() == {"x": "6", "y": "10"}
    r = http.put("/api/v1/admin/tsdb/delete_series", params={"match[]": 'pa_del{k="y"}'})
    assert r.status_code == 204
    assert counts() == {"x": "6"}
    assert http.get("/api/v1/admin/tsdb/delete_series", params={"match[]": "pa_del"}).status_code == 405


def test_query_timing_and_prometheus_api_route_telemetry(http: httpx.Client, loaded: TSDB) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def sample(name: str, **labels: str) -> float:
        text = http.get("/metrics", headers={"Accept": "text/plain"}).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    before = sample("tsdb_query_duration_seconds_count", api="prometheus")
    routes = sample("tsdb_http_requests_total", route="/api/v1/query_range", method="POST", status="200")
    success(prom(http, "/api/v1/query", query="pa_cpu"))
    success(prom(http, "/api/v1/query_range", "POST", query="pa_cpu", start=T0, end=T0 + 60, step=15))
    assert sample("tsdb_query_duration_seconds_count", api="prometheus") - before == 2
    after = sample("tsdb_http_requests_total", route="/api/v1/query_range", method="POST", status="200")
    assert after - routes == 1


def test_auth_applies_to_the_prometheus_api(start_server: Any) -> None:
    s = start_server(TSDB_AUTH_TOKEN="tok")
    with httpx.Client(base_url=s.url, timeout=30.0) as client:
        assert client.get("/api/v1/query", params={"query": "1"}).status_code == 401
        r = client.get("/api/v1/query", params={"query": "1", "time": "1"}, headers={"Authorization": "Bearer tok"})
        assert json.loads(r.content) == {"status": "success", "data": {"resultType": "scalar", "result": [1, "1"]}}
