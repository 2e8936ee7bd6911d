"""HTTP benchmark: the real server on loopback, driven by a minimal keep-alive client.

Run: ``python -m bench.bench_http`` (``--quick`` for a shorter run). Bounded: a fixed number
of requests per phase, about 20 s in all on the 2-core reference machine.

The server is ``python -m tsdb.cli serve`` in its own process. The client is a few asyncio
connections speaking HTTP/1.1 over raw sockets with pre-built requests, so that the client's
own cost (an httpx request costs about as much CPU as the server's handling of it) does not
hide the server's. Both share the machine's two cores, as a local agent and server would.

"per server CPU-s" divides the work by the CPU time the server process used (all threads), a
figure that stays meaningful when other processes compete for the cores; "result" is wall time.

Phases (targets from issue 3):
* single-point ``POST /data``, several concurrent connections -> requests/s (>= 3,000)
* ``POST /data`` JSON arrays of 10,000 points -> samples/s (>= 500,000)
* ``POST /api/native/write`` columnar batches -> samples/s (>= 2,000,000)
* ``GET /api/native/query`` 1-minute avg over 1M samples -> latency (<= 150 ms)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import orjson

from bench.table import print_table

HOST = "127.0.0.1"
T0 = int(time.time()) - 30 * 86400  # a month ago: inside any future tolerance, no retention


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def post(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


async def _connection(port: int, requests: Sequence[bytes], latencies: list[float]) -> None:
    """Send ``requests`` one after another on one keep-alive connection; record each latency."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for req in requests:
            began = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
            latencies.append(time.perf_counter() - began)
    finally:
        writer.close()
        await writer.wait_closed()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    """What one phase measured: wall seconds, the server's CPU seconds, request latencies."""

    wall: float
    server_cpu: float
    latencies: list[float]


Connection = Callable[[int, Sequence[bytes], list[float]], Awaitable[None]]


def run_phase(
    port: int, per_connection: Sequence[Sequence[bytes]], server_pid: int, connection: Connection | None = None
) -> Phase:
    """Run one request list per keep-alive connection, all concurrently (``connection``: how
    one connection sends its requests and records latencies; default: this module's)."""
    latencies: list[float] = []
    send = _connection if connection is None else connection

    async def main() -> None:
        await asyncio.gather(*(send(port, reqs, latencies) for reqs in per_connection))

    cpu0 = cpu_seconds(server_pid)
    began = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - began
    return Phase(wall, cpu_seconds(server_pid) - cpu0, latencies)


def single_points(connections: int, per_conn: int) -> list[list[bytes]]:
    out = []
    for c in range(connections):
        reqs = []
        for i in range(per_conn):
            body = {"timestamp": T0 + i, "value": i * 0.5, "metric": "bench_single", "labels": {"conn": str(c)}}
            reqs.append(post("/data", orjson.dumps(body)))
        out.append(reqs)
    return out


def json_arrays(connections: int, per_conn: int, points: int) -> list[list[bytes]]:
    out = []
    for c in range(connections):
        reqs = []
        for r in range(per_conn):
            base = T0 + r * points
            body = [
                {"timestamp": base + i, "value": i * 0.25, "metric": "bench_array", "labels": {"conn": str(c)}}
                for i in range(points)
            ]
            reqs.append(post("/data", orjson.dumps(body)))
        out.append(reqs)
    return out


def columnar(connections: int, per_conn: int, series: int, per_series: int, metric: str) -> list[list[bytes]]:
    out = []
    for c in range(connections):
        reqs = []
        for r in range(per_conn):
            base = T0 + r * per_series
            ts = list(range(base, base + per_series))
            vals = [float(i % 997) * 0.5 for i in range(per_series)]
            blocks = [
                {"metric": metric, "labels": {"conn": str(c), "s": str(s)}, "timestamps": ts, "values": vals}
                for s in range(series)
            ]
            reqs.append(post("/api/native/write", orjson.dumps(blocks)))
        out.append(reqs)
    return out


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RETENTION_SECONDS": "0",
        "DATA_DIR": "",
        "TSDB_FUTURE_TOLERANCE_SECONDS": "off",
        "TSDB_MAX_BODY_BYTES": str(256 * 1024 * 1024),
        "TSDB_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsdb.cli", "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as s:
                s.sendall(get("/-/ready"))
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests per phase")
    args = parser.parse_args(argv)
    scale = 4 if args.quick else 1
    port = free_port()
    proc = start_server(port)
    rows: list[tuple[str, ...]] = []
    pid = proc.pid

    def rate(work: int, ph: Phase, unit: str) -> tuple[str, str]:
        per_cpu = f"{work / ph.server_cpu:,.0f} {unit}" if ph.server_cpu > 0 else "-"
        return f"{work / ph.wall:,.0f} {unit}", per_cpu

    try:
        conns = 8
        per_conn = 2000 // scale
        ph = run_phase(port, single_points(conns, per_conn), pid)
        rows.append(
            (
                f"POST /data single point, {conns} connections",
                *rate(conns * per_conn, ph, "req/s"),
                f"p50 {statistics.median(ph.latencies) * 1e3:.2f} ms",
                ">= 3,000 req/s",
            )
        )

        conns, per_conn, points = 4, 12 // scale, 10_000
        ph = run_phase(port, json_arrays(conns, per_conn, points), pid)
        rows.append(
            (
                f"POST /data JSON arrays of {points:,} points, {conns} conns",
                *rate(conns * per_conn * points, ph, "samples/s"),
                f"p50 {statistics.median(ph.latencies) * 1e3:.1f} ms/request",
                ">= 500,000 samples/s",
            )
        )

        conns, per_conn, series, per_series = 4, 8 // scale, 10, 10_000
        ph = run_phase(port, columnar(conns, per_conn, series, per_series, "bench_columnar"), pid)
        rows.append(
            (
                f"POST /api/native/write columnar, {series * per_series:,} samples/request, {conns} conns",
                *rate(conns * per_conn * series * per_series, ph, "samples/s"),
                f"p50 {statistics.median(ph.latencies) * 1e3:.1f} ms/request",
                ">= 2,000,000 samples/s",
            )
        )

        # 1M samples in one series (1 s apart: 11.6 days), loaded as 10 columnar batches.
        n, batch = 1_000_000, 100_000
        load = [
            post(
                "/api/native/write",
                orjson.dumps(
                    {
                        "metric": "bench_query",
                        "timestamps": list(range(T0 + k, T0 + k + batch)),
                        "values": [float(i % 1000) for i in range(batch)],
                    }
                ),
            )
            for k in range(0, n, batch)
        ]
        run_phase(port, [load], pid)
        q = get(f"/api/native/query?match={quote('bench_query')}&agg=avg&downsample=1m")
        run_phase(port, [[q]], pid)  # warm-up
        ph = run_phase(port, [[q] * 10], pid)
        rows.append(
            (
                "GET /api/native/query 1-minute avg over 1M samples",
                f"{statistics.median(ph.latencies) * 1e3:.1f} ms median",
                f"{ph.server_cpu / 10 * 1e3:.1f} ms CPU/query",
                f"best {min(ph.latencies) * 1e3:.1f} ms ({n // 60 + 1:,} buckets)",
                "<= 150 ms",
            )
        )
    finally:
        proc.terminate()
        proc.wait(30)
    print_table(
        (
            "measurement (loopback; client and server share 2 cores)",
            "result (wall)",
            "per server CPU-s",
            "detail",
            "target",
        ),
        rows,
    )


if __name__ == "__main__":
    main()
