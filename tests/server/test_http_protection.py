"""Auth token, series limit, concurrency: the protective side of the server."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest
from conftest import BASE, ServerProcess


def test_bearer_token_guards_every_route_but_health(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(TSDB_AUTH_TOKEN="s3cret")
    anon = server.client(auth=False)
    for method, path in [("GET", "/metrics"), ("POST", "/data"), ("GET", "/api/native/series"), ("GET", "/docs")]:
        r = anon.request(method, path, json={"timestamp": BASE, "value": 1})
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["field"] == "Authorization"
    wrong = anon.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    basic = anon.get("/metrics", headers={"Authorization": "Basic czNjcmV0"})
    assert basic.status_code == 401
    assert anon.get("/-/healthy").status_code == 200
    assert anon.get("/-/ready").status_code == 200
    # Nothing was stored by the refused POST.
    authed = server.client()
    assert authed.get("/metrics").json() == []
    assert authed.post("/data", json={"timestamp": BASE, "value": 1}).status_code == 200
    assert authed.get("/metrics").json()[0]["data"] == [{"timestamp": BASE, "value": 1}]
    assert authed.get("/openapi.json").json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_series_limit_refuses_new_series_only(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(TSDB_MAX_SERIES="3")
    http = server.client()
    for host in "abc":
        assert http.post("/data", json={"timestamp": BASE, "value": 1, "labels": {"host": host}}).status_code == 200
    r = http.post("/data", json={"timestamp": BASE, "value": 1, "labels": {"host": "d"}})
    assert r.status_code == 422
    assert "limit" in r.json()["error"]
    # An array that would add a new series is refused whole; existing series keep working.
    r = http.post("/data", json=[{"timestamp": BASE + 1, "value": 2, "labels": {"host": h}} for h in "ad"])
    assert r.status_code == 422
    assert http.post("/data", json={"timestamp": BASE + 1, "value": 2, "labels": {"host": "a"}}).status_code == 200
    listing = http.get("/metrics").json()
    assert [s["labels"]["host"] for s in listing] == ["a", "b", "c"]
    assert [len(s["data"]) for s in listing] == [2, 1, 1]


def test_many_clients_creating_the_same_new_series_lose_nothing(server: ServerProcess) -> None:
    threads, per_thread, rounds = 16, 25, 3
    errors: list[str] = []
    for rnd in range(rounds):
        metric = f"race_{rnd}"
        barrier = threading.Barrier(threads)

        def worker(k: int, metric: str = metric, barrier: threading.Barrier = barrier) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                barrier.wait()
                for i in range(per_thread):
                    ts = BASE + k * per_thread + i
                    body = {"timestamp": ts, "value": k, "metric": metric, "labels": {"job": "race"}}
                    r = c.post("/data", json=body)
                    if r.status_code != 200:
                        errors.append(r.text[:200])

        pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    assert errors == []
    http = server.client()
    for rnd in range(rounds):
        listing = http.get("/metrics", params={"metric": f"race_{rnd}"}).json()
        assert len(listing) == 1
        data = listing[0]["data"]
        assert len(data) == threads * per_thread
        assert [p["timestamp"] for p in data] == list(range(BASE, BASE + threads * per_thread))
        assert all(p["value"] == (p["timestamp"] - BASE) // per_thread for p in data)


@pytest.mark.parametrize("threads", [8])
def test_concurrent_arrays_and_columnar_batches(server: ServerProcess, threads: int) -> None:
    barrier = threading.Barrier(threads)
    failures: list[int] = []

    def worker(k: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            barrier.wait()
            ts = [BASE + 10_000 + k * 1000 + i for i in range(500)]
            if k % 2:
                r = c.post("/api/native/write", json={"metric": "conc", "timestamps": ts, "values": [k] * 500})
            else:
                r = c.post("/data", json=[{"timestamp": t, "value": k, "metric": "conc"} for t in ts])
            if r.status_code != 200:
                failures.append(r.status_code)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert failures == []
    r = server.client().get("/api/native/query", params={"match": "conc", "agg": "count"})
    assert r.json()["series"][0]["values"] == [threads * 500]
