"""``tsdb query`` and ``tsdb import`` against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BASE, ServerProcess


def tsdb(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tsdb.cli", *args, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_csv_then_query(server: ServerProcess, tmp_path: Path) -> None:
    csv_file = tmp_path / "data.csv"
    rows = ["timestamp,value,metric,host,dc"]
    for i in range(250):
        rows.append(f"{BASE + i},{i * 0.5},imp_cpu,h{i % 2},{'' if i % 5 else 'eu'}")
    rows.append("2025-05-14T09:00:00Z,7,imp_mem,h0,")
    csv_file.write_text("\n".join(rows) + "\n")
    proc = tsdb(server, "import", str(csv_file), "--batch-size", "100")
    assert proc.returncode == 0, proc.stderr
    assert "imported 251 samples" in proc.stderr
    http = server.client()
    series = {
        json.dumps(s, sort_keys=True)
        for s in http.get("/api/native/series", params={"match": '{__name__=~"imp_.*"}'}).json()
    }
    assert series == {
        json.dumps(s, sort_keys=True)
        for s in [
            {"metric": "imp_cpu", "labels": {"host": "h0"}},
            {"metric": "imp_cpu", "labels": {"host": "h1"}},
            {"metric": "imp_cpu", "labels": {"host": "h0", "dc": "eu"}},
            {"metric": "imp_cpu", "labels": {"host": "h1", "dc": "eu"}},
            {"metric": "imp_mem", "labels": {"host": "h0"}},
        ]
    }
    total = http.get("/api/native/query", params={"match": "imp_cpu", "agg": "sum", "group_by": ""}).json()
    assert total["series"][0]["values"][0] == pytest.approx(sum(i * 0.5 for i in range(250)))

    table = tsdb(server, "query", 'imp_mem{host="h0"}')
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["SERIES", "TIME", "VALUE"]
    assert lines[1].split() == ['imp_mem{host="h0"}', "2025-05-14T09:00:00Z", "7"]
    as_json = tsdb(server, "query", "imp_cpu", "--agg", "count", "--group-by", "", "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["series"][0]["values"] == [250]


def test_import_without_metric_column_uses_flag(server: ServerProcess, tmp_path: Path) -> None:
    csv_file = tmp_path / "plain.csv"
    csv_file.write_text("timestamp,value\n" + "".join(f"{BASE + i},{i}\n" for i in range(10)))
    assert tsdb(server, "import", str(csv_file)).returncode != 0  # no metric anywhere
    proc = tsdb(server, "import", str(csv_file), "--metric", "imp_plain", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    got = server.client().get("/api/native/query", params={"match": "imp_plain", "agg": "count"}).json()
    assert got["series"][0]["values"] == [10]


def test_import_stops_at_bad_rows_with_line_numbers(server: ServerProcess, tmp_path: Path) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text(f"timestamp,value,metric\n{BASE},1,imp_bad\n{BASE + 1},oops,imp_bad\n")
    proc = tsdb(server, "import", str(csv_file))
    assert proc.returncode == 1
    assert "line 3" in proc.stderr and "oops" in proc.stderr
    refused = tmp_path / "refused.csv"
    refused.write_text(f"timestamp,value,metric\n{BASE},1,imp_bad\n{BASE + 1},2,9bad\n")
    proc = tsdb(server, "import", str(refused))
    assert proc.returncode == 1
    assert "lines 2-3 refused (400)" in proc.stderr and "9bad" in proc.stderr
    got = server.client().get("/api/native/series", params={"match": "imp_bad"}).json()
    assert got == []  # batches are atomic


def test_query_reports_server_errors(server: ServerProcess) -> None:
    proc = tsdb(server, "query", "cpu", "--agg", "median")
    assert proc.returncode == 1
    assert "400" in proc.stderr and "median" in proc.stderr
