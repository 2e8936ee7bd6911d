"""The spec's JSON API: ``POST /data`` bodies -> ``Batch``, stored series -> the ``GET /metrics`` listing.

Pure functions: no engine, no HTTP. A body is one point object or an array of them::

    {"timestamp": "2025-05-14T09:00:00Z", "value": 42, "metric": "cpu", "labels": {"host": "a"}}

``timestamp`` is an RFC 3339 string or a number of epoch seconds (int or float); ``value`` a
finite number (booleans, strings and null are refused); ``metric`` (optional, the caller's
default name when absent or null) and ``labels`` (optional object of string values) name the
series. Any other field is refused, so a typo such as ``"valeu"`` cannot go unnoticed.

Every point of an array is validated before anything is returned, so a caller that stores the
Batch atomically stores all points or none. Errors are ``InvalidInputError`` subclasses whose
message names the point (its index in the array), the field and the offending value.

Bulk arrays are handled column-wise: list comprehensions pull each field out, type sets are
checked once, numbers and RFC 3339 strings are converted by numpy; only when that fast path
finds a problem does a per-point loop run to name the first bad point.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import orjson

from tsdb._types import Batch, SeriesRef, check_value
from tsdb.errors import InvalidInputError, InvalidTimestampError, InvalidValueError, TSDBError
from tsdb.labels import DEFAULT_LIMITS, LabelSet, Limits, make_labelset, validate_metric_name
from tsdb.timeutil import MAX_NS, MIN_NS, NS_PER_S, UNIT_NS, to_ns, to_ns_array

__all__ = [
    "ALLOWED_FIELDS",
    "INGESTED_ONE",
    "exact_seconds",
    "ListedSeries",
    "ParsedPoints",
    "SinglePoint",
    "decode",
    "format_listing",
    "ingested_message",
    "json_number_list",
    "json_type",
    "parse_document",
    "parse_points",
    "seconds_list",
    "single_point",
    "timestamps_from_list",
    "values_from_list",
]

ALLOWED_FIELDS: Final = frozenset({"timestamp", "value", "metric", "labels"})
#: The spec's answer to one ingested point, byte for byte as the spec prints it.
INGESTED_ONE: Final = b'{"message": "Data point ingested successfully"}'

# RFC 3339 in UTC ("Z"), years 1900-2099: numpy parses these in C. numpy silently wraps years
# outside the int64-ns range, hence the year bound; anything else takes the exact slow path.
_FAST_RFC3339 = re.compile(r"(?:19|20)\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z").fullmatch
_NUMBER_TYPES: Final = frozenset({int, float})


@dataclass(frozen=True, slots=True)
class ParsedPoints:
    """A parsed ``POST /data`` body; ``single`` is True when it was one object, not an array."""

    batch: Batch
    single: bool


class ListedSeries(Protocol):
    """What the listing needs of a series (``tsdb.storage.interface.SeriesData`` fits)."""

    @property
    def metric(self) -> str: ...
    @property
    def labels(self) -> LabelSet: ...
    @property
    def timestamps(self) -> npt.NDArray[np.int64]: ...
    @property
    def values(self) -> npt.NDArray[np.float64]: ...


def ingested_message(count: int) -> bytes:
    """The answer to an array of ``count`` points."""
    noun = "data point" if count == 1 else "data points"
    return orjson.dumps({"message": f"{count} {noun} ingested successfully"})


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def decode(body: bytes) -> Any:
    """The JSON document of a body; InvalidInputError (field ``body``) if it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"malformed JSON body: {exc}", field="body") from None


def parse_points(body: bytes, *, default_metric: str, limits: Limits = DEFAULT_LIMITS) -> ParsedPoints:
    """Parse a ``POST /data`` body into a Batch; see the module docstring for the format.

    Timestamps become int64 ns, values float64. Nothing about the clock is checked here (the
    engine rejects samples too far in the future). Raises InvalidInputError naming the point.
    """
    return parse_document(decode(body), default_metric=default_metric, limits=limits)


def parse_document(doc: Any, *, default_metric: str, limits: Limits = DEFAULT_LIMITS) -> ParsedPoints:
    """``parse_points`` for an already decoded document (a point object or an array of them)."""
    if isinstance(doc, dict):
        return ParsedPoints(_parse_items([doc], True, default_metric, limits), single=True)
    if isinstance(doc, list):
        return ParsedPoints(_parse_items(doc, False, default_metric, limits), single=False)
    raise InvalidInputError(
        f"body must be a JSON object (one point) or an array of point objects, got {json_type(doc)}", field="body"
    )


@dataclass(frozen=True, slots=True)
class SinglePoint:
    """One point, checked except for its names: for the engine's single-sample ``write``.

    ``metric`` and ``labels`` are as sent (labels a dict or None); the engine validates them
    with the same rules as ``parse_points`` and caches the result per series, which is what
    makes one point per request cheap. ``timestamp_ns`` is exact (no float rounding).
    """

    metric: Any
    labels: dict[str, Any] | None
    timestamp_ns: int
    value: float


def single_point(doc: dict[str, Any], *, default_metric: str) -> SinglePoint:
    """Check one point object (fields, timestamp, value, label container) for ``write``."""
    if not doc.keys() <= ALLOWED_FIELDS or "timestamp" not in doc or "value" not in doc:
        _raise_structure_error([doc], True)
    labels = doc.get("labels")
    if labels is not None and type(labels) is not dict:
        raise InvalidInputError(f"labels must be an object of string values, got {json_type(labels)}", field="labels")
    metric = doc.get("metric")
    ts = doc["timestamp"]
    tp = type(ts)
    if tp is int and -4_000_000_000 < ts < 4_000_000_000:
        ts_ns = ts * NS_PER_S
    elif tp is float:
        ts_ns = int(timestamps_from_list([ts], lambda i: "")[0])
    else:
        ts_ns = to_ns(ts, "s", field="timestamp")
    return SinglePoint(default_metric if metric is None else metric, labels, ts_ns, check_value(doc["value"]))


def _where(i: int, single: bool) -> str:
    return "" if single else f"point {i}: "


def _where_fn(single: bool) -> Callable[[int], str]:
    return (lambda i: "") if single else (lambda i: f"point {i}: ")


def _rewrap(exc: TSDBError, i: int, single: bool) -> TSDBError:
    """The same error type with the point's index in front of the message."""
    return type(exc)(_where(i, single) + exc.message, field=exc.field)


def _float_to_ns(arr: npt.NDArray[np.float64], unit: str) -> npt.NDArray[np.int64]:
    """Float timestamps to ns without float64's rounding at 1e18: whole and fractional parts apart.

    ``1795021754.25 * 1e9`` in float64 is off by ~100 ns; ``1795021754 * 10**9 + 0.25 * 1e9`` is exact.
    """
    mult = UNIT_NS.get(unit)
    if mult is None or not np.isfinite(arr).all() or (np.abs(arr) > MAX_NS / mult).any():
        raise InvalidTimestampError("out of range", field="timestamp")  # the slow path names the element
    whole = np.floor(arr)
    out = whole.astype(np.int64) * mult + np.rint((arr - whole) * mult).astype(np.int64)
    if out.min() < MIN_NS or out.max() > MAX_NS:
        raise InvalidTimestampError("out of range", field="timestamp")
    return out


def _parse_items(items: list[Any], single: bool, default_metric: str, limits: Limits) -> Batch:
    if not items:
        return Batch([], np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    n = len(items)
    try:
        ts_raw = [p["timestamp"] for p in items]
        val_raw = [p["value"] for p in items]
        metrics = [p.get("metric", _MISSING) for p in items]
        labels = [p.get("labels", _MISSING) for p in items]
        # No unknown field: every point's key count is 2 + its optional fields (C-level passes).
        missing_m, missing_l = metrics.count(_MISSING), labels.count(_MISSING)
        keys_ok = sum(map(len, items)) == 4 * n - missing_m - missing_l
    except (TypeError, KeyError, AttributeError):
        keys_ok = False
    if not keys_ok:
        _raise_structure_error(items, single)
    metrics = _none_for_missing(metrics, missing_m)
    labels = _none_for_missing(labels, missing_l)
    where = _where_fn(single)
    values = values_from_list(val_raw, where)
    timestamps = timestamps_from_list(ts_raw, where)
    series, idx = _series(metrics, labels, single, default_metric, limits)
    return Batch(series, idx, timestamps, values)


_MISSING: Final = object()


def _none_for_missing(column: list[Any], missing: int) -> list[Any]:
    if missing == 0:
        return column
    if missing == len(column):
        return [None] * missing
    return [None if v is _MISSING else v for v in column]


def _raise_structure_error(items: list[Any], single: bool) -> None:
    """Raise for the first point that is not an object, lacks a field or has an unknown one."""
    for i, p in enumerate(items):
        pre = _where(i, single)
        if not isinstance(p, dict):
            raise InvalidInputError(
                f"{pre}a point must be a JSON object with timestamp and value, got {json_type(p)}", field="body"
            )
        for name in ("timestamp", "value"):
            if name not in p:
                raise InvalidInputError(f"{pre}missing required field {name!r}", field=name)
        extra = sorted(p.keys() - ALLOWED_FIELDS)
        if extra:
            raise InvalidInputError(
                f"{pre}unknown field {extra[0]!r:.60}: a point has timestamp, value, metric and labels", field=extra[0]
            )
    raise AssertionError("unreachable: fast path failed but every point is well formed")


def values_from_list(raw: list[Any], where: Callable[[int], str]) -> npt.NDArray[np.float64]:
    """A decoded JSON list of numbers as float64; ``where(i)`` prefixes the error for element i."""
    if set(map(type, raw)) <= _NUMBER_TYPES:
        try:
            # orjson never yields NaN or infinity, so numbers are finite here.
            return np.array(raw, dtype=np.float64)
        except OverflowError:
            pass
    out = np.empty(len(raw), dtype=np.float64)
    for i, v in enumerate(raw):
        try:
            out[i] = check_value(v, field="value")
        except InvalidValueError as exc:
            raise type(exc)(where(i) + exc.message, field=exc.field) from None
        except OverflowError:
            raise InvalidValueError(f"{where(i)}value {v!r:.60} is too large for a float64", field="value") from None
    return out


def timestamps_from_list(raw: list[Any], where: Callable[[int], str], unit: str = "s") -> npt.NDArray[np.int64]:
    """A decoded JSON list of timestamps (numbers in ``unit`` or RFC 3339 strings) as int64 ns.

    ``where(i)`` prefixes the error message for element i.
    """
    types = set(map(type, raw))
    try:
        if types <= _NUMBER_TYPES:
            arr = np.array(raw)
            if arr.dtype.kind == "f":
                return _float_to_ns(arr, unit)
            return to_ns_array(arr, unit, field="timestamp")
        if types == {str} and all(map(_FAST_RFC3339, raw)):
            # Strip the "Z": numpy parses zone-less ISO strings and deprecates zones.
            parsed = np.array([s[:-1] for s in raw], dtype="datetime64[ns]").astype(np.int64)
            if parsed.min() >= MIN_NS and parsed.max() <= MAX_NS:
                return parsed
    except (InvalidTimestampError, ValueError, OverflowError):
        pass  # the per-element loop below names the bad one
    out = np.empty(len(raw), dtype=np.int64)
    for i, t in enumerate(raw):
        try:
            if type(t) is float:
                try:
                    out[i] = _float_to_ns(np.array([t]), unit)[0]
                except InvalidTimestampError:
                    raise InvalidTimestampError(
                        f"{where(i)}timestamp {t!r:.60} is out of range or not finite", field="timestamp"
                    ) from None
                continue
            out[i] = to_ns(t, unit, field="timestamp")
        except InvalidTimestampError as exc:
            raise type(exc)(where(i) + exc.message, field=exc.field) from None
        except OverflowError:
            raise InvalidTimestampError(f"{where(i)}timestamp {t!r:.60} is out of range", field="timestamp") from None
    return out


def _series(
    metrics: list[Any], labels: list[Any], single: bool, default_metric: str, limits: Limits
) -> tuple[list[SeriesRef], npt.NDArray[np.int64]]:
    """Distinct validated series of the points and each point's index into them."""
    n = len(metrics)
    first = labels[0]
    if (first is None or type(first) is dict) and labels.count(first) == n and metrics.count(metrics[0]) == n:
        # The common case, one series for the whole array: equality passes run in C.
        metric = _metric(default_metric if metrics[0] is None else metrics[0], 0, single, limits)
        try:
            labelset = make_labelset(first, limits)
        except InvalidInputError as exc:
            raise _rewrap(exc, 0, single) from None
        return [(metric, labelset)], np.zeros(n, dtype=np.int64)
    codes: dict[tuple[Any, Any], int] = {}
    try:
        raw_keys = [(m, () if lab is None else tuple(lab.items())) for m, lab in zip(metrics, labels, strict=True)]
        raw_idx = [codes.setdefault(k, len(codes)) for k in raw_keys]
    except (AttributeError, TypeError):
        _raise_label_error(metrics, labels, single, limits)
        raise
    first_point = {code: i for i, code in reversed(list(enumerate(raw_idx)))} if len(codes) > 1 else {0: 0}
    refs: dict[SeriesRef, int] = {}
    remap = np.empty(len(codes), dtype=np.int64)
    for (m, items), code in codes.items():
        i = first_point[code]
        metric = _metric(default_metric if m is None else m, i, single, limits)
        try:
            labelset = make_labelset(list(items), limits)
        except InvalidInputError as exc:
            raise _rewrap(exc, i, single) from None
        remap[code] = refs.setdefault((metric, labelset), len(refs))
    return list(refs), remap[np.array(raw_idx, dtype=np.int64)]


def _metric(metric: Any, i: int, single: bool, limits: Limits) -> str:
    try:
        return validate_metric_name(metric, limits)
    except InvalidInputError as exc:
        raise _rewrap(exc, i, single) from None


def _raise_label_error(metrics: list[Any], labels: list[Any], single: bool, limits: Limits) -> None:
    for i, lab in enumerate(labels):
        if lab is not None and not isinstance(lab, dict):
            raise InvalidInputError(
                f"{_where(i, single)}labels must be an object of string values, got {json_type(lab)}", field="labels"
            )
        try:
            make_labelset(lab, limits)
        except InvalidInputError as exc:
            raise _rewrap(exc, i, single) from None
    for i, m in enumerate(metrics):
        if m is not None:
            _metric(m, i, single, limits)


def seconds_list(ts_ns: npt.NDArray[np.int64]) -> list[int | float]:
    """Epoch seconds for int64-ns timestamps: ints where whole (as the spec prints them), else floats."""
    whole = ts_ns % NS_PER_S == 0
    if whole.all():
        return (ts_ns // NS_PER_S).tolist()  # type: ignore[no-any-return]
    out: list[int | float] = exact_seconds(ts_ns).tolist()
    for i in np.flatnonzero(whole).tolist():
        out[i] = int(ts_ns[i] // NS_PER_S)
    return out


def exact_seconds(ts_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Float epoch seconds of int64 ns, rounded once (``ns / 1e9`` rounds twice: ns to float, then /)."""
    return (ts_ns // NS_PER_S).astype(np.float64) + (ts_ns % NS_PER_S) / NS_PER_S


def json_number_list(values: npt.NDArray[np.float64]) -> list[int | float]:
    """Values for JSON: integral ones as ints (``42``, as the spec prints it), NaN as null."""
    integral = (values == np.trunc(values)) & (np.abs(values) < 2.0**53)
    if integral.all():
        return values.astype(np.int64).tolist()  # type: ignore[no-any-return]
    out: list[int | float] = values.tolist()
    for i in np.flatnonzero(integral).tolist():
        out[i] = int(out[i])
    return out


def format_listing(series: Iterable[ListedSeries] | Sequence[ListedSeries]) -> bytes:
    """The ``GET /metrics`` JSON: ``[{"metric", "labels", "data": [{"timestamp", "value"}]}]``.

    Timestamps are epoch seconds, series in the order given, points in time order.
    """
    out = []
    for s in series:
        points = [
            {"timestamp": t, "value": v}
            for t, v in zip(seconds_list(s.timestamps), json_number_list(s.values), strict=True)
        ]
        out.append({"metric": s.metric, "labels": dict(s.labels), "data": points})
    return orjson.dumps(out)
