"""docker-compose.yml, checked without Docker: services, ports, the spec's settings (and that
tsdb really accepts them), volumes, healthchecks that work, and depends_on in the right direction."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_util import (
    COMPOSE_FILE,
    DASHBOARD_PROVIDERS_FILE,
    PROM_CONFIG,
    REPO,
    ServerProcess,
    child_env,
    free_port,
    load_yaml,
    start_server,
)

from tsdb.settings import load_settings

#: The spec: services and the host ports users open.
SPEC_PORTS = {"tsdb": 8000, "prometheus": 9090, "grafana": 3000}
#: The spec's settings for the tsdb service.
SPEC_ENV = {"CHUNK_SIZE": "500", "RETENTION_SECONDS": "60", "NUM_SHARDS": "4"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _ports(service: dict[str, Any]) -> dict[int, int]:
    """Published ports as {host port: container port} (short and long syntax)."""
    out = {}
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out[int(p["published"])] = int(p["target"])
        else:
            parts = str(p).split("/")[0].split(":")
            out[int(parts[-2])] = int(parts[-1])
    return out


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Volumes as {target: source} (short and long syntax; ':ro' etc. dropped)."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            out[v["target"]] = v["source"]
        else:
            source, target = str(v).split(":")[:2]
            out[target] = source
    return out


def _healthcheck_argv(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD", f"use the exec form ['CMD', ...], got {test!r}"
    return [str(a) for a in test[1:]]


def test_services_and_ports_are_the_specs(services: dict[str, Any]) -> None:
    assert set(services) == set(SPEC_PORTS)
    for name, port in SPEC_PORTS.items():
        assert _ports(services[name]) == {port: port}, name


def test_images(services: dict[str, Any]) -> None:
    assert services["tsdb"]["build"] in (".", {"context": "."})
    assert services["prometheus"]["image"].split(":")[0] == "prom/prometheus"
    assert services["grafana"]["image"].split(":")[0] == "grafana/grafana"


def test_tsdb_env_has_the_spec_values_and_tsdb_accepts_them(services: dict[str, Any], tmp_path: Path) -> None:
    env = _env(services["tsdb"])
    assert {k: env[k] for k in SPEC_ENV} == SPEC_ENV
    assert env["ROLLUPS"], "rollup tiers keep history once RETENTION_SECONDS drops raw samples"
    settings = load_settings({**env, "DATA_DIR": str(tmp_path / "data")})
    assert (settings.chunk_size, settings.retention_seconds, settings.num_shards) == (500, 60, 4)
    # The engine opens with these settings, rollups included, as `tsdb serve` would.
    from tsdb.server.app import open_db

    db = open_db(settings)
    try:
        assert db.settings.rollups == env["ROLLUPS"]
        assert (db.settings.chunk_size, db.settings.num_shards) == (500, 4)
    finally:
        db.close()


def test_tsdb_data_dir_is_on_a_named_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    data_dir = _env(services["tsdb"])["DATA_DIR"]
    source = _mounts(services["tsdb"])[data_dir]
    assert source in (compose.get("volumes") or {}), f"{source} is not a named volume"


def test_prometheus_runs_the_repository_config(services: dict[str, Any], compose: dict[str, Any]) -> None:
    svc = services["prometheus"]
    flags = dict(arg.split("=", 1) for arg in svc["command"] if "=" in arg)
    mounts = _mounts(svc)
    assert (REPO / mounts[flags["--config.file"]]).resolve() == PROM_CONFIG
    assert mounts[flags["--storage.tsdb.path"]] in compose["volumes"]


def test_grafana_login_and_provisioning(services: dict[str, Any]) -> None:
    svc = services["grafana"]
    env = _env(svc)
    assert env["GF_SECURITY_ADMIN_USER"] == "admin"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "admin"
    mounts = _mounts(svc)
    assert (REPO / mounts["/etc/grafana/provisioning"]).resolve() == REPO / "deploy" / "grafana" / "provisioning"
    # The dashboards directory is mounted where the provider reads it.
    provider_paths = {p["options"]["path"] for p in load_yaml(DASHBOARD_PROVIDERS_FILE)["providers"]}
    assert len(provider_paths) == 1
    (path,) = provider_paths
    assert (REPO / mounts[path]).resolve() == REPO / "deploy" / "grafana" / "dashboards"
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home.startswith(path + "/")
        assert (REPO / mounts[path] / home.removeprefix(path + "/")).is_file()


def test_bind_mount_sources_exist(services: dict[str, Any], compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for target, source in _mounts(svc).items():
            if source not in named:
                assert (REPO / source).exists(), f"{name}: {source} (mounted at {target}) is missing"


def test_every_service_has_an_exec_form_healthcheck(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        assert _healthcheck_argv(svc), name
        assert {"interval", "timeout", "retries"} <= set(svc["healthcheck"]), name
    assert "/-/healthy" in " ".join(_healthcheck_argv(services["tsdb"]))
    assert any(p in " ".join(_healthcheck_argv(services["prometheus"])) for p in ("/-/ready", "/-/healthy"))
    assert "/api/health" in " ".join(_healthcheck_argv(services["grafana"]))


def test_depends_on_waits_for_healthy_upstreams(services: dict[str, Any]) -> None:
    def deps(name: str) -> dict[str, str]:
        raw = services[name].get("depends_on") or {}
        assert isinstance(raw, dict), f"{name}: use the long depends_on form with conditions"
        return {dep: spec["condition"] for dep, spec in raw.items()}

    assert deps("tsdb") == {}
    assert deps("prometheus") == {"tsdb": "service_healthy"}  # it scrapes and remote-writes into tsdb
    assert deps("grafana") == {"tsdb": "service_healthy", "prometheus": "service_healthy"}


def test_prometheus_targets_are_compose_services() -> None:
    config = load_yaml(PROM_CONFIG)
    targets = {
        job["job_name"]: t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    assert targets == {"tsdb": f"tsdb:{SPEC_PORTS['tsdb']}", "prometheus": f"localhost:{SPEC_PORTS['prometheus']}"}
    assert [rw["url"] for rw in config["remote_write"]] == [f"http://tsdb:{SPEC_PORTS['tsdb']}/api/v1/write"]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("compose-hc"))
    yield server
    server.stop()


def _run_healthcheck(argv: list[str], port: int) -> int:
    """Run a healthcheck command aimed at ``port`` instead of the container's 8000."""
    assert argv[0] == "python"
    argv = [sys.executable, *(a.replace(":8000", f":{port}") for a in argv[1:])]
    return subprocess.run(argv, env=child_env(), capture_output=True, timeout=30).returncode


def test_tsdb_healthcheck_command_probes_a_real_server(services: dict[str, Any], live_server: ServerProcess) -> None:
    argv = _healthcheck_argv(services["tsdb"])
    port = int(live_server.url.rsplit(":", 1)[1])
    assert _run_healthcheck(argv, port) == 0
    assert _run_healthcheck(argv, free_port()) != 0  # nothing listening: unhealthy
