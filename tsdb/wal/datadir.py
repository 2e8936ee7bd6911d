"""Data directory: layout, the process lock, OS error mapping and the file-operation seam.

Layout (every name is built from integer ids, never from user strings)::

    DATA_DIR/
      LOCK                       flock'd by the owning process; holds its PID (text)
      TSDB_DATADIR               "format=1" and "num_shards=N" (text, written atomically)
      shard-000/wal/00000001.seg WAL segments of shard 0 (see FORMAT.md)
      snapshots/shard-000/00000003.snap
                                 snapshots of shard 0

OS errors are mapped once, here: ENOSPC/EDQUOT -> DiskFullError; EACCES/EPERM, EROFS, ENOENT and
anything else -> StorageError with a message naming the action, the path and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tsdb.errors import DataDirLockedError, DiskFullError, StorageError

__all__ = [
    "DATADIR_FORMAT",
    "DATADIR_META",
    "MAX_SHARDS",
    "OS_FILE_OPS",
    "DataDir",
    "FileOps",
    "fsync_dir",
    "make_dirs",
    "storage_error",
    "storage_errors",
    "write_all",
    "write_file_atomically",
]

#: Version of the directory layout written to TSDB_DATADIR.
DATADIR_FORMAT: Final = 1
_LOCK_NAME: Final = "LOCK"
#: Name of the file recording the layout version and shard count.
DATADIR_META: Final = "TSDB_DATADIR"
#: Shard ids are formatted with 3 digits; more than this many shards is not a sane configuration.
MAX_SHARDS: Final = 1000


@dataclass(frozen=True, slots=True)
class FileOps:
    """The system calls the WAL and snapshot writers use; tests swap one to inject faults.

    ``write(fd, data) -> int`` may write less than asked (callers loop); ``fsync(fd)`` and
    ``ftruncate(fd, length)`` as in ``os``. Any may raise OSError.
    """

    write: Callable[[int, bytes | bytearray | memoryview], int] = os.write
    fsync: Callable[[int], None] = os.fsync
    ftruncate: Callable[[int, int], None] = os.ftruncate


OS_FILE_OPS: Final = FileOps()


def storage_error(exc: OSError, action: str, path: str | os.PathLike[str]) -> StorageError:
    """Map an OSError raised while doing ``action`` on ``path`` to the tsdb error tree."""
    code = exc.errno
    where = f"{action} {os.fspath(path)!r}"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"disk full while trying to {where}: free space, then retry", field="data_dir")
    if code in (errno.EACCES, errno.EPERM):
        return StorageError(
            f"permission denied while trying to {where}: the tsdb process needs read/write access",
            field="data_dir",
        )
    if code == errno.EROFS:
        return StorageError(f"read-only file system while trying to {where}: mount it read-write", field="data_dir")
    if code == errno.ENOENT:
        return StorageError(f"missing file or directory while trying to {where}: {exc.strerror}", field="data_dir")
    name = errno.errorcode.get(code or 0, str(code))
    return StorageError(f"I/O error {name} while trying to {where}: {exc.strerror}", field="data_dir")


@contextlib.contextmanager
def storage_errors(action: str, path: str | os.PathLike[str]) -> Iterator[None]:
    """Context manager re-raising any OSError as the mapped StorageError (cause kept)."""
    try:
        yield
    except OSError as exc:
        raise storage_error(exc, action, path) from exc


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so that creations, renames and deletions in it are durable."""
    with storage_errors("fsync directory", path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_dirs(path: Path) -> Path:
    """Create ``path`` and missing ancestors, fsyncing each parent so the new entries survive a
    crash (a segment fsynced inside a directory whose own entry was lost would be lost too)."""
    missing = []
    p = path
    try:
        while not p.is_dir():  # raises for EACCES on a parent (only "does not exist" is False)
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
    except OSError as exc:
        raise storage_error(exc, "look up directory", exc.filename or p) from exc
    for d in reversed(missing):
        with storage_errors("create directory", d):
            d.mkdir(exist_ok=True)
        fsync_dir(d.parent)
    return path


def write_all(
    write: Callable[[int, bytes | bytearray | memoryview], int], fd: int, data: bytes | bytearray | memoryview
) -> None:
    """Call ``write`` until all of ``data`` is written (short writes happen near a full disk)."""
    view = memoryview(data)
    while view:
        n = write(fd, view)
        if n <= 0:  # never expected from a regular file; do not spin
            raise OSError(errno.EIO, f"write returned {n} with {len(view)} bytes left")
        view = view[n:]


def write_file_atomically(path: Path, data: bytes) -> None:
    """Write a small file so readers see the old or the new content, never a mix.

    Temp file in the same directory, fsync, rename over ``path``, fsync the directory.
    """
    tmp = path.with_name(path.name + ".tmp")
    with storage_errors("write", tmp):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(os.write, fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    fsync_dir(path.parent)


def _check_id(kind: str, value: int, limit: int) -> int:
    # Ids become file names: only plain non-negative ints below the limit are accepted.
    if type(value) is not int or not 0 <= value < limit:
        raise StorageError(f"{kind} must be an integer in [0, {limit}), got {value!r}", field=kind)
    return value


class DataDir:
    """An opened, locked data directory; one per process (``open`` refuses a second owner).

    Thread-safe: its methods only compute paths or create directories. ``close`` releases the lock.
    """

    def __init__(self, root: Path, lock_fd: int, num_shards: int) -> None:
        self.root = root
        self.num_shards = num_shards
        self._lock_fd: int | None = lock_fd

    @classmethod
    def open(cls, path: str | os.PathLike[str], num_shards: int | None = None) -> DataDir:
        """Create (if needed) and lock the data directory at ``path``.

        ``num_shards`` is recorded on first use; a later open with a different count raises
        StorageError (series would hash to other shards). ``None`` adopts the recorded count
        (1 for a new directory). Raises DataDirLockedError naming the PID of the owner.
        """
        root = make_dirs(Path(path))
        lock_fd = _acquire_lock(root / _LOCK_NAME)
        try:
            shards = _read_or_write_meta(root, num_shards)
            return cls(root, lock_fd, shards)
        except BaseException:
            os.close(lock_fd)
            raise

    def shard_dir(self, shard: int) -> Path:
        """``DATA_DIR/shard-NNN`` (not created)."""
        return self.root / f"shard-{_check_id('shard', shard, MAX_SHARDS):03d}"

    def wal_dir(self, shard: int) -> Path:
        """``DATA_DIR/shard-NNN/wal``, created if missing."""
        return make_dirs(self.shard_dir(shard) / "wal")

    def snapshot_dir(self, shard: int) -> Path:
        """``DATA_DIR/snapshots/shard-NNN``, created if missing."""
        return make_dirs(self.root / "snapshots" / f"shard-{_check_id('shard', shard, MAX_SHARDS):03d}")

    def close(self) -> None:
        """Release the lock (idempotent). The LOCK file stays; its PID is stale but harmless."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def __enter__(self) -> DataDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _acquire_lock(path: Path) -> int:
    with storage_errors("open lock file", path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        raise DataDirLockedError(
            f"data directory {str(path.parent)!r} is in use by process {holder} (lock file {str(path)!r}); "
            "stop that process or choose another data directory",
            field="data_dir",
        ) from None
    except OSError as exc:
        os.close(fd)
        raise storage_error(exc, "lock", path) from exc
    with storage_errors("write lock file", path):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return f"PID {text}" if text.isdigit() else "unknown"


def _read_or_write_meta(root: Path, num_shards: int | None) -> int:
    path = root / DATADIR_META
    if num_shards is not None:
        _check_id("num_shards", num_shards, MAX_SHARDS + 1)
        if num_shards == 0:
            raise StorageError("num_shards must be at least 1, got 0", field="num_shards")
    with storage_errors("read", path):
        text = path.read_text("ascii") if path.exists() else None
    if text is None:
        shards = num_shards or 1
        write_file_atomically(path, f"format={DATADIR_FORMAT}\nnum_shards={shards}\n".encode())
        return shards
    meta = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if meta.get("format") != str(DATADIR_FORMAT) or not meta.get("num_shards", "").isdigit():
        raise StorageError(
            f"{str(path)!r} has format {meta.get('format')!r}; this tsdb reads format {DATADIR_FORMAT}",
            field="data_dir",
        )
    stored = int(meta["num_shards"])
    if num_shards is not None and num_shards != stored:
        raise StorageError(
            f"data directory {str(root)!r} was created with num_shards={stored}, got num_shards={num_shards}; "
            "start with the recorded count",
            field="num_shards",
        )
    return stored
