"""A real ``tsdb serve`` subprocess on 127.0.0.1, shared by the integration test packages."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``python -m tsdb.cli serve`` on loopback."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    token: str | None = None
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, *, auth: bool = True, **kw: object) -> httpx.Client:
        """An httpx client for this server (closed by ``stop``); sends the token when ``auth``."""
        headers = {"Authorization": f"Bearer {self.token}"} if (auth and self.token) else {}
        c = httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kw)  # type: ignore[arg-type]
        self._clients.append(c)
        return c

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit code (SIGKILL after ``timeout`` seconds)."""
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


def spawn_server(
    workdir: Path,
    env: Mapping[str, str],
    args: tuple[str, ...] = (),
    *,
    timeout: float = 30.0,
    log_path: Path | None = None,
) -> ServerProcess:
    """Start ``tsdb serve`` on a free port with ``env`` (complete) in ``workdir``; wait until
    ``/-/ready`` answers 200, or raise with the server's log. Output goes to ``log_path``
    (appended, so restarts share one log) or a new ``tsdb-<port>.log`` in ``workdir``."""
    port = free_port()
    log_path = workdir / f"tsdb-{port}.log" if log_path is None else log_path
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tsdb.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=workdir,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log_path, token=env.get("TSDB_AUTH_TOKEN"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tsdb serve exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + "/-/ready", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"tsdb serve not ready after {timeout} s:\n{server.log()}")
