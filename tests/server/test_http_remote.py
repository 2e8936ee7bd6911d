"""Prometheus remote write 1.0 and remote read on a real server.

Requests are built with ``tsdb.protocols.prom_remote.encode_write_request`` and protobuf's own
``remote_pb2`` (as Prometheus builds them); what was written is read back through remote read
and the native API and compared with the written batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import cramjam
import httpx
import numpy as np
import pytest
from conftest import BASE, ServerProcess, launch, unique
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsdb._types import STALE_NAN, STALE_NAN_BITS, Batch
from tsdb.labels import make_labelset
from tsdb.protocols.prom_remote import encode_write_request
from tsdb.protocols.prompb import remote_pb2, types_pb2

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "Prometheus/2.42.0",
}
MS = 1_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = launch(
        tmp_path_factory.mktemp("remote"),
        TSDB_MAX_BODY_BYTES=str(8 * 2**20),
        TSDB_MAX_POINTS="20000",
        TSDB_MAX_SERIES="0",
    )
    yield s
    s.stop()


def batch(series: list[tuple[str, dict[str, str]]], rows: list[tuple[int, int, float]]) -> Batch:
    """rows: (series index, timestamp in seconds * 1000 = ms, value)."""
    refs = [(metric, make_labelset(labels)) for metric, labels in series]
    idx = np.array([r[0] for r in rows], np.int64)
    ts = np.array([r[1] for r in rows], np.int64) * MS
    values = np.array([r[2] for r in rows], np.float64)
    return Batch(refs, idx, ts, values)


def remote_write(http: httpx.Client, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return http.post("/api/v1/write", content=body, headers=HEADERS if headers is None else headers)


def read_request(*queries: tuple[int, int, list[tuple[int, str, str]]], accepted: list[int] | None = None) -> bytes:
    request = remote_pb2.ReadRequest()
    for start_ms, end_ms, matchers in queries:
        q = request.queries.add(start_timestamp_ms=start_ms, end_timestamp_ms=end_ms)
        for kind, name, value in matchers:
            q.matchers.add(type=kind, name=name, value=value)
    if accepted is not None:
        request.accepted_response_types.extend(accepted)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def remote_read(http: httpx.Client, body: bytes) -> list[list[tuple[dict[str, str], list[tuple[int, float]]]]]:
    r = http.post("/api/v1/read", content=body, headers={**HEADERS, "X-Prometheus-Remote-Read-Version": "0.1.0"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-protobuf"
    assert r.headers["content-encoding"] == "snappy"
    response = remote_pb2.ReadResponse.FromString(bytes(cramjam.snappy.decompress_raw(r.content)))
    return [
        [
            ({lb.name: lb.value for lb in ts.labels}, [(s.timestamp, s.value) for s in ts.samples])
            for ts in result.timeseries
        ]
        for result in response.results
    ]


EQ, NEQ, RE, NRE = (
    types_pb2.LabelMatcher.EQ,
    types_pb2.LabelMatcher.NEQ,
    types_pb2.LabelMatcher.RE,
    types_pb2.LabelMatcher.NRE,
)


def everything(http: httpx.Client, metric_re: str) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    """All samples of metrics matching ``metric_re``, by remote read (ms timestamps)."""
    (result,) = remote_read(http, read_request((0, 2**62 // MS, [(RE, "__name__", metric_re)])))
    return result


def metric_value(http: httpx.Client, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = http.get("/metrics", headers={"Accept": "text/plain"}).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_write_then_read_back_exactly(http: httpx.Client) -> None:
    m = unique("rw_up")
    t = BASE * 1000
    body = encode_write_request(
        batch(
            [(m, {"job": "node", "instance": "a:9100"}), (m, {"job": "node", "instance": "b:9100"})],
            [(0, t, 1.0), (0, t + 15_000, 1.0), (1, t, 0.0), (1, t + 15_000, 1.0), (0, t + 30_000, 0.5)],
        )
    )
    before = metric_value(http, "tsdb_samples_ingested_total", protocol="remote_write")
    r = remote_write(http, body)
    assert r.status_code == 204 and r.content == b""
    assert metric_value(http, "tsdb_samples_ingested_total", protocol="remote_write") - before == 5
    got = everything(http, m)
    assert got == [
        ({"__name__": m, "instance": "a:9100", "job": "node"}, [(t, 1.0), (t + 15_000, 1.0), (t + 30_000, 0.5)]),
        ({"__name__": m, "instance": "b:9100", "job": "node"}, [(t, 0.0), (t + 15_000, 1.0)]),
    ]


def test_staleness_markers_are_stored_and_end_the_series(http: httpx.Client) -> None:
    m = unique("rw_stale")
    t = BASE * 1000
    r = remote_write(http, encode_write_request(batch([(m, {"job": "x"})], [(0, t, 5.0), (0, t + 10_000, STALE_NAN)])))
    assert r.status_code == 204, r.text
    ((_, samples),) = everything(http, m)
    assert samples[0] == (t, 5.0) and samples[1][0] == t + 10_000
    assert np.array([samples[1][1]]).view(np.uint64)[0] == STALE_NAN_BITS  # the exact marker comes back

    def instant(at_s: float) -> list[Any]:
        doc = http.get("/api/v1/query", params={"query": m, "time": at_s}).json()
        return doc["data"]["result"]

    assert [r["value"] for r in instant(BASE + 5)] == [[BASE + 5, "5"]]
    assert instant(BASE + 10) == []  # the marker ends the series, within the 5 m lookback
    assert instant(BASE + 60) == []
    # Aggregations skip the marker.
    counted = http.get("/api/v1/query", params={"query": f"count_over_time({m}[1m])", "time": BASE + 30}).json()
    assert counted["data"]["result"][0]["value"][1] == "1"


def test_nan_and_inf_are_dropped_and_counted_the_rest_stored(http: httpx.Client) -> None:
    m = unique("rw_nan")
    t = BASE * 1000
    before = metric_value(http, "tsdb_samples_rejected_total", protocol="remote_write", reason="invalid_value")
    rows = [(0, t, 1.0), (0, t + 1000, math.nan), (0, t + 2000, math.inf), (0, t + 3000, 4.0)]
    r = remote_write(http, encode_write_request(batch([(m, {})], rows)))
    assert r.status_code == 204
    assert everything(http, m) == [({"__name__": m}, [(t, 1.0), (t + 3000, 4.0)])]
    after = metric_value(http, "tsdb_samples_rejected_total", protocol="remote_write", reason="invalid_value")
    assert after - before == 2


def test_samples_outside_the_time_window_400_after_storing_the_rest(http: httpx.Client) -> None:
    m = unique("rw_future")
    now_ms = int(time.time() * 1000)
    before = metric_value(http, "tsdb_samples_rejected_total", protocol="remote_write", reason="invalid_timestamp")
    rows = [(0, now_ms - 1000, 1.0), (0, now_ms + 3_600_000, 2.0), (0, now_ms + 7_200_000, 3.0)]
    r = remote_write(http, encode_write_request(batch([(m, {"job": "j"})], rows)))
    assert r.status_code == 400
    doc = r.json()
    assert doc["field"] == "timestamp"
    assert doc["error"].startswith("2 samples outside the accepted time window were not stored (1 were): ")
    assert "in the future" in doc["error"]
    assert everything(http, m) == [({"__name__": m, "job": "j"}, [(now_ms - 1000, 1.0)])]
    after = metric_value(http, "tsdb_samples_rejected_total", protocol="remote_write", reason="invalid_timestamp")
    assert after - before == 2


def _write_request(series: list[list[tuple[str, str]]]) -> bytes:
    request = remote_pb2.WriteRequest()
    for labels in series:
        ts = request.timeseries.add()
        for name, value in labels:
            ts.labels.add(name=name, value=value)
        ts.samples.add(value=1.0, timestamp=BASE * 1000)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"\x00\x01garbage", "snappy"),
        (bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff\xff not protobuf")), "protobuf"),
        (_write_request([[("job", "no_name")]]), "__name__"),
        (_write_request([[("__name__", "rw_ok_1")], [("__name__", "9bad")]]), "9bad"),
        (_write_request([[("__name__", "rw_ok_2"), ("__reserved", "x")]]), "__reserved"),
        (_write_request([[("__name__", "rw_ok_3"), ("a", "1"), ("a", "2")]]), "a"),
    ],
    ids=["bad-snappy", "bad-protobuf", "no-name", "bad-name", "reserved-label", "duplicate-label"],
)
def test_invalid_requests_are_400_and_store_nothing(http: httpx.Client, body: bytes, needle: str) -> None:
    before = everything(http, "rw_ok_.*")
    rejected = metric_value(http, "tsdb_samples_rejected_total", protocol="remote_write", reason="invalid_input")
    rejected += metric_value(http, "tsdb_samples_rejected_total", protocol="remote_write", reason="invalid_name")
    r = remote_write(http, body)
    assert r.status_code == 400
    assert needle in r.json()["error"]
    assert everything(http, "rw_ok_.*") == before == []
    after = metric_value(http, "tsdb_samples_rejected_total", protocol="remote_write", reason="invalid_input")
    after += metric_value(http, "tsdb_samples_rejected_total", protocol="remote_write", reason="invalid_name")
    assert after - rejected == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Encoding": "gzip", "Content-Type": "application/x-protobuf"},
        {"Content-Encoding": "snappy", "Content-Type": "application/json"},
        {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
    ],
    ids=["gzip", "json", "remote-write-2.0"],
)
def test_other_encodings_and_messages_are_415(http: httpx.Client, headers: dict[str, str]) -> None:
    m = unique("rw_415")
    r = remote_write(http, encode_write_request(batch([(m, {})], [(0, BASE * 1000, 1.0)])), headers=headers)
    assert r.status_code == 415
    assert everything(http, m) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "application/x-protobuf;proto=prometheus.WriteRequest"},
        {"X-Prometheus-Remote-Write-Version": "1.0"},
    ],
    ids=["no-headers", "explicit-v1-proto", "other-version"],
)
def test_lenient_headers_as_prometheus(http: httpx.Client, headers: dict[str, str]) -> None:
    m = unique("rw_hdr")
    r = remote_write(http, encode_write_request(batch([(m, {})], [(0, BASE * 1000, 2.0)])), headers=headers)
    assert r.status_code == 204, r.text
    assert everything(http, m) == [({"__name__": m}, [(BASE * 1000, 2.0)])]


def test_series_limit_is_422_not_retried_and_stores_nothing(start_server: Any) -> None:
    s = start_server(TSDB_MAX_SERIES="2")
    client = s.client()
    rows = [(i, BASE * 1000, float(i)) for i in range(3)]
    r = remote_write(client, encode_write_request(batch([(f"rw_lim{i}", {}) for i in range(3)], rows)))
    assert r.status_code == 422 and "series limit" in r.json()["error"]
    assert everything(client, "rw_lim.*") == []


def test_metadata_requests_feed_the_metadata_api(http: httpx.Client) -> None:
    m = unique("rw_meta")
    request = remote_pb2.WriteRequest()
    request.metadata.add(type=types_pb2.MetricMetadata.COUNTER, metric_family_name=m, help="Requests served.", unit="")
    request.metadata.add(
        type=types_pb2.MetricMetadata.GAUGE, metric_family_name=m + "_g", help="A gauge.", unit="bytes"
    )
    r = remote_write(http, bytes(cramjam.snappy.compress_raw(request.SerializeToString())))
    assert r.status_code == 204
    doc = http.get("/api/v1/metadata", params={"metric": m}).json()
    assert doc == {"status": "success", "data": {m: [{"type": "counter", "help": "Requests served.", "unit": ""}]}}
    both = http.get("/api/v1/metadata").json()["data"]
    assert both[m + "_g"] == [{"type": "gauge", "help": "A gauge.", "unit": "bytes"}]
    assert len(http.get("/api/v1/metadata", params={"limit": 1}).json()["data"]) == 1


def test_large_requests_take_the_worker_thread(http: httpx.Client) -> None:
    from tsdb.server.routes_remote import THREAD_BYTES

    m = unique("rw_big")
    n_series, per = 2_000, 30
    rows = [(i, (BASE + 15 * k) * 1000, float(i * per + k)) for i in range(n_series) for k in range(per)]
    series = [(m, {"instance": f"host-{i:05d}.example.com:9100", "job": "node"}) for i in range(n_series)]
    body = encode_write_request(batch(series, rows))
    assert len(body) > THREAD_BYTES
    r = remote_write(http, body)
    assert r.status_code == 204, r.text
    at = BASE + 15 * per
    total = http.get("/api/v1/query", params={"query": f"sum(count_over_time({m}[1h]))", "time": at}).json()
    assert total["data"]["result"][0]["value"][1] == str(n_series * per)
    one = [(EQ, "__name__", m), (EQ, "instance", "host-00007.example.com:9100")]
    ((labels, samples),) = remote_read(http, read_request((0, at * 1000, one)))[0]
    assert labels == {"__name__": m, "instance": "host-00007.example.com:9100", "job": "node"}
    assert samples[:2] == [(BASE * 1000, 210.0), ((BASE + 15) * 1000, 211.0)] and len(samples) == per


def test_remote_read_matchers_ranges_and_query_order(http: httpx.Client) -> None:
    m = unique("rw_rd")
    t = BASE * 1000
    series = [(m, {"env": "prod", "host": "a"}), (m, {"env": "dev", "host": "b"}), (m, {"env": "prod", "host": "c"})]
    rows = [(i, t + 1000 * k, float(10 * i + k)) for i in range(3) for k in range(10)]
    assert remote_write(http, encode_write_request(batch(series, rows))).status_code == 204
    results = remote_read(
        http,
        read_request(
            (t + 2000, t + 4000, [(EQ, "__name__", m), (EQ, "env", "prod")]),
            (t, t + 1000, [(EQ, "__name__", m), (NEQ, "env", "prod")]),
            (t + 9000, t + 99_000, [(RE, "__name__", f"{m}|nothing"), (NRE, "host", "a|b")]),
            (t, t + 99_000, [(EQ, "__name__", m), (EQ, "host", "zzz")]),
        ),
    )
    assert results == [
        [
            ({"__name__": m, "env": "prod", "host": "a"}, [(t + 2000, 2.0), (t + 3000, 3.0), (t + 4000, 4.0)]),
            ({"__name__": m, "env": "prod", "host": "c"}, [(t + 2000, 22.0), (t + 3000, 23.0), (t + 4000, 24.0)]),
        ],
        [({"__name__": m, "env": "dev", "host": "b"}, [(t, 10.0), (t + 1000, 11.0)])],
        [({"__name__": m, "env": "prod", "host": "c"}, [(t + 9000, 29.0)])],
        [],
    ]


def test_remote_read_errors(http: httpx.Client) -> None:
    r = http.post("/api/v1/read", content=b"\x00garbage")
    assert r.status_code == 400 and "snappy" in r.json()["error"]
    streamed = read_request((0, 1, [(EQ, "__name__", "x")]), accepted=[remote_pb2.ReadRequest.STREAMED_XOR_CHUNKS])
    r = http.post("/api/v1/read", content=streamed)
    assert r.status_code == 422 and "SAMPLES" in r.json()["error"]
    bad_regex = read_request((0, 1, [(RE, "__name__", "(")]))
    assert http.post("/api/v1/read", content=bad_regex).status_code == 400


def test_remote_read_is_bounded_by_max_points(http: httpx.Client) -> None:
    m = unique("rw_many")
    rows = [(0, (BASE + k) * 1000, float(k)) for k in range(25_000)]
    assert remote_write(http, encode_write_request(batch([(m, {})], rows))).status_code == 204
    body = read_request((0, 2**62 // MS, [(EQ, "__name__", m)]))
    r = http.post("/api/v1/read", content=body)
    assert r.status_code == 422 and "20000" in r.json()["error"]
    (result,) = remote_read(http, read_request((BASE * 1000, (BASE + 99) * 1000, [(EQ, "__name__", m)])))
    ((_, samples),) = result
    assert len(samples) == 100


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 500),
            st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64), st.just(STALE_NAN)),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_property_remote_write_round_trips_through_remote_read(http: httpx.Client, data: list[Any]) -> None:
    """Whatever Prometheus writes (last write of a timestamp wins) comes back from remote read."""
    m = unique("rw_prop")
    series = [(m, {"i": str(i)}) for i in range(4)]
    rows = [(i, (BASE + offset) * 1000, value) for i, offset, value in data]
    assert remote_write(http, encode_write_request(batch(series, rows))).status_code == 204
    expected: dict[str, dict[int, float]] = {}
    for i, offset, value in data:  # encode_write_request sorts by time, stably: the last wins
        expected.setdefault(str(i), {})[(BASE + offset) * 1000] = value
    got = everything(http, m)
    assert [labels["i"] for labels, _ in got] == sorted(expected)
    for labels, samples in got:
        want = sorted(expected[labels["i"]].items())
        assert [t for t, _ in samples] == [t for t, _ in want]
        assert all(
            _same(a, b) and (a == a or np.array([a]).view(np.uint64)[0] == STALE_NAN_BITS)
            for (_, a), (_, b) in zip(samples, want, strict=True)
        )
