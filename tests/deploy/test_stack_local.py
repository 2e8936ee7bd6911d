"""The stack for real, minus Docker: scripts/stack_local.sh starts tsdb and the Debian
prometheus with the repository's config (hosts mapped to loopback); Prometheus scrapes tsdb and
itself and remote-writes into tsdb; tsdb then answers `up`, prometheus_* series and the
dashboards' queries. Every wait is bounded; everything listens on 127.0.0.1."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_util import (
    PENDING_METRICS,
    STACK_SCRIPT,
    child_env,
    iter_targets,
    load_dashboards,
    metric_names,
    port_open,
    require_tool,
    substitute,
    wait_for,
)

STARTUP_TIMEOUT_S = 90.0  # both servers ready (the script's own limit is 30 s each)
#: Prometheus's WAL watcher starts shipping a few seconds after start-up; then every 1 s batch.
DATA_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 45.0


def test_help_and_bad_arguments() -> None:
    ok = subprocess.run(["bash", str(STACK_SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "--duration" in ok.stdout
    bad = subprocess.run(["bash", str(STACK_SCRIPT), "--bogus"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--bogus" in bad.stderr


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    tsdb: str
    prometheus: str
    workdir: Path

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def _read_until_ready(proc: subprocess.Popen[bytes], timeout: float) -> list[str]:
    """stdout lines of the script up to its 'stack ready' line (raw fd reads: no buffering
    can hide a line from select)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if sel.select(timeout=0.5):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
                lines = buf.decode(errors="replace").splitlines()
                if any(line.startswith("stack ready") for line in lines):
                    return lines
            elif proc.poll() is not None:
                break
    finally:
        sel.close()
    raise AssertionError(f"stack not ready (exit {proc.poll()}); stdout: {buf.decode(errors='replace')}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    require_tool("prometheus")
    require_tool("promtool")
    workdir = tmp_path / "stack"
    with (tmp_path / "stack.stderr").open("w") as stderr:
        proc = subprocess.Popen(
            ["bash", str(STACK_SCRIPT), "--keep"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=child_env(STACK_DIR=str(workdir)),
            start_new_session=True,  # its own process group, so a failed test can still clean it up
        )
    try:
        lines = _read_until_ready(proc, STARTUP_TIMEOUT_S)
        urls = dict(m.groups() for line in lines if (m := re.match(r"^(tsdb|prometheus)\s+(http://\S+)", line)))
        yield Stack(proc, urls["tsdb"], urls["prometheus"], workdir)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this fixture started
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _get(url: str, **params: Any) -> Any:
    r = httpx.get(url, params=params, timeout=10.0)
    r.raise_for_status()
    return r.json()


def _scrape_health(stack: Stack) -> dict[str, str]:
    targets = _get(stack.prometheus + "/api/v1/targets")["data"]["activeTargets"]
    return {t["labels"]["job"]: t["health"] for t in targets}


def _up_jobs_in_tsdb(stack: Stack) -> set[str]:
    series = _get(stack.tsdb + "/api/native/series", match="up")
    return {s["labels"].get("job", "") for s in series}


def _prometheus_metrics_in_tsdb(stack: Stack) -> list[str]:
    names = _get(stack.tsdb + "/api/native/label/__name__/values")
    return [n for n in names if n.startswith("prometheus_")]


@pytest.mark.interop
@pytest.mark.slow
def test_prometheus_scrapes_tsdb_and_remote_writes_into_it(stack: Stack) -> None:
    # 1. Prometheus scrapes tsdb's /metrics (content negotiation) and itself.
    health = wait_for(
        lambda: (h := _scrape_health(stack)).get("tsdb") == "up" and h.get("prometheus") == "up" and h, DATA_TIMEOUT_S
    )
    assert health, f"targets: {_scrape_health(stack)}\n{stack.log('prometheus')}"

    # 2. What it scrapes arrives in tsdb by remote write: `up` of both jobs, prometheus_* series.
    arrived = wait_for(lambda: _up_jobs_in_tsdb(stack) >= {"tsdb", "prometheus"}, DATA_TIMEOUT_S)
    assert arrived, f"tsdb has up for {_up_jobs_in_tsdb(stack)}; prometheus log:\n{stack.log('prometheus')}"
    assert _prometheus_metrics_in_tsdb(stack)

    # 3. tsdb's Prometheus API answers `up` as Prometheus would.
    result = _get(stack.tsdb + "/api/v1/query", query="up")["data"]["result"]
    assert {r["metric"]["job"]: r["value"][1] for r in result} == {"tsdb": "1", "prometheus": "1"}

    # 4. The dashboards' queries, sent to tsdb, return data from the remote-written series (the
    #    health dashboard reads job="tsdb" metrics, which Prometheus forwarded). Rates need a few
    #    scrapes inside their window, hence the bounded wait.
    wait_for(lambda: not _targets_without_data(stack), DATA_TIMEOUT_S)
    missing = _targets_without_data(stack)
    assert not missing, f"no data in tsdb for {missing}"


def _may_be_empty(expr: str) -> bool:
    """Pending metrics, and the rejected-samples counter: it has no series until a refusal."""
    names = metric_names(expr)
    return bool(names & PENDING_METRICS) or names == {"tsdb_samples_rejected_total"}


def _targets_without_data(stack: Stack) -> list[str]:
    """Ids of dashboard targets tsdb answers with an empty result (errors fail the test)."""
    variables: dict[str, str | list[str]] = {"instance": ".*", "metric": "up", "group_by": ["job"]}
    end = time.time()
    empty = []
    for target in iter_targets(load_dashboards()):
        expr = substitute(target.expr, variables)
        form = {"query": expr, "start": f"{end - 120:.3f}", "end": f"{end:.3f}", "step": "5"}
        r = httpx.post(stack.tsdb + "/api/v1/query_range", data=form, timeout=30.0)
        assert r.status_code == 200 and r.json()["status"] == "success", f"{target.id}: {r.text[:300]}"
        if not r.json()["data"]["result"] and not _may_be_empty(expr):
            empty.append(target.id)
    return empty


@pytest.mark.interop
@pytest.mark.slow
def test_sigterm_stops_both_servers(stack: Stack) -> None:
    assert port_open(stack.tsdb) and port_open(stack.prometheus)
    stack.proc.send_signal(signal.SIGTERM)
    assert stack.proc.wait(STOP_TIMEOUT_S) == 128 + signal.SIGTERM
    assert not port_open(stack.tsdb) and not port_open(stack.prometheus)
    assert "database closed" in stack.log("tsdb")
