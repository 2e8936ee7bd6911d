"""Protocol benchmark: line protocol and remote write ingest, and a Grafana panel's query_range,
against the real server on loopback, and against VictoriaMetrics on the same data when the
Debian package ``victoria-metrics`` is installed (``apt-get install -y victoria-metrics``).

Run: ``python -m bench.bench_protocols`` (``--quick`` for a shorter run). Bounded: a fixed
amount of data per phase, about a minute in all on the 2-core reference machine.

Phases (targets from issue 5):
* ``POST /write`` line protocol, bodies of 5,000 Telegraf ``cpu`` lines (10 fields each, so
  50,000 samples), 4 connections -> samples/s (>= 1,000,000); as a Telegraf flush sends them
  (every line its own series) and in a backfill shape (100 series x 50 timestamps per body)
* ``POST /api/v1/write`` remote write 1.0 (bodies from ``prom_remote.encode_write_request``),
  4 connections, two shapes: Prometheus's own (a batch of 2,000 series with one sample each, as
  its queue sends them) and bulk (1,000 series x 100 samples per request, a backfill)
  -> samples/s (>= 1,000,000)
* ``GET /api/v1/query_range`` of ``sum by (host) (rate(x[1m]))`` over 1,000 counter series
  (100 hosts x 10 cpus) x 1 day at 10 s resolution, step 60 s -> median latency (<= 200 ms)

The client speaks HTTP/1.1 over raw asyncio sockets with pre-built requests so its own cost
stays small; it shares the two cores with the server, as a local agent would. "server CPU-s"
is the CPU time the server process used (all threads). VictoriaMetrics acknowledges writes
before they are searchable (it buffers in memory); tsdb's 204 means stored. Its query cache is
disabled (``nocache=1``) so every run computes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import numpy as np

from bench.bench_http import Phase, free_port
from bench.bench_http import run_phase as http_run_phase
from bench.table import print_table
from tsdb._types import Batch
from tsdb.labels import make_labelset
from tsdb.protocols.prom_remote import encode_write_request

HOST = "127.0.0.1"
NS = 1_000_000_000
CONNECTIONS = 4
LINES_PER_BODY = 5_000
CPU_FIELDS = ("usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait", "usage_irq",
              "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice")  # fmt: skip
PANEL = "sum by (host) (rate(x[1m]))"
PANEL_HOSTS, PANEL_CPUS = 100, 10
PANEL_STEP_S, PANEL_RES_S = 60, 10
#: The panel's day ends this long before now: inside VictoriaMetrics' default search latency
#: offset and tsdb's future tolerance, clear of anything written during the run.
PANEL_END_AGO_S = 3600


def request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 request."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (head + "\r\n").encode() + body


async def _connection(port: int, requests: Sequence[bytes], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for req in requests:
            began = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            chunked = False
            for line in head.split(b"\r\n"):
                low = line.lower()
                if low.startswith(b"content-length:"):
                    length = int(line[15:])
                elif low.startswith(b"transfer-encoding:") and b"chunked" in low:
                    chunked = True
            body = await _read_chunked(reader) if chunked else await reader.readexactly(length)
            if status not in (200, 204):
                raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
            latencies.append(time.perf_counter() - began)
    finally:
        writer.close()
        await writer.wait_closed()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        out += await reader.readexactly(size + 2)
        if size == 0:
            return out


def run_phase(port: int, per_connection: Sequence[Sequence[bytes]], pid: int) -> Phase:
    """``bench_http.run_phase`` with this module's connection (it also reads chunked answers)."""
    return http_run_phase(port, per_connection, pid, _connection)


def spread(requests: list[bytes], connections: int = CONNECTIONS) -> list[list[bytes]]:
    return [requests[i::connections] for i in range(connections)]


# --- workloads ------------------------------------------------------------------------------


def line_protocol_bodies(n_bodies: int, t0: int, series_per_body: int = LINES_PER_BODY) -> list[bytes]:
    """Telegraf ``cpu`` lines, 10 fields each. With ``series_per_body`` = 5,000 (a flush from
    500 hosts x 10 cpus) every line is its own series; with fewer, each series repeats at
    successive timestamps (a backfill or a file import)."""
    rng = np.random.default_rng(1)
    bodies = []
    per_series = LINES_PER_BODY // series_per_body
    keys = [f"cpu,cpu=cpu{i % 10},host=host{i // 10:03d}" for i in range(series_per_body)] * per_series
    for b in range(n_bodies):
        values = np.round(rng.random((LINES_PER_BODY, len(CPU_FIELDS))) * 100, 2)
        stamps = [(t0 + b * per_series + i // series_per_body) * NS for i in range(LINES_PER_BODY)]
        lines = [
            f"{key} " + ",".join(f"{f}={v!r}" for f, v in zip(CPU_FIELDS, row, strict=True)) + f" {ts}"
            for key, row, ts in zip(keys, values.tolist(), stamps, strict=True)
        ]
        bodies.append(("\n".join(lines) + "\n").encode())
    return bodies


def remote_write_bodies(n_bodies: int, n_series: int, per_series: int, t0: int, metric: str) -> list[bytes]:
    """Remote write requests of ``n_series`` node_exporter-like series x ``per_series`` samples."""
    series = [
        (metric, make_labelset({"instance": f"node-{i // 50:04d}:9100", "job": "node", "mode": f"m{i % 50}"}))
        for i in range(n_series)
    ]
    idx = np.repeat(np.arange(n_series, dtype=np.int64), per_series)
    rng = np.random.default_rng(2)
    bodies = []
    for b in range(n_bodies):
        ts = (t0 + (b * per_series + np.tile(np.arange(per_series), n_series)) * 15) * NS
        bodies.append(encode_write_request(Batch(series, idx, ts.astype(np.int64), rng.random(len(idx)) * 1e6)))
    return bodies


def panel_bodies(end_s: int) -> list[bytes]:
    """1,000 counter series x 1 day at 10 s as remote write requests of 10 series each."""
    per = 86_400 // PANEL_RES_S
    ts = (end_s - 86_400 + PANEL_RES_S * np.arange(per, dtype=np.int64)) * NS
    rng = np.random.default_rng(3)
    bodies = []
    for first in range(0, PANEL_HOSTS * PANEL_CPUS, 10):
        series = [
            ("x", make_labelset({"host": f"h{i // PANEL_CPUS:03d}", "cpu": str(i % PANEL_CPUS)}))
            for i in range(first, first + 10)
        ]
        values = np.cumsum(rng.integers(0, 1000, (10, per)), axis=1).astype(np.float64).ravel()
        idx = np.repeat(np.arange(10, dtype=np.int64), per)
        bodies.append(encode_write_request(Batch(series, idx, np.tile(ts, 10), values)))
    return bodies


# --- servers --------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    flush: str | None = None  # a URL path that makes written data searchable

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _wait_ready(port: int, path: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            asyncio.run(_connection(port, [request("GET", path)], []))
            return
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            time.sleep(0.1)
    raise RuntimeError("server not ready after 60 s")


def start_tsdb() -> Server:
    port = free_port()
    env = {
        **os.environ,
        "RETENTION_SECONDS": "0",
        "DATA_DIR": "",
        "TSDB_MAX_BODY_BYTES": str(256 * 1024 * 1024),
        "TSDB_MAX_POINTS": "0",
        "TSDB_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsdb.cli", "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    _wait_ready(port, "/-/ready", proc)
    return Server("tsdb", port, proc)


def victoria_version(binary: str) -> str:
    """The version ``-version`` prints, else the Debian package's (its build prints none)."""
    out = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if "-v" in out:
        return out.split("-v")[-1].split("-")[0]
    if shutil.which("dpkg-query"):
        query = ["dpkg-query", "-W", "-f=${Version}", "victoria-metrics"]
        pkg = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
        if pkg:
            return pkg.split("+")[0]
    return "(unknown version)"


def start_victoria(binary: str, data: str) -> Server:
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"-storageDataPath={data}",
            f"-httpListenAddr={HOST}:{port}",
            "-retentionPeriod=100y",
            "-influxSkipSingleField",
            "-loggerLevel=ERROR",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_ready(port, "/health", proc)
    return Server("VictoriaMetrics", port, proc, flush="/internal/force_flush")


# --- phases ---------------------------------------------------------------------------------


@dataclass
class Results:
    lp: Phase
    lp_samples: int
    lp_backfill: Phase
    lp_backfill_samples: int
    rw_prom: Phase
    rw_prom_samples: int
    rw_bulk: Phase
    rw_bulk_samples: int
    panel_ms: list[float]
    panel_points: int


def run_all(server: Server, quick: bool, t0: int) -> Results:
    pid = server.proc.pid
    n_lp = 12 if quick else 40
    lp = line_protocol_bodies(n_lp, t0)
    lp_reqs = [request("POST", "/write?db=bench&precision=ns", b) for b in lp]
    lp_phase = run_phase(server.port, spread(lp_reqs), pid)
    backfill = line_protocol_bodies(n_lp, t0 - 86_400, series_per_body=100)  # 100 series x 50 stamps
    backfill_phase = run_phase(
        server.port, spread([request("POST", "/write?db=bench&precision=ns", b) for b in backfill]), pid
    )

    rw_headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                  "X-Prometheus-Remote-Write-Version": "0.1.0"}  # fmt: skip
    n_prom = 40 if quick else 150
    prom = remote_write_bodies(n_prom, 2_000, 1, t0, "node_cpu_seconds_total")
    prom_phase = run_phase(server.port, spread([request("POST", "/api/v1/write", b, rw_headers) for b in prom]), pid)
    n_bulk = 8 if quick else 24
    bulk = remote_write_bodies(n_bulk, 1_000, 100, t0, "node_bulk_total")
    bulk_phase = run_phase(server.port, spread([request("POST", "/api/v1/write", b, rw_headers) for b in bulk]), pid)

    end_s = (int(time.time()) - PANEL_END_AGO_S) // 60 * 60
    panel = panel_bodies(end_s)
    run_phase(server.port, spread([request("POST", "/api/v1/write", b, rw_headers) for b in panel]), pid)
    if server.flush:
        run_phase(server.port, [[request("GET", server.flush)]], pid)
    params = {"query": PANEL, "start": end_s - 86_400, "end": end_s, "step": PANEL_STEP_S}
    if server.name == "VictoriaMetrics":
        params["nocache"] = 1
    query = request("GET", "/api/v1/query_range?" + urlencode(params))
    check = _fetch(server.port, query)
    points = check.count(b'"]')  # every point ends with its quoted value: [1700000000,"1.5"]
    runs = 3 if quick else 7
    latencies = run_phase(server.port, [[query] * (runs + 1)], pid).latencies[1:]  # first run warms caches
    return Results(
        lp_phase,
        n_lp * LINES_PER_BODY * len(CPU_FIELDS),
        backfill_phase,
        n_lp * LINES_PER_BODY * len(CPU_FIELDS),
        prom_phase,
        n_prom * 2_000,
        bulk_phase,
        n_bulk * 100_000,
        [x * 1000 for x in latencies],
        points,
    )


def _fetch(port: int, req: bytes) -> bytes:
    async def main() -> bytes:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(req[:-4] + b"\r\nConnection: close\r\n\r\n" if req.endswith(b"\r\n\r\n") else req)
        data = await reader.read()
        writer.close()
        return data

    return asyncio.run(main())


# --- report ---------------------------------------------------------------------------------


def _rate(samples: int, ph: Phase) -> str:
    return f"{samples / ph.wall:,.0f}/s ({samples / ph.server_cpu:,.0f} per server CPU-s)" if ph.server_cpu else "-"


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="less data per phase")
    args = parser.parse_args(argv)
    t0 = int(time.time()) - 20 * 86_400  # three weeks ago: before the panel's day, no retention

    tsdb = start_tsdb()
    try:
        ours = run_all(tsdb, args.quick, t0)
    finally:
        tsdb.stop()

    binary = shutil.which("victoria-metrics")
    theirs: Results | None = None
    vm_name = "VictoriaMetrics: not installed (apt-get install -y victoria-metrics)"
    if binary:
        vm_name = f"VictoriaMetrics {victoria_version(binary)}"
        with tempfile.TemporaryDirectory(prefix="bench-vm-") as data:
            vm = start_victoria(binary, data)
            try:
                theirs = run_all(vm, args.quick, t0)
            finally:
                vm.stop()

    def cells(pick: str, target: str) -> list[str]:
        ph_o, n_o = getattr(ours, pick), getattr(ours, pick + "_samples")
        row = [_rate(n_o, ph_o)]
        if theirs is None:
            return [*row, "-", "-", target]
        ph_t, n_t = getattr(theirs, pick), getattr(theirs, pick + "_samples")
        return [*row, _rate(n_t, ph_t), _ratio(n_o / ph_o.wall, n_t / ph_t.wall), target]

    med_o = statistics.median(ours.panel_ms)
    panel_row = [f"{med_o:,.0f} ms median (min {min(ours.panel_ms):,.0f}; {ours.panel_points:,} points)"]
    if theirs is None:
        panel_row += ["-", "-"]
    else:
        med_t = statistics.median(theirs.panel_ms)
        panel_row += [f"{med_t:,.0f} ms median (min {min(theirs.panel_ms):,.0f}; {theirs.panel_points:,} points)",
                      f"{med_o / med_t:.1f}x the time"]  # fmt: skip
    print_table(
        ["measurement", "tsdb", vm_name, "tsdb / VM", "target"],
        [
            ["line protocol /write, 5,000 lines x 10 fields per body, 4 conns", *cells("lp", ">= 1,000,000/s")],
            ["  same, backfill shape (100 series x 50 timestamps per body)", *cells("lp_backfill", ">= 1,000,000/s")],
            [
                "remote write, Prometheus batches (2,000 series x 1 sample), 4 conns",
                *cells("rw_prom", ">= 1,000,000/s"),
            ],
            ["remote write, bulk (1,000 series x 100 samples), 4 conns", *cells("rw_bulk", ">= 1,000,000/s")],
            [f"query_range {PANEL}, 1,000 series x 1 day @10 s, step 60 s", *panel_row, "<= 200 ms"],
        ],
    )


if __name__ == "__main__":
    main()
