"""deploy/prometheus/prometheus.yml: valid for promtool, consistent with Grafana, and pointing
at routes tsdb really serves."""

from __future__ import annotations

import subprocess
from typing import Any
from urllib.parse import urlsplit

import pytest
from deploy_util import DATASOURCES_FILE, PROM_CONFIG, load_yaml, require_tool

from tsdb.server.app import create_app


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return load_yaml(PROM_CONFIG)


@pytest.mark.interop
def test_promtool_check_config_passes() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, "check", "config", str(PROM_CONFIG)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_scrapes_tsdb_and_itself_and_remote_writes_into_tsdb(config: dict[str, Any]) -> None:
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"tsdb", "prometheus"}
    (remote,) = config["remote_write"]
    assert urlsplit(remote["url"]).netloc == jobs["tsdb"]["static_configs"][0]["targets"][0]


def test_tsdb_serves_the_scrape_and_remote_write_paths(config: dict[str, Any]) -> None:
    """The metrics path Prometheus scrapes and the remote-write URL are real routes of the app."""
    # From the OpenAPI document: FastAPI >= 0.16x nests included routers, so app.routes no
    # longer lists every route flat.
    paths = create_app().openapi()["paths"]
    routes = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    tsdb_job = next(job for job in config["scrape_configs"] if job["job_name"] == "tsdb")
    assert ("GET", tsdb_job.get("metrics_path", "/metrics")) in routes
    assert ("POST", urlsplit(config["remote_write"][0]["url"]).path) in routes


def test_grafana_scrape_interval_matches(config: dict[str, Any]) -> None:
    """Grafana computes $__rate_interval from the data sources' timeInterval: it must be the scrape interval."""
    interval = config["global"]["scrape_interval"]
    for ds in load_yaml(DATASOURCES_FILE)["datasources"]:
        assert ds["jsonData"]["timeInterval"] == interval, ds["name"]
    assert all("scrape_interval" not in job for job in config["scrape_configs"])
