"""PromQL binary operators: arithmetic, comparisons (filtering or ``bool``), and/or/unless.

Vector matching follows Prometheus 2.x ``VectorBinop``: rows are matched on a signature (the
``on`` labels, or every label but ``__name__`` and the ``ignoring`` ones); one-to-one needs a
unique partner per signature; ``group_left``/``group_right`` allow many rows on one side and
copy the ``group_x(...)`` labels from the "one" side. Matching happens per step, so every
(left row, right row) pair with equal signatures becomes one candidate output row whose
presence is the AND of both inputs' presence, and the uniqueness rules are checked per step.

Arithmetic drops the metric name, comparisons keep it unless ``bool`` is given, and for a
comparison the kept value is the left operand's (or the vector's, for scalar-vector).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .errors import QueryExecutionError
from .values import METRIC_NAME, Block, Labels, ScalarSteps, drop_name

__all__ = [
    "ARITHMETIC",
    "COMPARISON",
    "SET_OPS",
    "Matching",
    "merge_rows",
    "scalar_binop",
    "vector_binop",
    "vector_scalar_binop",
]

F64 = npt.NDArray[np.float64]

ARITHMETIC: dict[str, Callable[[F64, F64], F64]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "%": np.fmod,  # Go's math.Mod: the result takes the dividend's sign, like C fmod
    "^": np.power,
    "atan2": np.arctan2,
}
COMPARISON: dict[str, Callable[[F64, F64], npt.NDArray[np.bool_]]] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}
SET_OPS = frozenset({"and", "or", "unless"})
#: Operators after which Prometheus 2.x drops the metric name (atan2 is not among them).
_DROPS_NAME = frozenset({"+", "-", "*", "/", "%", "^"})


@dataclass(frozen=True, slots=True)
class Matching:
    """Vector matching: ``card`` is one of one-to-one, many-to-one, one-to-many, many-to-many;
    ``on`` selects ``on(labels)`` (else ``ignoring(labels)``); ``include`` the group_x labels."""

    card: str = "one-to-one"
    on: bool = False
    labels: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    return_bool: bool = False
    _names: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = set(self.labels) if self.on else {*self.labels, METRIC_NAME}
        object.__setattr__(self, "_names", frozenset(names))

    def signature(self, labels: Labels) -> Labels:
        """The labels two rows must share to match."""
        if self.on:
            return tuple(p for p in labels if p[0] in self._names)
        return tuple(p for p in labels if p[0] not in self._names)


def merge_rows(block: Block, *, per_step: bool = True) -> Block:
    """Merge rows with equal label sets into one row.

    With ``per_step`` (operators evaluated step by step in Prometheus) rows may share labels as
    long as they never are present at the same step; otherwise (range functions, negation,
    which Prometheus checks series-wide) any repeated label set is an error.
    """
    block = block.compact()
    if len(set(block.labels)) == len(block.labels):
        return block
    rows: dict[Labels, list[int]] = {}
    for i, lab in enumerate(block.labels):
        rows.setdefault(lab, []).append(i)
    labels, values, present = [], [], []
    for lab, idx in rows.items():
        p = block.present[idx]
        if len(idx) > 1 and (not per_step or (p.sum(axis=0) > 1).any()):
            raise QueryExecutionError("vector cannot contain metrics with the same labelset", field="query")
        pick = p.argmax(axis=0)
        cols = np.arange(block.steps)
        labels.append(lab)
        values.append(block.values[idx][pick, cols])
        present.append(p.any(axis=0))
    return Block(labels, np.array(values), np.array(present))


def scalar_binop(op: str, lhs: F64, rhs: F64) -> ScalarSteps:
    """Scalar op scalar (comparisons need ``bool``, which the parser enforces; they give 0/1)."""
    if op in ARITHMETIC:
        return ScalarSteps(ARITHMETIC[op](lhs, rhs))
    return ScalarSteps(COMPARISON[op](lhs, rhs).astype(np.float64))


def vector_scalar_binop(op: str, vec: Block, scalar: F64, *, scalar_left: bool, return_bool: bool) -> Block:
    """Vector op scalar (or scalar op vector when ``scalar_left``), per step."""
    s = scalar[None, :]
    lhs, rhs = (s, vec.values) if scalar_left else (vec.values, s)
    present = vec.present.copy()
    if op in ARITHMETIC:
        values = np.broadcast_to(ARITHMETIC[op](lhs, rhs), vec.values.shape).copy()
    else:
        keep = COMPARISON[op](lhs, rhs)
        if return_bool:
            values = keep.astype(np.float64)
        else:
            values = vec.values.copy()  # a filter keeps the vector's value, whichever side it is on
            present &= keep
    drop = op in _DROPS_NAME or return_bool
    labels = [drop_name(lab) for lab in vec.labels] if drop else list(vec.labels)
    return merge_rows(Block(labels, values, present))


def _sig_presence(block: Block, sig_ids: npt.NDArray[np.intp], n_sigs: int) -> npt.NDArray[np.bool_]:
    """For every signature id, whether any row with it is present at each step."""
    out = np.zeros((n_sigs, block.steps), np.bool_)
    if len(block):
        np.logical_or.at(out, sig_ids, block.present)
    return out


def _set_op(op: str, lhs: Block, rhs: Block, matching: Matching) -> Block:
    sigs: dict[Labels, int] = {}
    lsig = np.array([sigs.setdefault(matching.signature(lab), len(sigs)) for lab in lhs.labels], np.intp)
    rsig = np.array([sigs.setdefault(matching.signature(lab), len(sigs)) for lab in rhs.labels], np.intp)
    steps = lhs.steps
    if op == "or":
        left_has = _sig_presence(lhs, lsig, len(sigs))
        r_present = rhs.present & ~(left_has[rsig] if len(rsig) else np.zeros((0, steps), np.bool_))
        both = Block(lhs.labels + rhs.labels, np.vstack([lhs.values, rhs.values]), np.vstack([lhs.present, r_present]))
        return merge_rows(both)
    right_has = _sig_presence(rhs, rsig, len(sigs))
    matched = right_has[lsig] if len(lsig) else np.zeros((0, steps), np.bool_)
    present = lhs.present & (matched if op == "and" else ~matched)  # else: unless
    return Block(list(lhs.labels), lhs.values.copy(), present).compact()


def _result_labels(many: Labels, one: Labels, op: str, matching: Matching) -> Labels:
    """Prometheus's ``resultMetric``: the output labels of a matched (many, one) pair."""
    d = dict(many)
    if op in _DROPS_NAME or matching.return_bool:
        d.pop(METRIC_NAME, None)
    if matching.card == "one-to-one":
        if matching.on:
            d = {n: v for n, v in d.items() if n in matching.labels}
        else:
            for n in matching.labels:
                d.pop(n, None)
    one_d = dict(one)
    for n in matching.include:
        if one_d.get(n):
            d[n] = one_d[n]
        else:
            d.pop(n, None)
    return tuple(sorted(d.items()))


def _describe(labels: Labels) -> str:
    return "{" + ", ".join(f'{n}="{v}"' for n, v in labels) + "}"


def _check_one_side(
    one: Block, one_sig: npt.NDArray[np.intp], active: npt.NDArray[np.bool_], side: str, matching: Matching
) -> None:
    """The 'one' side may hold each signature only once per step (where both sides are non-empty)."""
    if len(one) == 0:
        return
    counts = np.zeros((int(one_sig.max()) + 1, one.steps), np.int64)
    np.add.at(counts, one_sig, one.present.astype(np.int64))
    bad = (counts > 1) & active[None, :]
    if bad.any():
        sig_id, step = np.argwhere(bad)[0]
        rows = [i for i in np.flatnonzero(one_sig == sig_id) if one.present[i, step]][:2]
        raise QueryExecutionError(
            f"found duplicate series for the match group {_describe(matching.signature(one.labels[rows[0]]))} "
            f"on the {side} hand-side of the operation: "
            f"[{_describe(one.labels[rows[0]])}, {_describe(one.labels[rows[1]])}]"
            ";many-to-many matching not allowed: matching labels must be unique on one side",
            field="query",
        )


def vector_binop(op: str, lhs: Block, rhs: Block, matching: Matching) -> Block:
    """Vector op vector with Prometheus's matching rules (see the module docstring)."""
    if op in SET_OPS:
        return _set_op(op, lhs, rhs, matching)
    if matching.card == "many-to-many":
        raise QueryExecutionError("many-to-many only allowed for set operators", field="query")
    swap = matching.card == "one-to-many"
    many, one = (rhs, lhs) if swap else (lhs, rhs)
    sigs: dict[Labels, int] = {}
    many_sig = np.array([sigs.setdefault(matching.signature(lab), len(sigs)) for lab in many.labels], np.intp)
    one_sig = np.array([sigs.setdefault(matching.signature(lab), len(sigs)) for lab in one.labels], np.intp)
    active = lhs.present.any(axis=0) & rhs.present.any(axis=0)  # Prometheus short-circuits empty sides
    _check_one_side(one, one_sig, active, "left" if swap else "right", matching)
    one_rows: dict[int, list[int]] = {}
    for j, s in enumerate(one_sig.tolist()):
        one_rows.setdefault(s, []).append(j)
    pairs_m, pairs_o = [], []
    for i, s in enumerate(many_sig.tolist()):
        for j in one_rows.get(s, ()):
            pairs_m.append(i)
            pairs_o.append(j)
    if not pairs_m:
        return Block.empty(lhs.steps)
    pm, po = np.array(pairs_m, np.intp), np.array(pairs_o, np.intp)
    present = many.present[pm] & one.present[po] & active[None, :]
    lv, rv = many.values[pm], one.values[po]
    if swap:
        lv, rv = rv, lv
    if op in ARITHMETIC:
        values = ARITHMETIC[op](lv, rv)
    else:
        keep = COMPARISON[op](lv, rv)
        if matching.return_bool:
            values = keep.astype(np.float64)
        else:
            values = lv.copy()
            present &= keep
    labels = [
        _result_labels(many.labels[i], one.labels[j], op, matching) for i, j in zip(pairs_m, pairs_o, strict=True)
    ]
    _check_unique_matches(labels, many_sig[pm], present, matching)
    return merge_rows(Block(labels, values, present))


def _check_unique_matches(
    labels: list[Labels], sig: npt.NDArray[np.intp], present: npt.NDArray[np.bool_], matching: Matching
) -> None:
    """One-to-one: one result per signature and step; many-to-one: one per result label set."""
    keys: dict[object, int] = {}
    if matching.card == "one-to-one":
        ids = np.array([keys.setdefault(int(s), len(keys)) for s in sig], np.intp)
        message = "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    else:
        ids = np.array([keys.setdefault((int(s), lab), len(keys)) for s, lab in zip(sig, labels, strict=True)], np.intp)
        message = "multiple matches for labels: grouping labels must ensure unique matches"
    if len(keys) == len(ids):
        return
    counts = np.zeros((len(keys), present.shape[1]), np.int64)
    np.add.at(counts, ids, present.astype(np.int64))
    if (counts > 1).any():
        raise QueryExecutionError(message, field="query")
