"""PromQL aggregation operators (``sum by (host) (...)`` and friends), all steps at once.

Rows are grouped once by their ``by``/``without`` key; rows are then sorted by group so every
reduction is one ``ufunc.reduceat`` over a ``(rows, steps)`` array. Absent cells are neutral
elements (0 for sums, NaN for ``fmax``/``fmin``, which ignore NaN exactly like Prometheus's
``max``/``min`` ignore NaN values unless every value is NaN).

Output labels are the group key: with ``by`` the listed labels, with ``without`` every label
but the listed ones and ``__name__``. ``topk``/``bottomk`` keep their input rows' labels.
Groups appear in the order of their first input row, as Prometheus builds them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import QueryExecutionError
from .range_functions import quantile_sorted
from .values import METRIC_NAME, Block, Labels

__all__ = ["AGGREGATIONS", "Grouping", "aggregate", "format_go_float"]

F64 = npt.NDArray[np.float64]
_LABEL_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789")


@dataclass(frozen=True, slots=True)
class Grouping:
    """``by (labels)`` when ``without`` is False, else ``without (labels)``."""

    labels: tuple[str, ...] = ()
    without: bool = False

    def key(self, labels: Labels) -> Labels:
        """The group a row with these labels belongs to (also the output labels)."""
        names = set(self.labels)
        if self.without:
            names.add(METRIC_NAME)
            return tuple(p for p in labels if p[0] not in names)
        return tuple(p for p in labels if p[0] in names)


@dataclass(slots=True)
class _Groups:
    """Rows sorted by group: group ``g`` is rows ``order[starts[g]:starts[g]+sizes[g]]``."""

    keys: list[Labels]
    order: npt.NDArray[np.intp]
    starts: npt.NDArray[np.intp]
    sizes: npt.NDArray[np.intp]
    index: npt.NDArray[np.intp]  # group of each input row


def _group_rows(labels: list[Labels], grouping: Grouping) -> _Groups:
    ids: dict[Labels, int] = {}
    index = np.empty(len(labels), np.intp)
    for row, lab in enumerate(labels):
        index[row] = ids.setdefault(grouping.key(lab), len(ids))
    order = np.argsort(index, kind="stable")
    sizes = np.bincount(index, minlength=len(ids))
    starts = np.cumsum(sizes) - sizes
    return _Groups(list(ids), order, starts, sizes, index)


def _reduce(ufunc: np.ufunc, x: F64, g: _Groups) -> F64:
    return ufunc.reduceat(x[g.order], g.starts, axis=0)


def _counts(block: Block, g: _Groups) -> F64:
    return _reduce(np.add, block.present.astype(np.float64), g)


def _sum(block: Block, g: _Groups, param: F64 | None) -> F64:
    return _reduce(np.add, np.where(block.present, block.values, 0.0), g)


def _avg(block: Block, g: _Groups, param: F64 | None) -> F64:
    n = _counts(block, g)
    out = _sum(block, g, None) / n
    overflow = np.isinf(out)
    if overflow.any():
        # A sum of finite values that overflowed: Prometheus's running mean does not.
        scaled = _reduce(np.add, np.where(block.present, block.values / n[g.index], 0.0), g)
        out = np.where(overflow & np.isfinite(scaled), scaled, out)
    return out


def _max(block: Block, g: _Groups, param: F64 | None) -> F64:
    return _reduce(np.fmax, np.where(block.present, block.values, np.nan), g)


def _min(block: Block, g: _Groups, param: F64 | None) -> F64:
    return _reduce(np.fmin, np.where(block.present, block.values, np.nan), g)


def _count(block: Block, g: _Groups, param: F64 | None) -> F64:
    return _counts(block, g)


def _group(block: Block, g: _Groups, param: F64 | None) -> F64:
    return np.ones((len(g.keys), block.steps))


def _stdvar(block: Block, g: _Groups, param: F64 | None) -> F64:
    n = _counts(block, g)
    mean = _sum(block, g, None) / n
    dev = np.where(block.present, block.values - mean[g.index], 0.0)
    return _reduce(np.add, dev * dev, g) / n


def _stddev(block: Block, g: _Groups, param: F64 | None) -> F64:
    return np.sqrt(_stdvar(block, g, None))


def _quantile(block: Block, g: _Groups, param: F64 | None) -> F64:
    assert param is not None
    out = np.empty((len(g.keys), block.steps))
    for gi in range(len(g.keys)):
        rows = g.order[g.starts[gi] : g.starts[gi] + g.sizes[gi]]
        v, p = block.values[rows], block.present[rows]
        # Ascending with NaN first (Prometheus's order); absent cells sort last and are never
        # reached because each column only looks at its first ``n`` entries.
        key = np.where(p, np.where(np.isnan(v), -np.inf, v), np.inf)
        order = np.argsort(key, axis=0, kind="stable")
        sorted_v = np.take_along_axis(np.where(p, v, np.inf), order, axis=0)
        n = p.sum(axis=0)
        flat = sorted_v.T.ravel()  # column-major: each step's values contiguous
        starts = np.arange(block.steps) * len(rows)
        out[gi] = quantile_sorted(param, flat, starts, np.maximum(n, 1))
    return out


#: Aggregations reducing each group to one value: name -> impl(block, groups, param).
AGGREGATIONS: dict[str, Callable[[Block, _Groups, F64 | None], F64]] = {
    "sum": _sum,
    "avg": _avg,
    "max": _max,
    "min": _min,
    "count": _count,
    "group": _group,
    "stddev": _stddev,
    "stdvar": _stdvar,
    "quantile": _quantile,
}


def _k_of(param: F64) -> npt.NDArray[np.int64]:
    """topk/bottomk's k per step: truncated toward zero; beyond int64 is an error as in Prometheus."""
    bad = ~((param <= 9223372036854774784.0) & (param >= -9223372036854775808.0))
    if bad.any():
        raise QueryExecutionError(f"Scalar value {param[bad][0]} overflows int64", field="query")
    return np.trunc(param).astype(np.int64)


def _topk(block: Block, g: _Groups, param: F64, bottom: bool) -> Block:
    """Rows among the k largest (smallest) of their group at each step; NaN ranks last."""
    k = _k_of(param)
    selected = np.zeros_like(block.present)
    rank_of = np.zeros(block.values.shape, np.int64)
    for gi in range(len(g.keys)):
        rows = g.order[g.starts[gi] : g.starts[gi] + g.sizes[gi]]
        v, p = block.values[rows], block.present[rows]
        key = np.where(np.isnan(v), np.inf, v if bottom else -v)
        key = np.where(p, key, np.nan)  # absent cells sort after everything
        order = np.argsort(key, axis=0, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(len(rows))[:, None], axis=0)
        selected[rows] = p & (ranks < k[None, :])
        rank_of[rows] = ranks
    out = Block(list(block.labels), block.values.copy(), selected)
    if block.steps == 1:
        # An instant query lists each group's members best first, groups in first-seen order.
        order = np.lexsort((rank_of[:, 0], g.index))
        out = out.take(order)
    return out


def format_go_float(value: float) -> str:
    """``strconv.FormatFloat(v, 'f', -1, 64)``: shortest round-trip digits, never an exponent."""
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return np.format_float_positional(value, unique=True, trim="-")


def _count_values(block: Block, grouping: Grouping, label: str) -> Block:
    if not label or label[0].isdigit() or not set(label) <= _LABEL_NAME_CHARS:
        raise QueryExecutionError(f"invalid label name {label!r}", field="query")
    rows, steps = np.nonzero(block.present)
    vals = block.values[rows, steps]
    uniq, inverse = np.unique(vals.view(np.int64), return_inverse=True)  # bitwise: NaN-safe
    texts = [format_go_float(float(v)) for v in uniq.view(np.float64)]
    ids: dict[Labels, int] = {}
    pair_ids: dict[tuple[int, int], int] = {}
    group_of = np.empty(len(rows), np.intp)
    for cell, (row, vi) in enumerate(zip(rows.tolist(), inverse.ravel().tolist(), strict=True)):
        gid = pair_ids.get((row, vi))
        if gid is None:
            labels = dict(block.labels[row])
            labels[label] = texts[vi]
            names = set(grouping.labels)
            if grouping.without:
                names.add(METRIC_NAME)
                key = tuple(sorted((n, v) for n, v in labels.items() if n not in names))
            else:
                names.add(label)
                key = tuple(sorted((n, v) for n, v in labels.items() if n in names))
            gid = ids.setdefault(key, len(ids))
            pair_ids[(row, vi)] = gid
        group_of[cell] = gid
    counts = np.zeros((len(ids), block.steps))
    np.add.at(counts, (group_of, steps), 1.0)
    return Block(list(ids), counts, counts > 0)


def aggregate(op: str, block: Block, grouping: Grouping, param: F64 | str | None) -> Block:
    """Apply aggregation ``op`` to ``block``; ``param`` is k/q per step or count_values' label."""
    block = block.compact()
    if op == "count_values":
        assert isinstance(param, str)
        return _count_values(block, grouping, param)
    if len(block) == 0:
        return Block.empty(block.steps)
    groups = _group_rows(block.labels, grouping)
    if op in ("topk", "bottomk"):
        assert isinstance(param, np.ndarray)
        return _topk(block, groups, param, bottom=op == "bottomk")
    assert param is None or isinstance(param, np.ndarray)
    values = AGGREGATIONS[op](block, groups, param)
    present = _counts(block, groups) > 0
    return Block(groups.keys, values, present)
