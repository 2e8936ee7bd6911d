"""InfluxDB line protocol on a real server: ``POST /write`` and ``POST /api/v2/write``.

Stored data is read back through the native API and compared with a reference built in the
test from the points it wrote (field ``f`` of ``m`` -> series ``m_f``, ``value`` -> ``m``).
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import BASE, ServerProcess, launch, unique
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BODY_LIMIT = 65536
ALL = '{__name__=~".+"}'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Its own server: a small body limit (gzip cap tests), room for many series and points."""
    s = launch(
        tmp_path_factory.mktemp("influx"),
        TSDB_MAX_BODY_BYTES=str(BODY_LIMIT),
        TSDB_MAX_POINTS="0",
        TSDB_MAX_SERIES="0",
    )
    yield s
    s.stop()


def stored(http: httpx.Client, match: str = ALL) -> dict[tuple[str, tuple[tuple[str, str], ...]], list[list[Any]]]:
    """Everything matching ``match``: (metric, sorted labels) -> [[seconds, value], ...]."""
    r = http.get("/api/native/query", params={"match": match})
    assert r.status_code == 200, r.text
    return {
        (s["metric"], tuple(sorted(s["labels"].items()))): [
            list(p) for p in zip(s["timestamps"], s["values"], strict=True)
        ]
        for s in r.json()["series"]
    }


def metric_value(http: httpx.Client, name: str, **labels: str) -> float:
    """A sample of the server's own exposition (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = http.get("/metrics", headers={"Accept": "text/plain"}).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def test_v1_write_stores_fields_as_series(http: httpx.Client) -> None:
    m = unique("lp_cpu")
    body = (
        f"{m},host=a,dc=eu usage_user=1.5,usage_system=2i,ok=true,value=7 {BASE}\n"
        f"# a comment\n\n"
        f"{m},host=b usage_user=-0.25,big=12u {BASE + 1}\n"
    )
    r = http.post("/write", params={"db": "telegraf", "precision": "s", "rp": "x", "u": "me", "p": "pw"}, content=body)
    assert r.status_code == 204 and r.content == b""
    got = stored(http, f'{{__name__=~"{m}.*"}}')
    eu_a = (("dc", "eu"), ("host", "a"))
    assert got == {
        (f"{m}_usage_user", eu_a): [[BASE, 1.5]],
        (f"{m}_usage_system", eu_a): [[BASE, 2.0]],
        (f"{m}_ok", eu_a): [[BASE, 1.0]],
        (m, eu_a): [[BASE, 7.0]],
        (f"{m}_usage_user", (("host", "b"),)): [[BASE + 1, -0.25]],
        (f"{m}_big", (("host", "b"),)): [[BASE + 1, 12.0]],
    }


@pytest.mark.parametrize(
    ("route", "precision", "scale"),
    [
        ("/write", "n", 1_000_000_000),
        ("/write", "u", 1_000_000),
        ("/write", "ms", 1_000),
        ("/write", "s", 1),
        ("/write", "m", 1 / 60),
        ("/write", "h", 1 / 3600),
        ("/api/v2/write", "ns", 1_000_000_000),
        ("/api/v2/write", "us", 1_000_000),
        ("/api/v2/write", "ms", 1_000),
        ("/api/v2/write", "s", 1),
    ],
)
def test_precisions(http: httpx.Client, route: str, precision: str, scale: float) -> None:
    m = unique("lp_prec")
    t0 = BASE - BASE % 3600  # whole hours, so every unit can express it
    ts = int(t0 * scale)
    r = http.post(route, params={"precision": precision}, content=f"{m} value=1 {ts}\n{m} value=2 {ts + 1}")
    assert r.status_code == 204, r.text
    (points,) = stored(http, m).values()
    assert points == [[t0, 1.0], [pytest.approx(t0 + 1 / scale, abs=1e-6), 2.0]]


def test_default_precision_is_nanoseconds_and_missing_timestamps_get_server_time(http: httpx.Client) -> None:
    m = unique("lp_now")
    before = time.time()
    r = http.post(
        "/api/v2/write", params={"bucket": "b", "org": "o"}, content=f"{m},k=1 value=1 {BASE * 10**9}\n{m},k=2 value=2"
    )
    after = time.time()
    assert r.status_code == 204, r.text
    got = stored(http, m)
    assert got[(m, (("k", "1"),))] == [[BASE, 1.0]]
    ((t, v),) = got[(m, (("k", "2"),))]
    assert before - 1e-6 <= t <= after and v == 2.0


@pytest.mark.parametrize(
    ("route", "precisions"), [("/write", ["ns2", "x", "S"]), ("/api/v2/write", ["h", "m", "n", "u"])]
)
def test_unknown_precision_is_400_and_stores_nothing(http: httpx.Client, route: str, precisions: list[str]) -> None:
    m = unique("lp_badprec")
    for precision in precisions:
        r = http.post(route, params={"precision": precision}, content=f"{m} value=1 1")
        assert r.status_code == 400
        message = r.json()["error"] if route == "/write" else r.json()["message"]
        assert "precision" in message and repr(precision) in message
    assert stored(http, m) == {}


def test_v2_partial_write_stores_valid_lines_and_names_the_first_bad_one(http: httpx.Client) -> None:
    m = unique("lp_part")
    before = metric_value(http, "tsdb_samples_rejected_total", protocol="influx", reason="invalid_input")
    body = "\n".join(
        [
            f"{m},host=a value=1 {BASE}",
            f'{m},host=a msg="disk full" {BASE + 1}',
            f"{m},host=a value=3 {BASE + 2}",
            f"{m} novalue {BASE + 3}",
            f"{m},host=a value=5 {BASE + 4}",
        ]
    )
    r = http.post("/api/v2/write", params={"precision": "s"}, content=body)
    assert r.status_code == 400
    doc = r.json()
    assert set(doc) == {"code", "message"} and doc["code"] == "invalid"
    message = doc["message"]
    assert message.startswith("partial write error (3 samples written): ")
    assert (
        f"unable to parse '{m},host=a msg=\"disk full\" {BASE + 1}': line 2: field 'msg' has a string value" in message
    )
    assert message.endswith("2 of 5 lines rejected")
    assert stored(http, m) == {(m, (("host", "a"),)): [[BASE, 1.0], [BASE + 2, 3.0], [BASE + 4, 5.0]]}
    after = metric_value(http, "tsdb_samples_rejected_total", protocol="influx", reason="invalid_input")
    assert after - before == 2


def test_v1_partial_write_has_influxdb_1_shape(http: httpx.Client) -> None:
    m = unique("lp_part1")
    r = http.post("/write", params={"precision": "s"}, content=f"{m} value=1 {BASE}\n{m} value=oops {BASE + 1}\n")
    assert r.status_code == 400
    doc = r.json()
    assert set(doc) == {"error"}
    assert doc["error"].startswith(f"partial write: unable to parse '{m} value=oops {BASE + 1}': line 2: ")
    assert doc["error"].endswith("1 of 2 lines rejected dropped=1")
    assert r.headers["x-influxdb-error"] == doc["error"]
    assert stored(http, m) == {(m, ()): [[BASE, 1.0]]}


@pytest.mark.parametrize("route", ["/write", "/api/v2/write"])
def test_all_lines_bad_stores_nothing_and_is_not_a_partial_write(http: httpx.Client, route: str) -> None:
    m = unique("lp_allbad")
    r = http.post(route, content=f"{m}\n{m} x=\n")
    assert r.status_code == 400
    message = r.json()["error"] if route == "/write" else r.json()["message"]
    assert message.startswith(f"unable to parse '{m}': line 1: ")
    assert "2 of 2 lines rejected" in message
    assert stored(http, m) == {}


def test_samples_outside_the_time_window_are_refused_the_rest_stored(http: httpx.Client) -> None:
    m = unique("lp_future")
    future = int(time.time()) + 7200  # beyond the default 600 s future tolerance
    r = http.post("/api/v2/write", params={"precision": "s"}, content=f"{m} value=1 {BASE}\n{m} value=2 {future}")
    assert r.status_code == 400
    message = r.json()["message"]
    assert message.startswith("partial write error (1 samples written): 1 samples refused: ")
    assert "in the future" in message
    assert stored(http, m) == {(m, ()): [[BASE, 1.0]]}


def test_gzip_bodies(http: httpx.Client) -> None:
    m = unique("lp_gz")
    lines = "".join(f"{m},i={i % 7} value={i} {BASE + i}\n" for i in range(500)).encode()
    assert len(lines) > 0
    r = http.post("/api/v2/write?precision=s", content=gzip.compress(lines), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 204, r.text
    got = stored(http, m)
    assert sum(len(v) for v in got.values()) == 500
    assert got[(m, (("i", "3"),))][:2] == [[BASE + 3, 3.0], [BASE + 10, 10.0]]
    # Two gzip members back to back are one stream (as gzip(1) writes with appends).
    m2 = unique("lp_gz")
    two = gzip.compress(f"{m2} value=1 {BASE}\n".encode()) + gzip.compress(f"{m2} value=2 {BASE + 1}\n".encode())
    r = http.post("/write?precision=s", content=two, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 204, r.text
    assert stored(http, m2) == {(m2, ()): [[BASE, 1.0], [BASE + 1, 2.0]]}


def test_bad_gzip_is_400_and_stores_nothing(http: httpx.Client) -> None:
    m = unique("lp_badgz")
    good = gzip.compress(f"{m} value=1 {BASE}\n".encode())
    for body in (b"not gzip at all", good[:-12], good[:10] + bytes(len(good) - 10)):
        r = http.post("/api/v2/write?precision=s", content=body, headers={"Content-Encoding": "gzip"})
        assert r.status_code == 400, body
        assert "gzip" in r.json()["message"]
    assert stored(http, m) == {}


def test_gzip_bomb_is_413_and_stores_nothing(http: httpx.Client) -> None:
    m = unique("lp_bomb")
    # Valid line protocol that decompresses past the body limit; compressed it is tiny.
    raw = f"{m} value=1 {BASE}\n".encode() * (BODY_LIMIT // 10)
    bomb = zlib.compress(raw, 9)
    packed = gzip.compress(raw, 9)
    assert len(packed) < BODY_LIMIT < len(raw) and len(bomb) < BODY_LIMIT
    for route, key in (("/write", "error"), ("/api/v2/write", "message")):
        r = http.post(route + "?precision=s", content=packed, headers={"Content-Encoding": "gzip"})
        assert r.status_code == 413
        assert f"limit of {BODY_LIMIT} bytes" in r.json()[key]
    assert r.json()["code"] == "request too large"
    assert stored(http, m) == {}


def test_unsupported_encoding_is_415(http: httpx.Client) -> None:
    m = unique("lp_br")
    r = http.post("/api/v2/write", content=f"{m} value=1 {BASE}", headers={"Content-Encoding": "br"})
    assert r.status_code == 415 and r.json()["code"] == "unsupported media type"
    r = http.post("/write", content=f"{m} value=1 {BASE}", headers={"Content-Encoding": "deflate"})
    assert r.status_code == 415 and "deflate" in r.json()["error"]
    assert stored(http, m) == {}


def test_body_over_the_limit_is_413(http: httpx.Client) -> None:
    m = unique("lp_big")
    body = f"{m} value=1 {BASE}\n".encode() * (BODY_LIMIT // 10)
    assert len(body) > BODY_LIMIT
    r = http.post("/write?precision=s", content=body)
    assert r.status_code == 413
    assert stored(http, m) == {}


def test_large_bodies_take_the_worker_thread_and_store_everything(start_server: Any) -> None:
    """A body over THREAD_BYTES decompressed (256 KiB) is parsed and stored on a worker thread."""
    from tsdb.server.routes_influx import THREAD_BYTES

    big = start_server(TSDB_MAX_BODY_BYTES=str(4 * 2**20), TSDB_MAX_POINTS="0")
    client = big.client()
    m = unique("lp_thread")
    lines = "".join(f"{m},host=h{i % 20} a={i},b={i}i,c=t {BASE + i // 20}\n" for i in range(12_000)).encode()
    assert len(lines) > THREAD_BYTES
    r = client.post("/api/v2/write?precision=s", content=gzip.compress(lines), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 204, r.text
    got = stored(client, f'{{__name__=~"{m}_.*"}}')
    assert len(got) == 60 and sum(len(v) for v in got.values()) == 36_000
    assert got[(f"{m}_b", (("host", "h7"),))][:2] == [[BASE, 7.0], [BASE + 1, 27.0]]


def test_ping(http: httpx.Client) -> None:
    for method in ("GET", "HEAD"):
        r = http.request(method, "/ping")
        assert r.status_code == 204 and r.content == b""
        assert r.headers["x-influxdb-build"] == "tsdb" and r.headers["x-influxdb-version"]


def test_telemetry_counts_influx_samples_and_route_templates(http: httpx.Client) -> None:
    m = unique("lp_tel")
    before = metric_value(http, "tsdb_samples_ingested_total", protocol="influx")
    requests = metric_value(http, "tsdb_http_requests_total", route="/api/v2/write", method="POST", status="204")
    r = http.post("/api/v2/write?precision=s", content=f"{m} a=1,b=2,c=3 {BASE}")
    assert r.status_code == 204
    assert metric_value(http, "tsdb_samples_ingested_total", protocol="influx") - before == 3
    after = metric_value(http, "tsdb_http_requests_total", route="/api/v2/write", method="POST", status="204")
    assert after - requests == 1


def test_token_scheme_of_influxdb_2_clients_is_accepted(start_server: Any) -> None:
    s = start_server(TSDB_AUTH_TOKEN="s3cret")
    client = httpx.Client(base_url=s.url, timeout=30.0)
    try:
        body = f"lp_auth value=1 {BASE}"
        assert client.post("/api/v2/write?precision=s", content=body).status_code == 401
        wrong = client.post("/api/v2/write?precision=s", content=body, headers={"Authorization": "Token nope"})
        assert wrong.status_code == 401
        ok = client.post("/api/v2/write?precision=s", content=body, headers={"Authorization": "Token s3cret"})
        assert ok.status_code == 204
    finally:
        client.close()


# --- property: what goes in comes out ---------------------------------------------------------

_names = st.sampled_from(["alpha", "beta", "gamma"])
_tag_values = st.text(alphabet="abcxyz09 ,=-", min_size=1, max_size=6)
_fields = st.dictionaries(
    st.sampled_from(["value", "used", "free", "load1"]),
    st.one_of(
        st.integers(-(2**53), 2**53).map(lambda i: (f"{i}i", float(i))),
        st.floats(-1e12, 1e12, allow_nan=False).map(lambda f: (repr(f), f)),
        st.booleans().map(lambda b: ("true" if b else "f", 1.0 if b else 0.0)),
    ),
    min_size=1,
    max_size=3,
)
_points = st.lists(
    st.tuples(_names, st.dictionaries(st.sampled_from(["host", "dc"]), _tag_values, max_size=2), _fields),
    min_size=1,
    max_size=12,
)


def _escape_tag(text: str) -> str:
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=_points, gz=st.booleans(), v2=st.booleans())
def test_property_written_points_read_back(http: httpx.Client, points: list[Any], gz: bool, v2: bool) -> None:
    prefix = unique("lp_prop")
    lines, expected = [], {}
    for i, (name, tags, fields) in enumerate(points):
        measurement = f"{prefix}_{name}"
        tag_text = "".join(f",{k}={_escape_tag(v)}" for k, v in sorted(tags.items()))
        field_text = ",".join(f"{k}={text}" for k, (text, _) in fields.items())
        lines.append(f"{measurement}{tag_text} {field_text} {BASE + i}")
        for key, (_, value) in fields.items():
            metric = measurement if key == "value" else f"{measurement}_{key}"
            expected.setdefault((metric, tuple(sorted(tags.items()))), []).append([BASE + i, value])
    body = "\n".join(lines).encode()
    headers = {"Content-Encoding": "gzip"} if gz else {}
    route = "/api/v2/write" if v2 else "/write"
    r = http.post(route, params={"precision": "s"}, content=gzip.compress(body) if gz else body, headers=headers)
    assert r.status_code == 204, r.text
    assert stored(http, f'{{__name__=~"{prefix}_.*"}}') == expected


# --- tsdb import of line protocol files ---------------------------------------------------------


def tsdb_cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tsdb.cli", *args, "--url", server.url], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("suffix", [".lp", ".line", ".influx"])
def test_import_line_protocol_file(server: ServerProcess, tmp_path: Path, suffix: str) -> None:
    m = unique("lp_imp")
    path = tmp_path / f"data{suffix}"
    rows = [
        "# exported by telegraf",
        *(f"{m},host=h{i % 3} value={i},x={i * 2}i {(BASE + i) * 10**9}" for i in range(250)),
    ]
    path.write_text("\n".join(rows) + "\n")
    proc = tsdb_cli(server, "import", str(path), "--batch-size", "100", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "imported 250 lines" in proc.stderr
    got = stored(server.client(), f'{{__name__=~"{m}.*"}}')
    assert sum(len(v) for v in got.values()) == 500
    assert got[(m, (("host", "h1"),))][:2] == [[BASE + 1, 1.0], [BASE + 4, 4.0]]
    assert got[(f"{m}_x", (("host", "h2"),))][0] == [BASE + 2, 4.0]


def test_import_line_protocol_with_unit_and_a_bad_line(server: ServerProcess, tmp_path: Path) -> None:
    m = unique("lp_impbad")
    path = tmp_path / "metrics.txt"
    path.write_text(f"{m} value=1 {BASE}\n{m} value=2 {BASE + 1}\n{m} value=\n{m} value=4 {BASE + 3}\n")
    proc = tsdb_cli(server, "import", str(path), "--format", "line", "--unit", "s", "--batch-size", "2")
    assert proc.returncode == 1
    assert "lines 3-4 refused (400)" in proc.stderr
    assert f"unable to parse '{m} value='" in proc.stderr and "2 lines imported before them" in proc.stderr
    # The first batch, and the valid line of the refused one, are stored (partial writes).
    assert stored(server.client(), m) == {(m, ()): [[BASE, 1.0], [BASE + 1, 2.0], [BASE + 3, 4.0]]}
