"""Time conversions at the edges: everything becomes int64 nanoseconds since the Unix epoch.

Accepted inputs: int/float numbers in an explicit unit (seconds by default; never guessed from
the number's size), ISO 8601 / RFC 3339 strings, ``datetime`` (naive ones are taken as UTC),
``numpy.datetime64`` and pandas Timestamps. Booleans are rejected, not read as 0/1.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tsdb.errors import InvalidQueryError, InvalidTimestampError

__all__ = [
    "MAX_NS",
    "MIN_NS",
    "NS_PER_S",
    "UNIT_NS",
    "now_ns",
    "ns_to_seconds",
    "float_to_ns",
    "parse_duration_ns",
    "to_ns",
    "to_ns_array",
]

NS_PER_S: Final = 1_000_000_000
#: Nanoseconds per unit for numeric timestamps (``unit=`` everywhere in the API).
UNIT_NS: Final[dict[str, int]] = {"s": NS_PER_S, "ms": 1_000_000, "us": 1_000, "ns": 1}
# int64 nanoseconds span 1677-09-21 .. 2262-04-11; keep a margin so bucket arithmetic
# (floor(t / w) * w + w) can never overflow.
MIN_NS: Final = -(2**62)
MAX_NS: Final = 2**62

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|s|m|h|d|w|y)")
_DURATION_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": NS_PER_S,
    "m": 60 * NS_PER_S,
    "h": 3600 * NS_PER_S,
    "d": 86400 * NS_PER_S,
    "w": 7 * 86400 * NS_PER_S,
    "y": 365 * 86400 * NS_PER_S,
}


def now_ns() -> int:
    """Wall-clock time in nanoseconds since the epoch."""
    return time.time_ns()


def _unit_ns(unit: str) -> int:
    try:
        return UNIT_NS[unit]
    except KeyError:
        raise InvalidTimestampError(
            f"unknown timestamp unit {unit!r}: expected one of s, ms, us, ns", field="unit"
        ) from None


def _checked(ns: int, original: Any, field: str) -> int:
    if not MIN_NS <= ns <= MAX_NS:
        raise InvalidTimestampError(
            f"timestamp {original!r:.60} is out of range: must lie between years 1824 and 2116", field=field
        )
    return ns


def float_to_ns(value: float, mult: int, field: str = "timestamp") -> int:
    """``value`` units of ``mult`` ns as int ns, exact to the float's own precision.

    The whole and fractional parts are scaled apart: ``round(1795021754.25 * 1e9)`` is off by
    ~100 ns because the product no longer fits a float's 53 bits; this is not.
    """
    if not math.isfinite(value):
        raise InvalidTimestampError(f"timestamp {value!r} is not finite", field=field)
    whole = math.floor(value)
    return int(whole) * mult + round((value - whole) * mult)


# Fractional seconds beyond microseconds, which datetime cannot hold: kept as extra ns.
_FRACTION_RE = re.compile(r"(\d{2}:\d{2}:\d{2})\.(\d+)")


def _parse_string(text: str, field: str) -> int:
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    extra_ns = 0
    m = _FRACTION_RE.search(s)
    if m and len(m.group(2)) > 6:
        digits = m.group(2)[:9].ljust(9, "0")
        extra_ns = int(digits[6:])
        s = s[: m.start(2)] + digits[:6] + s[m.end(2) :]
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise InvalidTimestampError(
            f"cannot parse timestamp {text!r:.60}: expected RFC 3339 like 2025-05-14T09:00:00Z or epoch seconds",
            field=field,
        ) from None
    return _datetime_ns(dt, text, field) + extra_ns


def _datetime_ns(dt: datetime, original: Any, field: str) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    # Exact integer arithmetic: timestamp() goes through a float and loses microseconds.
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    ns = (delta.days * 86400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000
    nanos = getattr(dt, "nanosecond", 0)  # pandas.Timestamp keeps nanoseconds
    return _checked(ns + nanos, original, field)


def to_ns(ts: Any, unit: str = "s", *, field: str = "timestamp") -> int:
    """Convert one timestamp to int nanoseconds since the epoch.

    Numbers are read in ``unit`` (s, ms, us or ns); strings must be ISO 8601 / RFC 3339;
    ``datetime`` without a zone is UTC. Raises InvalidTimestampError naming ``field``.
    """
    tp = type(ts)
    if tp is int:
        return _checked(ts * _unit_ns(unit), ts, field)
    if tp is float:
        return _checked(float_to_ns(ts, _unit_ns(unit), field), ts, field)
    if isinstance(ts, str):
        return _parse_string(ts, field)
    if isinstance(ts, datetime):
        return _datetime_ns(ts, ts, field)
    if isinstance(ts, np.datetime64):
        if np.isnat(ts):
            raise InvalidTimestampError("timestamp is NaT", field=field)
        return _checked(int(ts.astype("datetime64[ns]").astype(np.int64)), ts, field)
    if isinstance(ts, bool) or tp is np.bool_:
        raise InvalidTimestampError(f"timestamp must be a number or a string, got boolean {ts!r}", field=field)
    if isinstance(ts, (np.integer, np.floating, int, float)):
        return to_ns(
            ts.item() if isinstance(ts, np.generic) else (int(ts) if isinstance(ts, int) else float(ts)),
            unit,
            field=field,
        )
    raise InvalidTimestampError(
        f"timestamp must be a number, RFC 3339 string or datetime, got {tp.__name__} {ts!r:.60}", field=field
    )


def to_ns_array(ts: Any, unit: str = "s", *, field: str = "timestamps") -> npt.NDArray[np.int64]:
    """Convert a column of timestamps (numpy array, list, pandas Index/Series) to int64 ns.

    datetime64 columns are converted exactly; numeric columns are read in ``unit``; a list of
    strings or datetimes is converted element by element. Raises InvalidTimestampError.
    """
    arr = np.asarray(ts)
    kind = arr.dtype.kind
    if kind == "M":
        if np.isnat(arr).any():
            raise InvalidTimestampError(f"{field} contains NaT", field=field)
        out = arr.astype("datetime64[ns]").astype(np.int64)
    elif kind in "iu":
        mult = _unit_ns(unit)
        big = MAX_NS // mult
        if arr.size and (arr.max() > big or arr.min() < -big):
            raise InvalidTimestampError(f"{field} holds values out of range for unit {unit!r}", field=field)
        out = arr.astype(np.int64) * mult
    elif kind == "f":
        if not np.isfinite(arr).all():
            raise InvalidTimestampError(f"{field} contains NaN or infinite values", field=field)
        mult = _unit_ns(unit)
        if arr.size and float(np.abs(arr).max()) > MAX_NS / mult:
            raise InvalidTimestampError(f"{field} holds values out of range for unit {unit!r}", field=field)
        # Whole and fractional parts scaled apart (see float_to_ns) for ns precision.
        whole = np.floor(arr)
        out = whole.astype(np.int64) * mult + np.rint((arr - whole) * mult).astype(np.int64)
    elif kind == "b":
        raise InvalidTimestampError(f"{field} must be numbers or times, got booleans", field=field)
    elif kind in "OUS":
        out = np.fromiter((to_ns(x, unit, field=field) for x in arr.ravel()), dtype=np.int64, count=arr.size)
    else:
        raise InvalidTimestampError(f"{field} has unsupported dtype {arr.dtype}", field=field)
    if out.ndim != 1:
        raise InvalidTimestampError(f"{field} must be one-dimensional, got shape {arr.shape}", field=field)
    return np.ascontiguousarray(out, dtype=np.int64)


def ns_to_seconds(ns: int) -> int | float:
    """Seconds for a nanosecond timestamp: an int when whole, else a float."""
    sec, rem = divmod(ns, NS_PER_S)
    return sec if rem == 0 else ns / NS_PER_S


def parse_duration_ns(value: Any, *, field: str = "step") -> int:
    """Parse a duration (``30s``, ``5m``, ``1h30m``, ``250ms``, or a number of seconds) to ns.

    Raises InvalidQueryError for anything else, or for a duration that is not positive.
    """
    if isinstance(value, bool):
        raise InvalidQueryError(
            f"{field} must be a duration like 30s or a number of seconds, got {value!r}", field=field
        )
    ns: int
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidQueryError(f"{field} must be finite, got {value!r}", field=field)
        ns = round(value * NS_PER_S)
    elif isinstance(value, str):
        text = value.strip()
        try:
            ns = round(float(text) * NS_PER_S)
        except ValueError:
            pos, total = 0, 0
            for m in _DURATION_RE.finditer(text):
                if m.start() != pos:
                    break
                total += round(float(m.group(1)) * _DURATION_NS[m.group(2)])
                pos = m.end()
            if pos != len(text) or not text:
                raise InvalidQueryError(
                    f"cannot parse {field} {value!r:.40}: expected a duration like 30s, 5m, 1h or seconds", field=field
                ) from None
            ns = total
        if not math.isfinite(float(ns)):
            raise InvalidQueryError(f"{field} must be finite, got {value!r}", field=field)
    else:
        raise InvalidQueryError(
            f"{field} must be a duration like 30s or a number of seconds, got {value!r:.40}", field=field
        )
    if ns <= 0:
        raise InvalidQueryError(f"{field} must be positive, got {value!r}", field=field)
    return ns
