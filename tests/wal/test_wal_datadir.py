"""The data directory: layout from integer ids, the process lock, the recorded shard count."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tsdb.errors import DataDirLockedError, StorageError
from tsdb.wal import DataDir

_HOLDER = """
import sys
from tsdb.wal import DataDir
dd = DataDir.open(sys.argv[1], num_shards=2)
print("locked", flush=True)
sys.stdin.readline()
dd.close()
"""

_CONTENDER = """
import sys
from tsdb.errors import DataDirLockedError
from tsdb.wal import DataDir
try:
    DataDir.open(sys.argv[1])
except DataDirLockedError as exc:
    print(exc.message)
    sys.exit(3)
print("opened")
"""


def test_a_second_process_is_refused_with_the_pid_of_the_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirLockedError) as err:
            DataDir.open(tmp_path)
        assert f"PID {holder.pid}" in err.value.message
        assert str(tmp_path) in err.value.message
        assert err.value.field == "data_dir"
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    with DataDir.open(tmp_path) as dd:  # released: the next process gets it
        assert dd.num_shards == 2


def test_the_refused_process_sees_our_pid(tmp_path: Path) -> None:
    with DataDir.open(tmp_path):
        out = subprocess.run(
            [sys.executable, "-c", _CONTENDER, str(tmp_path)], capture_output=True, text=True, timeout=60
        )
    assert out.returncode == 3
    assert f"PID {os.getpid()}" in out.stdout
    out = subprocess.run([sys.executable, "-c", _CONTENDER, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "opened"


def test_opening_twice_in_one_process_is_refused_too(tmp_path: Path) -> None:
    with DataDir.open(tmp_path), pytest.raises(DataDirLockedError):
        DataDir.open(tmp_path)


def test_layout_is_built_from_integer_ids(tmp_path: Path) -> None:
    with DataDir.open(tmp_path / "data", num_shards=4) as dd:
        assert dd.wal_dir(3) == tmp_path / "data" / "shard-003" / "wal"
        assert dd.snapshot_dir(0) == tmp_path / "data" / "snapshots" / "shard-000"
        assert dd.wal_dir(3).is_dir() and dd.snapshot_dir(0).is_dir()
        assert (tmp_path / "data" / "LOCK").read_text().strip() == str(os.getpid())


@pytest.mark.parametrize("bad", ["../../etc", -1, 1000, True, 1.0])
def test_shard_ids_must_be_small_non_negative_ints(tmp_path: Path, bad: object) -> None:
    with DataDir.open(tmp_path) as dd, pytest.raises(StorageError, match="shard must be an integer") as err:
        dd.wal_dir(bad)  # type: ignore[arg-type]
    assert err.value.field == "shard"


def test_the_shard_count_is_recorded_and_a_different_one_refused(tmp_path: Path) -> None:
    with DataDir.open(tmp_path, num_shards=4):
        pass
    with pytest.raises(StorageError, match="num_shards=4, got num_shards=8") as err:
        DataDir.open(tmp_path, num_shards=8)
    assert err.value.field == "num_shards"
    with DataDir.open(tmp_path) as dd:  # None adopts the recorded count
        assert dd.num_shards == 4
    with DataDir.open(tmp_path, num_shards=4) as dd:  # a refused open released its lock
        assert dd.num_shards == 4


def test_an_unknown_layout_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "TSDB_DATADIR").write_text("format=9\nnum_shards=1\n")
    with pytest.raises(StorageError, match="format '9'"):
        DataDir.open(tmp_path)


def test_a_data_dir_under_a_file_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="create directory"):
        DataDir.open(tmp_path / "file" / "data")
