"""The Prometheus HTTP API's JSON envelopes, byte for byte as Prometheus 2.x writes them.

Pure functions for the server's ``/api/v1/*`` routes::

    {"status":"success","data":{"resultType":"matrix","result":[{"metric":{...},"values":[[1700000000,"1"]]}]}}
    {"status":"error","errorType":"bad_data","error":"..."}

Encoding rules copied from Prometheus (``web/api/v1`` and ``util/jsonutil``):

* sample values are JSON strings: shortest round-trip digits, positional for
  ``1e-6 <= |v| < 1e21`` and exponent form (``1e-07``, ``1e+21``) outside, ``"NaN"``,
  ``"+Inf"``, ``"-Inf"``;
* timestamps are JSON numbers in seconds with the milliseconds written as three digits when
  not zero (``1700000000.500``); tsdb's finer nanoseconds, if any, follow as up to nine digits;
* strings are escaped like Go's encoding/json (``<``, ``>``, ``&``, U+2028/9 as ``\\u....``);
* label maps are sorted by name; envelope fields come in Prometheus's order (status, data,
  errorType, error, warnings) and empty ones are left out.

HTTP status per ``errorType`` is ``STATUS_BY_ERROR_TYPE`` (bad_data 400, execution 422,
canceled 499, timeout 503, unavailable 503, internal 500, not_found 404).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tsdb.errors import (
    InvalidInputError,
    LimitExceededError,
    StorageError,
    TSDBError,
    UnsupportedError,
)
from tsdb.query.promql.errors import QueryExecutionError
from tsdb.query.promql.values import InstantVector, Labels, Matrix, QueryResult, Scalar, String

__all__ = [
    "STATUS_BY_ERROR_TYPE",
    "error_body",
    "error_for_exception",
    "error_type_of",
    "format_timestamp",
    "format_value",
    "query_data",
    "query_success_body",
    "success_body",
    "to_json",
]

#: HTTP status Prometheus answers for each ``errorType``.
STATUS_BY_ERROR_TYPE: dict[str, int] = {
    "bad_data": 400,
    "execution": 422,
    "canceled": 499,
    "timeout": 503,
    "unavailable": 503,
    "internal": 500,
    "not_found": 404,
}

_ESCAPE_RE = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029]')
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(m: re.Match[str]) -> str:
    c = m.group(0)
    return _SHORT_ESCAPES.get(c) or f"\\u{ord(c):04x}"


def _json_string(s: str) -> str:
    """A JSON string literal escaped as Go's encoding/json escapes it (HTML-safe)."""
    return '"' + _ESCAPE_RE.sub(_escape_char, s) + '"'


def format_value(v: float) -> str:
    """A sample value as Prometheus writes it (without the surrounding quotes)."""
    if v != v:
        return "NaN"
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    a = abs(v)
    text = repr(float(v))
    if a == 0 or 1e-6 <= a < 1e21:
        if "e" in text:  # Python switches to exponents earlier than Go's 'f' format does
            return np.format_float_positional(v, unique=True, trim="-")
        return text[:-2] if text.endswith(".0") else text
    return text  # Python's shortest exponent form matches Go's: 1e-07, 1.5e+21


def format_timestamp(ns: int) -> str:
    """A timestamp (int ns) as the JSON number of seconds Prometheus writes."""
    ns = int(ns)
    sign = "-" if ns < 0 else ""
    sec, rest = divmod(abs(ns), 1_000_000_000)
    if rest == 0:
        return f"{sign}{sec}"
    if rest % 1_000_000 == 0:
        return f"{sign}{sec}.{rest // 1_000_000:03d}"
    return f"{sign}{sec}." + f"{rest:09d}".rstrip("0")


def _metric(labels: Labels) -> str:
    return "{" + ",".join(f"{_json_string(n)}:{_json_string(v)}" for n, v in sorted(labels)) + "}"


def _point(ts: str, v: float) -> str:
    return f'[{ts},"{format_value(v)}"]'


def query_data(result: QueryResult) -> str:
    """The ``data`` object of a query answer: ``{"resultType":...,"result":...}``."""
    if isinstance(result, Scalar):
        return '{"resultType":"scalar","result":' + _point(format_timestamp(result.timestamp_ns), result.value) + "}"
    if isinstance(result, String):
        ts = format_timestamp(result.timestamp_ns)
        return '{"resultType":"string","result":[' + ts + "," + _json_string(result.value) + "]}"
    if isinstance(result, InstantVector):
        ts = format_timestamp(result.timestamp_ns)
        items = (f'{{"metric":{_metric(s.labels)},"value":{_point(ts, s.value)}}}' for s in result.samples)
        return '{"resultType":"vector","result":[' + ",".join(items) + "]}"
    if isinstance(result, Matrix):
        ts_cache: dict[int, str] = {}
        parts = []
        for s in result.series:
            points = []
            for t, v in zip(s.timestamps.tolist(), s.values.tolist(), strict=True):
                text = ts_cache.get(t)
                if text is None:
                    text = ts_cache[t] = format_timestamp(t)
                points.append(_point(text, v))
            parts.append(f'{{"metric":{_metric(s.labels)},"values":[' + ",".join(points) + "]}")
        return '{"resultType":"matrix","result":[' + ",".join(parts) + "]}"
    raise TypeError(f"not a query result: {type(result).__name__}")


def to_json(obj: Any) -> str:
    """Encode plain data (dict, list, str, int, float, bool, None) as compact JSON with Go's
    string escaping; dict keys keep their order."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, str):
        return _json_string(obj)
    if isinstance(obj, (int, np.integer)):
        return str(int(obj))
    if isinstance(obj, (float, np.floating)):
        if not math.isfinite(obj):
            raise ValueError(f"JSON cannot hold the number {obj!r}; encode sample values with format_value")
        return format_value(float(obj))
    if isinstance(obj, Mapping):
        return "{" + ",".join(f"{_json_string(str(k))}:{to_json(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(to_json(v) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def _envelope(status: str, data: str | None, warnings: Sequence[str] | None, extra: str = "") -> bytes:
    out = '{"status":' + _json_string(status)
    if data is not None:
        out += ',"data":' + data
    out += extra
    if warnings:
        out += ',"warnings":' + to_json(list(warnings))
    return (out + "}").encode()


def success_body(data: Any, warnings: Iterable[str] | None = None) -> bytes:
    """``{"status":"success","data":...}`` for any plain data (label names, series lists...)."""
    return _envelope("success", to_json(data), list(warnings or ()))


def query_success_body(result: QueryResult, warnings: Iterable[str] | None = None) -> bytes:
    """The body of a successful ``/api/v1/query`` or ``/api/v1/query_range`` answer."""
    return _envelope("success", query_data(result), list(warnings or ()))


def error_body(error_type: str, message: str) -> bytes:
    """``{"status":"error","errorType":...,"error":...}``; ``error_type`` must be a Prometheus one."""
    if error_type not in STATUS_BY_ERROR_TYPE:
        raise ValueError(f"unknown Prometheus errorType {error_type!r}: expected one of {sorted(STATUS_BY_ERROR_TYPE)}")
    extra = ',"errorType":' + _json_string(error_type) + ',"error":' + _json_string(message)
    return _envelope("error", None, None, extra)


def error_type_of(exc: BaseException) -> str:
    """The Prometheus ``errorType`` for an exception raised while answering a query."""
    if isinstance(exc, (QueryExecutionError, UnsupportedError, LimitExceededError)):
        return "execution"  # the query was well formed but could not be answered: HTTP 422
    if isinstance(exc, InvalidInputError):
        return "bad_data"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, StorageError):
        return "unavailable"
    return "internal"


def error_for_exception(exc: BaseException) -> tuple[int, bytes]:
    """``(http_status, body)`` for an exception, with Prometheus's error type and status code."""
    error_type = error_type_of(exc)
    message = exc.message if isinstance(exc, TSDBError) else str(exc) or type(exc).__name__
    return STATUS_BY_ERROR_TYPE[error_type], error_body(error_type, message)
