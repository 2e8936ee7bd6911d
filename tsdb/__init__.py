"""tsdb: a fast, lightweight time series database.

Embedded use::

    from tsdb import TSDB
    db = TSDB()
    db.write("cpu", 1700000000, 0.5, labels={"host": "a"})
    db.query("cpu", 1700000000, 1700003600, agg="avg", downsample=60)
"""

from tsdb._types import Batch
from tsdb.engine import TSDB, EngineSettings, WriteResult
from tsdb.errors import (
    CorruptionError,
    DataDirLockedError,
    DiskFullError,
    InvalidInputError,
    InvalidNameError,
    InvalidQueryError,
    InvalidTimestampError,
    InvalidValueError,
    LimitExceededError,
    StorageError,
    TSDBError,
    UnsupportedError,
)
from tsdb.labels import Limits, Matcher, MatchOp
from tsdb.query.result import QueryResult, SeriesResult
from tsdb.storage.interface import Querier, SeriesData

__all__ = [
    "Batch",
    "CorruptionError",
    "DataDirLockedError",
    "DiskFullError",
    "EngineSettings",
    "InvalidInputError",
    "InvalidNameError",
    "InvalidQueryError",
    "InvalidTimestampError",
    "InvalidValueError",
    "LimitExceededError",
    "Limits",
    "MatchOp",
    "Matcher",
    "Querier",
    "QueryResult",
    "SeriesData",
    "SeriesResult",
    "StorageError",
    "TSDB",
    "TSDBError",
    "UnsupportedError",
    "WriteResult",
]

__version__ = "0.1.0"
