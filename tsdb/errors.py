"""The exception tree of tsdb: every error the package raises on purpose.

    TSDBError
    ├── InvalidInputError (also ValueError)        bad user input; HTTP 400/422, nothing stored
    │   ├── InvalidNameError                       metric or label name breaks Prometheus rules
    │   ├── InvalidTimestampError                  unparseable, out of range, too old, too far ahead
    │   ├── InvalidValueError                      non-numeric, boolean or non-finite sample value
    │   └── InvalidQueryError                      unknown aggregation, start > end, width <= 0, ...
    ├── LimitExceededError                         a configured limit (series, points, labels) reached
    ├── UnsupportedError                           valid request we do not implement (HTTP 422)
    └── StorageError                               disk trouble; HTTP 5xx
        ├── DiskFullError                          ENOSPC; HTTP 507
        ├── CorruptionError                        a file failed its checksum or grammar
        └── DataDirLockedError                     another process owns the data directory

Every error carries ``field`` (which input was wrong, or None) so the HTTP layer can name it,
and every message states the offending value and what was expected.
"""

from __future__ import annotations

__all__ = [
    "CorruptionError",
    "DataDirLockedError",
    "DiskFullError",
    "InvalidInputError",
    "InvalidNameError",
    "InvalidQueryError",
    "InvalidTimestampError",
    "InvalidValueError",
    "LimitExceededError",
    "StorageError",
    "TSDBError",
    "UnsupportedError",
]


class TSDBError(Exception):
    """Base of every tsdb error; ``field`` names the offending input when there is one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInputError(TSDBError, ValueError):
    """The caller sent something we cannot store or answer; nothing was changed."""


class InvalidNameError(InvalidInputError):
    """A metric or label name breaks the Prometheus naming rules or a length limit."""


class InvalidTimestampError(InvalidInputError):
    """A timestamp could not be parsed, or lies outside the accepted window."""


class InvalidValueError(InvalidInputError):
    """A sample value is not a finite real number (booleans and strings included)."""


class InvalidQueryError(InvalidInputError):
    """A query is malformed: unknown aggregation, start after end, non-positive width, ..."""


class LimitExceededError(TSDBError):
    """A configured limit (max series, max points in a result, ...) would be exceeded."""


class UnsupportedError(TSDBError):
    """The request is well formed but asks for something tsdb does not implement."""


class StorageError(TSDBError):
    """The disk layer failed; acknowledged data is still safe, this write was not applied."""


class DiskFullError(StorageError):
    """The data directory's file system is full (ENOSPC)."""


class CorruptionError(StorageError):
    """A file on disk failed its checksum or grammar; ``path`` and ``offset`` locate it."""

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset


class DataDirLockedError(StorageError):
    """Another process holds the lock file of the data directory."""
