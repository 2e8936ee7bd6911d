"""kill -9 the real server under a bounded concurrent write load; restart; nothing acknowledged lost.

``python -m tsdb.cli serve`` runs with ``DATA_DIR`` set; a few client threads POST columnar
batches to ``/api/native/write`` and note each batch answered 200. After a bounded number of
acknowledgements (or time) the server gets SIGKILL, a new server starts on the same data
directory, and every acknowledged sample must come back with its exact value from
``/api/native/query``; every sample it returns must be one some batch sent, with that value.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from engine_testutil import mount_tmpfs
from server_process import spawn_server

pytestmark = pytest.mark.slow

CLIENTS = 4
ROWS = 500
T0 = 1_600_000_000  # seconds: in the past, so the future-tolerance check never refuses a batch
STARTUP_S = 90.0


def _serve(data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSDB_")}
    env.update({"DATA_DIR": str(data_dir), "RETENTION_SECONDS": "0", "PYTHONUNBUFFERED": "1"})
    server = spawn_server(log.parent, env, timeout=STARTUP_S, log_path=log)
    return server.proc, server.url


def _block(b: int) -> dict[str, object]:
    k = b % 5
    ts = [T0 + b * 100 + i for i in range(ROWS)]  # overlaps earlier batches of the series
    return {"metric": "h", "labels": {"w": str(k)}, "timestamps": ts, "values": [t * 0.25 + k for t in ts]}


def _load(url: str, acked: list[int], stop: threading.Event, first: int) -> list[threading.Thread]:
    lock = threading.Lock()

    def client(c: int) -> None:
        b = first + c
        with httpx.Client(base_url=url, timeout=30.0) as http:
            while not stop.is_set():
                try:
                    r = http.post("/api/native/write", json=_block(b))
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acked.append(b)
                b += CLIENTS

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    return threads


def _round(data_dir: Path, log: Path, first: int, want: int) -> list[int]:
    proc, url = _serve(data_dir, log)
    acked: list[int] = []
    stop = threading.Event()
    threads = _load(url, acked, stop, first)
    deadline = time.monotonic() + 60
    while len(acked) < want and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # mid-load: requests are in flight
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    return list(acked)


def _verify(data_dir: Path, log: Path, acked: list[int], started_below: int) -> None:
    proc, url = _serve(data_dir, log)
    try:
        r = httpx.get(url + "/api/native/query", params={"metric": "h", "start": 0, "end": T0 * 2}, timeout=60)
        assert r.status_code == 200, r.text
        stored = {s["labels"]["w"]: dict(zip(s["timestamps"], s["values"], strict=True)) for s in r.json()["series"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    for b in acked:
        block = _block(b)
        got = stored.get(str(b % 5), {})
        wrong = [t for t, v in zip(block["timestamps"], block["values"], strict=True) if got.get(t) != v]  # type: ignore[call-overload]
        assert not wrong, f"acknowledged batch {b}: {len(wrong)} samples missing or wrong"
    for w, points in stored.items():
        for t, v in points.items():
            assert v == t * 0.25 + int(w), f"series w={w} time {t}: value {v} was never written"
            b_last = (t - T0) // 100
            assert any(
                b >= 0 and b % 5 == int(w) and b < started_below for b in range(b_last - ROWS // 100 + 1, b_last + 1)
            ), f"series w={w} time {t}: no batch wrote it"


def test_kill_minus_9_of_the_server_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    acked = _round(data_dir, log, 0, want=80)
    assert acked, log.read_text(errors="replace")
    started = max(acked) + CLIENTS + 1
    _verify(data_dir, log, acked, started)
    more = _round(data_dir, log, started, want=80)
    assert more
    _verify(data_dir, log, acked + more, max(more) + CLIENTS + 1)


def test_a_full_disk_answers_507_and_the_server_recovers_when_space_is_back(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    if not mount_tmpfs(mnt, "3m"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (1 << 20))
        proc, url = _serve(mnt / "data", tmp_path / "server.log")
        acked: list[int] = []
        try:
            with httpx.Client(base_url=url, timeout=30.0) as http:
                status = 200
                for b in range(400):
                    r = http.post("/api/native/write", json=_block(b))
                    status = r.status_code
                    if status != 200:
                        break
                    acked.append(b)
                assert status == 507, r.text
                assert "disk full" in r.json()["error"]
                filler.unlink()  # space is back
                r = http.post("/api/native/write", json=_block(len(acked) + 10))
                assert r.status_code == 200, r.text
                acked.append(len(acked) + 10)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        _verify(mnt / "data", tmp_path / "server.log", acked, max(acked) + 1)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
