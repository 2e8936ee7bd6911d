"""Start-up, readiness, background maintenance and clean shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable

import pytest
from conftest import BASE, ServerProcess


def gauge(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} missing"
    return float(m.group(1))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly(start_server: Callable[..., ServerProcess], sig: int) -> None:
    server = start_server()
    http = server.client()
    assert http.post("/data", json={"timestamp": BASE, "value": 1}).status_code == 200
    code = server.stop(sig)
    assert code == 0
    log = server.log()
    assert "Application shutdown complete" in log
    assert "database closed" in log
    assert "Traceback" not in log


def test_health_and_readiness(server: ServerProcess) -> None:
    http = server.client()
    r = http.get("/-/healthy")
    assert r.status_code == 200 and "Healthy" in r.text
    r = http.get("/-/ready")
    assert r.status_code == 200 and "Ready" in r.text


def test_port_in_use_fails_without_traceback(start_server: Callable[..., ServerProcess]) -> None:
    import subprocess
    import sys

    first = start_server()
    port = first.url.rsplit(":", 1)[1]
    proc = subprocess.run(
        [sys.executable, "-m", "tsdb.cli", "serve", "--port", port, "--data-dir", ""],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr


def test_background_maintenance_applies_retention(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(RETENTION_SECONDS="60", CHUNK_SIZE="2", TSDB_MAINTENANCE_INTERVAL="0.1")
    http = server.client()
    old = [{"timestamp": BASE + i, "value": i} for i in range(4)]  # two sealed chunks
    assert http.post("/data", json=old).status_code == 200
    new = [{"timestamp": BASE + 1000 + i, "value": i} for i in range(2)]  # makes the old ones expire
    assert http.post("/data", json=new).status_code == 200
    deadline = time.monotonic() + 30
    sealed = -1.0
    while time.monotonic() < deadline:
        text = http.get("/metrics", headers={"Accept": "text/plain"}).text
        sealed = gauge(text, "tsdb_sealed_samples")
        if sealed == 2:
            break
        time.sleep(0.1)
    assert sealed == 2
    listing = http.get("/metrics").json()
    assert [p["timestamp"] for p in listing[0]["data"]] == [BASE + 1000, BASE + 1001]
