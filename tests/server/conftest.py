"""Fixtures that boot the real server: ``python -m tsdb.cli serve`` as a subprocess on a free
loopback port, talked to with httpx (as VictoriaMetrics' apptest boots real binaries)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from server_process import ServerProcess, spawn_server

STARTUP_TIMEOUT_S = 90.0  # generous: CI machines can be slow to import numpy and friends


def launch(workdir: Path, *args: str, **env: str) -> ServerProcess:
    """Start a server in ``workdir`` with extra CLI ``args`` and environment; wait until ready."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TSDB_")}
    full_env.update({"DATA_DIR": str(workdir / "data"), "RETENTION_SECONDS": "0", "PYTHONUNBUFFERED": "1"})
    full_env.update(env)
    return spawn_server(workdir, full_env, args, timeout=STARTUP_TIMEOUT_S)


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


_ids = itertools.count()


def unique(prefix: str) -> str:
    """A name (metric or measurement) no other test in the session uses."""
    return f"{prefix}{next(_ids)}"
