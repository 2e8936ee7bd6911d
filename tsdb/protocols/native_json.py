"""The native JSON API: columnar batch bodies -> ``Batch``, query results and listings -> bytes.

Pure functions: no engine, no HTTP. A write body is one block or an array of blocks::

    {"metric": "cpu", "labels": {"host": "a"}, "timestamps": [1684050000, 1684050010], "values": [0.5, 0.7]}

``timestamps`` are numbers in the caller's unit (epoch seconds by default) or RFC 3339
strings; ``values`` finite numbers, as many as timestamps; ``labels`` optional. The whole body
is validated before a Batch is returned (all blocks are stored or none). Errors name the block,
the column and the element index.

A query result answers ``{"kind", "resolution", "series": [{"metric", "labels", "timestamps",
"values"}]}`` with timestamps in epoch seconds (ints when whole) and values as numbers or null
(empty buckets filled with ``fill=null``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import orjson

from tsdb._types import Batch, SeriesRef
from tsdb.errors import InvalidInputError
from tsdb.labels import DEFAULT_LIMITS, LabelSet, Limits, make_labelset, validate_metric_name
from tsdb.protocols.spec_json import exact_seconds, json_type, timestamps_from_list, values_from_list
from tsdb.timeutil import NS_PER_S

__all__ = [
    "BLOCK_FIELDS",
    "format_label_list",
    "format_query_result",
    "format_series_list",
    "parse_columnar",
]

BLOCK_FIELDS: Final = frozenset({"metric", "labels", "timestamps", "values"})
_OPT: Final = orjson.OPT_SERIALIZE_NUMPY


class ResultSeries(Protocol):
    """One series of a query result (``tsdb.SeriesResult`` fits)."""

    @property
    def metric(self) -> str | None: ...
    @property
    def labels(self) -> dict[str, str]: ...
    @property
    def timestamps(self) -> npt.NDArray[np.int64]: ...
    @property
    def values(self) -> npt.NDArray[np.float64]: ...


class Result(Protocol):
    """A query result (``tsdb.QueryResult`` fits)."""

    @property
    def kind(self) -> str: ...
    @property
    def resolution(self) -> str: ...
    @property
    def series(self) -> Sequence[ResultSeries]: ...


def parse_columnar(body: bytes, *, unit: str = "s", limits: Limits = DEFAULT_LIMITS) -> Batch:
    """Parse a columnar write body (one block or an array of blocks) into one Batch.

    Timestamps become int64 ns (numbers read in ``unit``: s, ms, us or ns), values float64;
    blocks naming the same series share one series entry. Raises InvalidInputError.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"malformed JSON body: {exc}", field="body") from None
    if isinstance(doc, dict):
        blocks, single = [doc], True
    elif isinstance(doc, list):
        blocks, single = doc, False
    else:
        raise InvalidInputError(
            f"body must be a JSON object (one block) or an array of blocks, got {json_type(doc)}", field="body"
        )
    refs: dict[SeriesRef, int] = {}
    idx, ts, vals = [], [], []
    for b, block in enumerate(blocks):
        pre = "" if single else f"block {b}: "
        ref, t, v = _parse_block(block, pre, unit, limits)
        code = refs.setdefault(ref, len(refs))
        idx.append(np.full(len(t), code, dtype=np.int64))
        ts.append(t)
        vals.append(v)
    if not blocks:
        return Batch([], np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    return Batch(list(refs), np.concatenate(idx), np.concatenate(ts), np.concatenate(vals))


def _parse_block(
    block: Any, pre: str, unit: str, limits: Limits
) -> tuple[SeriesRef, npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    if not isinstance(block, dict):
        raise InvalidInputError(
            f"{pre}a block must be an object with metric, timestamps and values, got {json_type(block)}", field="body"
        )
    for name in ("metric", "timestamps", "values"):
        if name not in block:
            raise InvalidInputError(f"{pre}missing required field {name!r}", field=name)
    extra = sorted(block.keys() - BLOCK_FIELDS)
    if extra:
        raise InvalidInputError(
            f"{pre}unknown field {extra[0]!r:.60}: a block has metric, labels, timestamps and values", field=extra[0]
        )
    try:
        metric = validate_metric_name(block["metric"], limits)
        labels = block.get("labels")
        if labels is not None and not isinstance(labels, dict):
            raise InvalidInputError(
                f"labels must be an object of string values, got {json_type(labels)}", field="labels"
            )
        labelset = make_labelset(labels, limits)
    except InvalidInputError as exc:
        raise type(exc)(pre + exc.message, field=exc.field) from None
    raw_ts, raw_vals = block["timestamps"], block["values"]
    for name, col in (("timestamps", raw_ts), ("values", raw_vals)):
        if not isinstance(col, list):
            raise InvalidInputError(f"{pre}{name} must be an array, got {json_type(col)}", field=name)
    if len(raw_ts) != len(raw_vals):
        raise InvalidInputError(
            f"{pre}timestamps has {len(raw_ts)} elements but values has {len(raw_vals)}; they must match",
            field="values",
        )
    ts = timestamps_from_list(raw_ts, lambda i: f"{pre}timestamps[{i}]: ", unit)
    vals = values_from_list(raw_vals, lambda i: f"{pre}values[{i}]: ")
    return (metric, labelset), ts, vals


def _seconds_array(ts_ns: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """Epoch seconds: an int64 array when every timestamp is whole, else float64."""
    if ts_ns.size and not (ts_ns % NS_PER_S == 0).all():
        return exact_seconds(ts_ns)
    return ts_ns // NS_PER_S


def format_query_result(result: Result) -> bytes:
    """The native query answer; see the module docstring. NaN values become null."""
    series = [
        {
            "metric": s.metric,
            "labels": dict(s.labels),
            "timestamps": _seconds_array(np.asarray(s.timestamps, dtype=np.int64)),
            "values": np.ascontiguousarray(s.values, dtype=np.float64),
        }
        for s in result.series
    ]
    return orjson.dumps({"kind": result.kind, "resolution": result.resolution, "series": series}, option=_OPT)


def format_series_list(series: Iterable[tuple[str, LabelSet]]) -> bytes:
    """``[{"metric": ..., "labels": {...}}, ...]`` for a series listing."""
    return orjson.dumps([{"metric": m, "labels": dict(labels)} for m, labels in series])


def format_label_list(names: Iterable[str]) -> bytes:
    """A JSON array of strings (label names or label values)."""
    return orjson.dumps(list(names))
