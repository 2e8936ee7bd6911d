"""Fixtures that boot the real server: ``python -m tsdb.cli serve`` as a subprocess on a free
loopback port, talked to with httpx (as VictoriaMetrics' apptest boots real binaries)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

STARTUP_TIMEOUT_S = 90.0  # generous: CI machines can be slow to import numpy and friends


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``tsdb serve`` subprocess."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    token: str | None = None
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, *, auth: bool = True, **kw: object) -> httpx.Client:
        """An httpx client for this server (closed at teardown); sends the token when ``auth``."""
        headers = {"Authorization": f"Bearer {self.token}"} if (auth and self.token) else {}
        c = httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kw)  # type: ignore[arg-type]
        self._clients.append(c)
        return c

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit code (killing it after ``timeout``)."""
        for c in self._clients:
            c.close()
        self._clients.clear()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def launch(workdir: Path, *args: str, **env: str) -> ServerProcess:
    """Start a server in ``workdir`` with extra CLI ``args`` and environment; wait until ready."""
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TSDB_")}
    full_env.update({"DATA_DIR": str(workdir / "data"), "RETENTION_SECONDS": "0", "PYTHONUNBUFFERED": "1"})
    full_env.update(env)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tsdb.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=workdir,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log_path, token=env.get("TSDB_AUTH_TOKEN"))
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + "/-/ready", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server not ready after {STARTUP_TIMEOUT_S} s:\n{server.log()}")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers for one test; all are stopped at teardown."""
    started: list[ServerProcess] = []

    def start(*args: str, **env: str) -> ServerProcess:
        workdir = tmp_path / f"s{len(started)}"
        workdir.mkdir()
        s = launch(workdir, *args, **env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by a test module: no retention, small limits so limit tests are cheap."""
    s = launch(
        tmp_path_factory.mktemp("server"),
        TSDB_MAX_POINTS="5000",
        TSDB_PAGE_SIZE="1000",
        TSDB_MAX_BODY_BYTES="262144",
        TSDB_MAX_SERIES="500",
    )
    yield s
    s.stop()


@pytest.fixture
def http(server: ServerProcess) -> httpx.Client:
    """A client for the module's shared server."""
    return server.client()


#: A base time safely inside the default future tolerance and clear of any retention.
BASE = int(time.time()) - 7 * 86400


@pytest.fixture
def base() -> int:
    """Epoch seconds a week ago: tests write at BASE + offsets."""
    return BASE
