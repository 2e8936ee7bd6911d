"""ServerSettings: environment and flags, defaults, validation with one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tsdb.settings import SPECS, ServerSettings, SettingsError, load_settings


def test_spec_defaults() -> None:
    s = load_settings({})
    assert (s.chunk_size, s.retention_seconds, s.num_shards) == (500, 60.0, 4)
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.auth_token is None and s.max_series is None
    assert s == ServerSettings()


def test_env_then_flags_override() -> None:
    env = {"CHUNK_SIZE": "1000", "TSDB_PORT": "9000", "RETENTION_SECONDS": "0", "TSDB_MAX_SERIES": "10"}
    s = load_settings(env, {"port": "9100", "chunk_size": None})
    assert (s.chunk_size, s.port, s.retention_seconds, s.max_series) == (1000, 9100, 0.0, 10)
    assert load_settings({"TSDB_MAX_SERIES": "0", "TSDB_MAX_POINTS": "0"}).max_points is None
    assert load_settings({"TSDB_FUTURE_TOLERANCE_SECONDS": "off"}).future_tolerance_seconds is None
    assert load_settings({"DATA_DIR": ""}).data_dir is None
    assert load_settings({"TSDB_ACCESS_LOG": "yes"}).access_log is True
    assert load_settings({"TSDB_LOG_LEVEL": "WARNING"}).log_level == "warning"


def test_engine_settings_carry_the_values() -> None:
    s = load_settings({"CHUNK_SIZE": "64", "NUM_SHARDS": "2", "TSDB_MAX_LABELS": "5", "TSDB_MAX_POINTS": "7"})
    e = s.engine_settings()
    assert (e.chunk_size, e.num_shards, e.limits.max_labels, e.max_points) == (64, 2, 5, 7)
    assert e.retention_seconds == 60.0


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"CHUNK_SIZE": "abc"}, "CHUNK_SIZE"),
        ({"CHUNK_SIZE": "1"}, "CHUNK_SIZE"),
        ({"CHUNK_SIZE": "2.5"}, "CHUNK_SIZE"),
        ({"RETENTION_SECONDS": "-1"}, "RETENTION_SECONDS"),
        ({"RETENTION_SECONDS": "nan"}, "RETENTION_SECONDS"),
        ({"NUM_SHARDS": "0"}, "NUM_SHARDS"),
        ({"TSDB_PORT": "70000"}, "TSDB_PORT"),
        ({"TSDB_MAX_BODY_BYTES": "10"}, "TSDB_MAX_BODY_BYTES"),
        ({"TSDB_ACCESS_LOG": "maybe"}, "TSDB_ACCESS_LOG"),
        ({"TSDB_LOG_LEVEL": "loud"}, "TSDB_LOG_LEVEL"),
        ({"TSDB_DEFAULT_METRIC": "9bad"}, "TSDB_DEFAULT_METRIC"),
        ({"TSDB_MAINTENANCE_INTERVAL": "0"}, "TSDB_MAINTENANCE_INTERVAL"),
    ],
)
def test_invalid_values_name_the_variable_and_range(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert info.value.field == name
    assert name in info.value.message and "\n" not in info.value.message
    assert "expected" in info.value.message or "must" in info.value.message


def test_every_setting_has_a_distinct_env_var_and_flag() -> None:
    assert len({s.env for s in SPECS}) == len(SPECS)
    assert {s.field for s in SPECS} == set(ServerSettings.__dataclass_fields__)


def test_settings_are_frozen() -> None:
    s = ServerSettings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_public_dict_masks_the_token() -> None:
    assert ServerSettings(auth_token="x").public_dict()["auth_token"] == "***"


@pytest.mark.parametrize(
    ("env", "args", "needle"),
    [
        ({"CHUNK_SIZE": "lots"}, [], "CHUNK_SIZE"),
        ({}, ["--num-shards", "0"], "NUM_SHARDS"),
        ({"RETENTION_SECONDS": "-5"}, [], "RETENTION_SECONDS"),
    ],
)
def test_bad_setting_stops_startup_with_one_line(env: dict[str, str], args: list[str], needle: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tsdb.cli", "serve", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr


def test_serve_help_documents_every_setting() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tsdb.cli", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())  # argparse wraps lines
    for spec in SPECS:
        assert spec.env in text and spec.flag in text


def test_rollups_default_and_validation() -> None:
    from tsdb.settings import ServerSettings, SettingsError

    assert ServerSettings().rollups == "1m:30d,1h:5y"
    with pytest.raises(SettingsError, match="ROLLUPS"):
        ServerSettings(rollups="1m")
