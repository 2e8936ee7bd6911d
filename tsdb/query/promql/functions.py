"""The PromQL function registry: name -> implementation.

``RANGE_FUNCTIONS`` (in ``range_functions``) take a range vector; ``FUNCTIONS`` here take
evaluated instant vectors, scalars and strings. Every instant function has the signature
``impl(call) -> Block | ScalarSteps`` where ``call`` carries the evaluated arguments, their AST
nodes (``absent`` and ``timestamp`` look at the selector itself) and the evaluation steps.

Metric names follow Prometheus 2.x: math functions, ``clamp*``, ``round``, ``timestamp`` and
``histogram_quantile`` drop ``__name__``; ``sort*`` and ``label_*`` keep it. A function missing
from both registries is answered with ``UnsupportedError`` by the evaluator, never guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import promql_parser

from .errors import QueryExecutionError
from .range_functions import RANGE_FUNCTIONS, RangeFunction
from .values import METRIC_NAME, Block, Labels, ScalarSteps, StringValue, drop_name, ns_to_seconds_array

__all__ = [
    "FUNCTIONS",
    "RANGE_FUNCTIONS",
    "CallArgs",
    "RangeFunction",
    "absent_labels",
    "bucket_quantile",
    "go_template_expand",
    "parse_go_float",
]

F64 = npt.NDArray[np.float64]
Value = Block | ScalarSteps | StringValue

_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(slots=True)
class CallArgs:
    """What an instant function sees: evaluated ``args``, their AST ``nodes`` and the step times (ns)."""

    args: list[Value]
    nodes: list[Any]
    steps: npt.NDArray[np.int64]

    def block(self, i: int) -> Block:
        """Argument ``i``, which the parser guarantees is an instant vector."""
        value = self.args[i]
        assert isinstance(value, Block)
        return value

    def scalar(self, i: int) -> F64:
        """Argument ``i`` as one float per step."""
        value = self.args[i]
        assert isinstance(value, ScalarSteps)
        return value.values

    def string(self, i: int) -> str:
        """Argument ``i``, a string literal."""
        value = self.args[i]
        assert isinstance(value, StringValue)
        return value.value


def _map_values(block: Block, fn: Callable[[F64], F64], *, keep_name: bool = False) -> Block:
    """A new block with ``fn`` applied to every value (and the metric name dropped)."""
    labels = block.labels if keep_name else [drop_name(lab) for lab in block.labels]
    return Block(labels, fn(block.values), block.present.copy())


def _elementwise(fn: Callable[[F64], F64]) -> Callable[[CallArgs], Block]:
    return lambda call: _map_values(call.block(0), fn)


def _sgn(v: F64) -> F64:
    return np.sign(v)


def _round(call: CallArgs) -> Block:
    to_nearest = call.scalar(1) if len(call.args) > 1 else np.ones(len(call.steps))
    inverse = 1.0 / to_nearest  # as Prometheus: fewer float accuracy issues than dividing
    return _map_values(call.block(0), lambda v: np.floor(v * inverse + 0.5) / inverse)


def _clamp(call: CallArgs) -> Block:
    lo, hi = call.scalar(1), call.scalar(2)
    out = _map_values(call.block(0), lambda v: np.maximum(lo, np.minimum(hi, v)))
    out.present &= ~(hi < lo)[None, :]  # Prometheus returns nothing when max < min
    return out


def _clamp_min(call: CallArgs) -> Block:
    lo = call.scalar(1)
    return _map_values(call.block(0), lambda v: np.maximum(lo, v))


def _clamp_max(call: CallArgs) -> Block:
    hi = call.scalar(1)
    return _map_values(call.block(0), lambda v: np.minimum(hi, v))


def _unwrap(node: Any) -> Any:
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    return node


def _timestamp(call: CallArgs) -> Block:
    block = call.block(0)
    if block.sample_ts is not None and isinstance(_unwrap(call.nodes[0]), promql_parser.VectorSelector):
        ts = block.sample_ts
    else:
        ts = np.broadcast_to(call.steps[None, :], block.values.shape)
    seconds = ns_to_seconds_array(ts.ravel()).reshape(block.values.shape)
    return Block([drop_name(lab) for lab in block.labels], seconds, block.present.copy())


def _time(call: CallArgs) -> ScalarSteps:
    return ScalarSteps(ns_to_seconds_array(call.steps))


def _pi(call: CallArgs) -> ScalarSteps:
    return ScalarSteps(np.full(len(call.steps), math.pi))


def _vector(call: CallArgs) -> Block:
    values = call.scalar(0)
    return Block([()], values[None, :].copy(), np.ones((1, len(values)), np.bool_))


def _scalar(call: CallArgs) -> ScalarSteps:
    block = call.block(0)
    if len(block) == 0:
        return ScalarSteps(np.full(len(call.steps), np.nan))
    one = block.present.sum(axis=0) == 1
    picked = np.where(block.present, block.values, 0.0).sum(axis=0)
    return ScalarSteps(np.where(one, picked, np.nan))


def _sort_rows(block: Block, descending: bool) -> Block:
    """Rows ordered by value at the only step (NaN last); order is meaningless over many steps."""
    if block.steps != 1 or len(block) < 2:
        return block
    v = block.values[:, 0]
    key = np.where(np.isnan(v), np.inf, -v if descending else v)
    nan_last = np.isnan(v).astype(np.int8)
    order = np.lexsort((key, nan_last))
    return block.take(order)


def _sort(call: CallArgs) -> Block:
    return _sort_rows(call.block(0), descending=False)


def _sort_desc(call: CallArgs) -> Block:
    return _sort_rows(call.block(0), descending=True)


def go_template_expand(template: str, match: re.Match[str]) -> str:
    """Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``, ``${name}`` and ``$$``.

    A name is the longest run of letters, digits and underscores (so ``$1x`` is the group
    named ``1x``); unknown or unmatched groups expand to "", and a ``$`` not followed by a
    valid reference is kept literally, as Go does.
    """
    out = []
    i = 0
    while i < len(template):
        c = template[i]
        if c != "$" or i + 1 >= len(template):
            out.append(c)
            i += 1
            continue
        nxt = template[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            end = template.find("}", i + 2)
            name = template[i + 2 : end] if end > 0 else ""
            if end < 0 or not name or not re.fullmatch(r"\w+", name, re.ASCII):
                out.append("$")
                i += 1
                continue
            i = end + 1
        else:
            m = re.match(r"\w+", template[i + 1 :], re.ASCII)
            if not m:
                out.append("$")
                i += 1
                continue
            name = m.group(0)
            i += 1 + len(name)
        out.append(_group(match, name))
    return "".join(out)


def _group(match: re.Match[str], name: str) -> str:
    try:
        value = match.group(int(name)) if name.isdigit() else match.group(name)
    except IndexError:  # no such group: Go expands it to ""
        return ""
    return value or ""


def _relabel(block: Block, fn: Callable[[Labels], Labels]) -> Block:
    cache: dict[Labels, Labels] = {}
    labels = []
    for lab in block.labels:
        if lab not in cache:
            cache[lab] = fn(lab)
        labels.append(cache[lab])
    return Block(labels, block.values.copy(), block.present.copy())


def _set_label(labels: Labels, name: str, value: str) -> Labels:
    d = dict(labels)
    if value:
        d[name] = value
    else:
        d.pop(name, None)
    return tuple(sorted(d.items()))


def _label_replace(call: CallArgs) -> Block:
    dst, repl, src, regex = (call.string(i) for i in range(1, 5))
    try:
        pattern = re.compile("(?:" + regex + ")")
    except re.error as exc:
        raise QueryExecutionError(f"invalid regular expression in label_replace(): {regex}", field="query") from exc
    if not _LABEL_NAME_RE.fullmatch(dst):
        raise QueryExecutionError(f"invalid destination label name in label_replace(): {dst}", field="query")

    def replace(labels: Labels) -> Labels:
        m = pattern.fullmatch(dict(labels).get(src, ""))
        if m is None:
            return labels
        return _set_label(labels, dst, go_template_expand(repl, m))

    return _relabel(call.block(0), replace)


def _label_join(call: CallArgs) -> Block:
    dst, sep = call.string(1), call.string(2)
    srcs = [call.string(i) for i in range(3, len(call.args))]
    for name in srcs:
        if not _LABEL_NAME_RE.fullmatch(name):
            raise QueryExecutionError(f"invalid source label name in label_join(): {name}", field="query")
    if not _LABEL_NAME_RE.fullmatch(dst):
        raise QueryExecutionError(f"invalid destination label name in label_join(): {dst}", field="query")

    def join(labels: Labels) -> Labels:
        d = dict(labels)
        return _set_label(labels, dst, sep.join(d.get(s, "") for s in srcs))

    return _relabel(call.block(0), join)


def parse_go_float(text: str) -> float | None:
    """Go's ``strconv.ParseFloat(text, 64)`` for the bucket bound ``le``; None when Go rejects it."""
    if text != text.strip() or not text or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return float.fromhex(text) if "0x" in text.lower() else None
    except ValueError:
        return None


def _ensure_monotonic(counts: F64) -> None:
    """Prometheus's ``ensureMonotonic``, in place: a bucket never counts less than one below it.

    Written with comparisons (not ``maximum.accumulate``) so NaN counts behave as in Go.
    """
    run_max = np.full(counts.shape[1], -np.inf)
    for i in range(counts.shape[0]):
        c = counts[i]
        run_max = np.where(c > run_max, c, run_max)
        counts[i] = np.where(c < run_max, run_max, c)


def bucket_quantile(q: F64, bounds: F64, counts: F64) -> F64:
    """Prometheus's ``bucketQuantile`` for every step at once.

    ``bounds`` are the sorted, distinct upper bounds (``le``) and ``counts`` the cumulative
    bucket counts, shape ``(buckets, steps)``. The quantile is interpolated linearly inside its
    bucket (from 0 for the lowest bucket when its bound is positive); a rank in the +Inf bucket
    answers the second-highest bound.
    """
    steps = counts.shape[1]
    out = np.full(steps, np.nan)
    if len(bounds) >= 2 and np.isposinf(bounds[-1]):
        counts = counts.copy()
        _ensure_monotonic(counts)
        observations = counts[-1]
        rank = q * observations
        nb = len(bounds)
        hit = counts[:-1] >= rank[None, :]
        b = np.where(hit.any(axis=0), hit.argmax(axis=0), nb - 1)
        cols = np.arange(steps)
        prev = np.maximum(b - 1, 0)
        start = np.where(b > 0, bounds[prev], 0.0)
        below = np.where(b > 0, counts[prev, cols], 0.0)
        end = bounds[np.minimum(b, nb - 1)]
        count = counts[np.minimum(b, nb - 1), cols] - below
        out = start + (end - start) * ((rank - below) / count)
        out = np.where((b == 0) & (bounds[0] <= 0), bounds[0], out)
        out = np.where(b == nb - 1, bounds[nb - 2], out)
        out = np.where(observations == 0, np.nan, out)
    out = np.where(q < 0, -np.inf, out)
    out = np.where(q > 1, np.inf, out)
    return np.where(np.isnan(q), np.nan, out)


def _histogram_quantile(call: CallArgs) -> Block:
    q = call.scalar(0)
    block = call.block(1)
    groups: dict[Labels, list[tuple[float, int]]] = {}
    for row, labels in enumerate(block.labels):
        le = dict(labels).get("le")
        bound = parse_go_float(le) if le is not None else None
        if bound is None:
            continue  # no or malformed bucket label: skipped, as in Prometheus
        key = tuple(p for p in labels if p[0] not in (METRIC_NAME, "le"))
        groups.setdefault(key, []).append((bound, row))
    out_labels: list[Labels] = []
    out_values = []
    out_present = []
    for key, members in groups.items():
        members.sort()
        bounds = np.array([b for b, _ in members])
        rows = np.array([r for _, r in members])
        pres = block.present[rows]
        vals = np.where(pres, block.values[rows], 0.0)
        result = np.full(block.steps, np.nan)
        any_present = pres.any(axis=0)
        # Steps sharing the same set of present buckets are computed together (usually all).
        patterns, inverse = np.unique(pres.T, axis=0, return_inverse=True)
        for p_idx, pattern in enumerate(patterns):
            if not pattern.any():
                continue
            cols = np.flatnonzero(inverse.ravel() == p_idx)
            sel = np.flatnonzero(pattern)
            ub, first = np.unique(bounds[sel], return_index=True)
            merged = np.add.reduceat(vals[sel][:, cols], first, axis=0) if len(sel) else vals[sel][:, cols]
            result[cols] = bucket_quantile(q[cols], ub, merged)
        out_labels.append(key)
        out_values.append(result)
        out_present.append(any_present)
    if not out_labels:
        return Block.empty(block.steps)
    return Block(out_labels, np.array(out_values), np.array(out_present))


def absent_labels(node: Any) -> Labels:
    """Labels ``absent()`` reports: the selector's equality matchers (Prometheus's rule)."""
    node = _unwrap(node)
    if isinstance(node, promql_parser.MatrixSelector):
        node = node.vector_selector
    if not isinstance(node, promql_parser.VectorSelector):
        return ()
    found: dict[str, str] = {}
    ambiguous = set()
    for m in node.matchers.matchers:
        if m.name == METRIC_NAME:
            continue
        if str(m.op).endswith("Equal") and not str(m.op).endswith("NotEqual") and m.name not in found:
            found[m.name] = m.value
        else:
            ambiguous.add(m.name)
    return tuple(sorted((n, v) for n, v in found.items() if n not in ambiguous and v != ""))


def _absent(call: CallArgs) -> Block:
    block = call.block(0)
    missing = ~block.present.any(axis=0) if len(block) else np.ones(len(call.steps), np.bool_)
    return Block([absent_labels(call.nodes[0])], np.ones((1, len(call.steps))), missing[None, :])


def _date_part(part: Callable[[npt.NDArray[np.datetime64]], F64]) -> Callable[[CallArgs], Block]:
    """A date function (``hour()``...): of each value taken as Unix seconds, UTC; default ``vector(time())``."""

    def impl(call: CallArgs) -> Block:
        if call.args:
            block = call.block(0)
        else:
            seconds = ns_to_seconds_array(call.steps)
            block = Block([()], seconds[None, :], np.ones((1, len(call.steps)), np.bool_))
        v = block.values
        finite = np.isfinite(v)
        secs = np.where(finite, np.trunc(np.where(finite, v, 0)), 0).astype(np.int64)
        result = part(secs.astype("datetime64[s]"))
        return Block([drop_name(lab) for lab in block.labels], np.where(finite, result, np.nan), block.present.copy())

    return impl


def _year(d: npt.NDArray[np.datetime64]) -> F64:
    return d.astype("datetime64[Y]").astype(np.int64) + 1970.0


def _month(d: npt.NDArray[np.datetime64]) -> F64:
    return (d.astype("datetime64[M]").astype(np.int64) % 12 + 1).astype(np.float64)


def _day_of_month(d: npt.NDArray[np.datetime64]) -> F64:
    return ((d.astype("datetime64[D]") - d.astype("datetime64[M]")).astype(np.int64) + 1).astype(np.float64)


def _day_of_year(d: npt.NDArray[np.datetime64]) -> F64:
    return ((d.astype("datetime64[D]") - d.astype("datetime64[Y]")).astype(np.int64) + 1).astype(np.float64)


def _day_of_week(d: npt.NDArray[np.datetime64]) -> F64:
    return ((d.astype("datetime64[D]").astype(np.int64) + 4) % 7).astype(np.float64)  # 1970-01-01 was a Thursday


def _days_in_month(d: npt.NDArray[np.datetime64]) -> F64:
    month = d.astype("datetime64[M]")
    return ((month + 1).astype("datetime64[D]") - month.astype("datetime64[D]")).astype(np.float64)


def _hour(d: npt.NDArray[np.datetime64]) -> F64:
    return ((d.astype(np.int64) // 3600) % 24).astype(np.float64)


def _minute(d: npt.NDArray[np.datetime64]) -> F64:
    return ((d.astype(np.int64) // 60) % 60).astype(np.float64)


FUNCTIONS: dict[str, Callable[[CallArgs], Block | ScalarSteps]] = {
    "abs": _elementwise(np.abs),
    "ceil": _elementwise(np.ceil),
    "floor": _elementwise(np.floor),
    "exp": _elementwise(np.exp),
    "sqrt": _elementwise(np.sqrt),
    "ln": _elementwise(np.log),
    "log2": _elementwise(np.log2),
    "log10": _elementwise(np.log10),
    "sgn": _elementwise(_sgn),
    "acos": _elementwise(np.arccos),
    "acosh": _elementwise(np.arccosh),
    "asin": _elementwise(np.arcsin),
    "asinh": _elementwise(np.arcsinh),
    "atan": _elementwise(np.arctan),
    "atanh": _elementwise(np.arctanh),
    "cos": _elementwise(np.cos),
    "cosh": _elementwise(np.cosh),
    "sin": _elementwise(np.sin),
    "sinh": _elementwise(np.sinh),
    "tan": _elementwise(np.tan),
    "tanh": _elementwise(np.tanh),
    "deg": _elementwise(np.degrees),
    "rad": _elementwise(np.radians),
    "round": _round,
    "clamp": _clamp,
    "clamp_min": _clamp_min,
    "clamp_max": _clamp_max,
    "timestamp": _timestamp,
    "time": _time,
    "pi": _pi,
    "vector": _vector,
    "scalar": _scalar,
    "sort": _sort,
    "sort_desc": _sort_desc,
    "label_replace": _label_replace,
    "label_join": _label_join,
    "histogram_quantile": _histogram_quantile,
    "absent": _absent,
    "year": _date_part(_year),
    "month": _date_part(_month),
    "day_of_month": _date_part(_day_of_month),
    "day_of_year": _date_part(_day_of_year),
    "day_of_week": _date_part(_day_of_week),
    "days_in_month": _date_part(_days_in_month),
    "hour": _date_part(_hour),
    "minute": _date_part(_minute),
}
