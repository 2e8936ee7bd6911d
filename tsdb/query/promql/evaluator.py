"""Evaluate PromQL over the ``promql-parser`` AST against any ``Querier``.

An instant query is a range query with one step, as in Prometheus: every node is evaluated at
all steps at once (see ``values``), so the cost of a range query is a few numpy passes per node
rather than one evaluation per step. Range queries evaluate at ``start, start + step, ...`` up
to ``end`` inclusive, with no alignment of ``start`` (Prometheus leaves that to the client);
subqueries evaluate their inner expression at absolute multiples of their step.

Semantics are those of Prometheus 2.x (lookback and range windows closed at both ends; see
``selectors`` and ``range_functions``). Anything the engine does not implement raises
``UnsupportedError`` naming it; a query that does not parse raises ``InvalidQueryError``; a
query that fails while running (e.g. many-to-many matching) raises ``QueryExecutionError``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import promql_parser

from tsdb.errors import InvalidQueryError, LimitExceededError, UnsupportedError
from tsdb.storage.interface import Querier

from .aggregations import AGGREGATIONS, Grouping, aggregate
from .binops import SET_OPS, Matching, merge_rows, scalar_binop, vector_binop, vector_scalar_binop
from .functions import FUNCTIONS, CallArgs, absent_labels
from .range_functions import RANGE_FUNCTIONS
from .selectors import RangeSource, RawSeries, at_offset_times, fetch, instant_block, matchers_of, timedelta_ns
from .values import (
    Block,
    InstantVector,
    Matrix,
    MatrixSeries,
    QueryResult,
    Scalar,
    ScalarSteps,
    String,
    StringValue,
    VectorSample,
    drop_name,
)

__all__ = [
    "DEFAULT_LOOKBACK_NS",
    "DEFAULT_SUBQUERY_STEP_NS",
    "MAX_POINTS_PER_SERIES",
    "MAX_SAMPLES",
    "Evaluator",
    "expression_type",
    "instant_query",
    "parse_query",
    "range_query",
]

#: Prometheus's default ``--query.lookback-delta``.
DEFAULT_LOOKBACK_NS = 5 * 60 * 1_000_000_000
#: Step of a subquery written without one (``x[1h:]``): Prometheus's default evaluation interval.
DEFAULT_SUBQUERY_STEP_NS = 60 * 1_000_000_000
#: Prometheus's default ``--query.max-samples``: cells one node may hold at once.
MAX_SAMPLES = 50_000_000
#: Prometheus's HTTP API refuses range queries with more points per series.
MAX_POINTS_PER_SERIES = 11_000

Value = Block | ScalarSteps | StringValue
_AGG_PARAMS = frozenset({"topk", "bottomk", "quantile", "count_values"})
_CARD = {"OneToOne": "one-to-one", "ManyToOne": "many-to-one", "OneToMany": "one-to-many", "ManyToMany": "many-to-many"}
_TYPE_NAMES = {"matrix": "range vector", "vector": "instant vector", "scalar": "scalar", "string": "string"}


def _enum_name(value: Any) -> str:
    return str(value).rsplit(".", 1)[-1]


def parse_query(expr: str) -> Any:
    """Parse a PromQL expression; a syntax or type error raises InvalidQueryError."""
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidQueryError("parse error: the query is empty", field="query")
    try:
        return promql_parser.parse(expr)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise InvalidQueryError(f"parse error: {exc}", field="query") from exc


def expression_type(node: Any) -> str:
    """Static type of a parsed expression: "scalar", "vector", "matrix" or "string"."""
    if isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr)):
        return expression_type(node.expr)
    if isinstance(node, promql_parser.NumberLiteral):
        return "scalar"
    if isinstance(node, promql_parser.StringLiteral):
        return "string"
    if isinstance(node, (promql_parser.MatrixSelector, promql_parser.SubqueryExpr)):
        return "matrix"
    if isinstance(node, promql_parser.Call):
        return _enum_name(node.func.return_type).lower()
    if isinstance(node, promql_parser.BinaryExpr):
        both_scalar = expression_type(node.lhs) == "scalar" and expression_type(node.rhs) == "scalar"
        return "scalar" if both_scalar else "vector"
    return "vector"  # selectors and aggregations


class Evaluator:
    """Evaluates AST nodes at every time of ``steps`` (int64 ns, ascending).

    ``start_ns``/``end_ns`` are the query's own bounds (what ``@ start()``/``@ end()`` mean);
    a subquery gets a child evaluator with its own steps and the same bounds. Not thread-safe;
    one per query.
    """

    def __init__(
        self,
        querier: Querier,
        steps: npt.NDArray[np.int64],
        start_ns: int,
        end_ns: int,
        lookback_ns: int = DEFAULT_LOOKBACK_NS,
        max_samples: int = MAX_SAMPLES,
    ) -> None:
        self.querier = querier
        self.steps = np.asarray(steps, dtype=np.int64)
        self.start_ns = int(start_ns)
        self.end_ns = int(end_ns)
        self.lookback_ns = int(lookback_ns)
        self.max_samples = max_samples

    def eval(self, node: Any) -> Value:
        """Evaluate an expression of scalar, instant-vector or string type."""
        handler = self._HANDLERS.get(type(node))
        if handler is None:
            raise UnsupportedError(f"unsupported PromQL expression {type(node).__name__}: {node}", field="query")
        out = handler(self, node)
        if isinstance(out, Block) and out.values.size > self.max_samples:
            raise LimitExceededError(
                f"query processing would load too many samples into memory ({out.values.size} > "
                f"{self.max_samples}) at {node}",
                field="query",
            )
        return out

    def eval_range(self, node: Any) -> tuple[RangeSource, Any]:
        """Evaluate a range-vector expression: its series and windows, and the selector node."""
        while isinstance(node, promql_parser.ParenExpr):
            node = node.expr
        if isinstance(node, promql_parser.MatrixSelector):
            vs = node.vector_selector
            ends = at_offset_times(vs, self.steps, self.start_ns, self.end_ns)
            range_ns = timedelta_ns(node.range)
            series = fetch(self.querier, matchers_of(vs), int(ends.min()) - range_ns, int(ends.max()))
            return RangeSource(series, ends, range_ns), vs
        if isinstance(node, promql_parser.SubqueryExpr):
            return self._subquery(node), node
        raise InvalidQueryError(f"expected a range vector, got {node}", field="query")

    # --- node handlers ------------------------------------------------------------------------

    def _number(self, node: promql_parser.NumberLiteral) -> ScalarSteps:
        return ScalarSteps(np.full(len(self.steps), float(node.val)))

    def _string(self, node: promql_parser.StringLiteral) -> StringValue:
        return StringValue(node.val)

    def _paren(self, node: promql_parser.ParenExpr) -> Value:
        return self.eval(node.expr)

    def _unary(self, node: promql_parser.UnaryExpr) -> Value:
        value = self.eval(node.expr)
        if isinstance(value, ScalarSteps):
            return ScalarSteps(-value.values)
        if isinstance(value, Block):
            out = Block([drop_name(lab) for lab in value.labels], -value.values, value.present.copy())
            return merge_rows(out, per_step=False)
        raise InvalidQueryError(f"unary minus is not defined for a string: {node}", field="query")

    def _vector_selector(self, node: promql_parser.VectorSelector) -> Block:
        refs = at_offset_times(node, self.steps, self.start_ns, self.end_ns)
        raw = fetch(self.querier, matchers_of(node), int(refs.min()) - self.lookback_ns, int(refs.max()))
        return instant_block(raw, refs, self.lookback_ns)

    def _matrix(self, node: Any) -> Value:
        raise InvalidQueryError(
            f"a range vector ({node}) can only be a function argument or a whole instant query", field="query"
        )

    def _subquery(self, node: promql_parser.SubqueryExpr) -> RangeSource:
        ends = at_offset_times(node, self.steps, self.start_ns, self.end_ns)
        range_ns = timedelta_ns(node.range)
        step = timedelta_ns(node.step) or DEFAULT_SUBQUERY_STEP_NS
        first = int(ends.min()) - range_ns
        inner_start = -(-first // step) * step  # first multiple of the step inside the range
        inner = np.arange(inner_start, int(ends.max()) + 1, step, dtype=np.int64)
        if len(inner) == 0:
            raw = RawSeries([], np.empty(0, np.int64), np.empty(0, np.float64), np.zeros(1, np.int64))
            return RangeSource(raw, ends, range_ns)
        child = Evaluator(self.querier, inner, self.start_ns, self.end_ns, self.lookback_ns, self.max_samples)
        value = child.eval(node.expr)
        if isinstance(value, ScalarSteps):
            value = Block([()], value.values[None, :], np.ones((1, len(inner)), np.bool_))
        if not isinstance(value, Block):
            raise InvalidQueryError(f"a subquery needs an instant vector, got {node.expr}", field="query")
        return RangeSource(_block_to_raw(value.compact(), inner), ends, range_ns)

    def _call(self, node: promql_parser.Call) -> Value:
        name = node.func.name
        args = list(node.args)
        if name in RANGE_FUNCTIONS:
            spec = RANGE_FUNCTIONS[name]
            source, selector = self.eval_range(args[spec.matrix_arg])
            scalars = [self._scalar_arg(a) for i, a in enumerate(args) if i != spec.matrix_arg]
            shape = (len(source.labels), len(self.steps))
            values, present = np.zeros(shape), np.zeros(shape, np.bool_)
            for row, windows in source.windows():
                if len(windows.raw.ts) == 0:
                    continue  # no samples at all: absent at every step
                rows = slice(row, row + windows.lo.shape[0])
                values[rows], present[rows] = spec.impl(windows, scalars, self.steps)
            if name == "absent_over_time":
                return _absent_over_time(present, selector, len(self.steps))
            labels = source.labels if spec.keeps_name else [drop_name(lab) for lab in source.labels]
            return merge_rows(Block(list(labels), values, present), per_step=False)
        impl = FUNCTIONS.get(name)
        if impl is None:
            raise UnsupportedError(f"function {name}() is not supported", field="query")
        out = impl(CallArgs([self.eval(a) for a in args], args, self.steps))
        return merge_rows(out) if isinstance(out, Block) else out

    def _scalar_arg(self, node: Any) -> npt.NDArray[np.float64]:
        value = self.eval(node)
        if not isinstance(value, ScalarSteps):
            raise InvalidQueryError(f"expected a scalar argument, got {node}", field="query")
        return value.values

    def _aggregate(self, node: promql_parser.AggregateExpr) -> Block:
        op = str(node.op)
        if op not in AGGREGATIONS and op not in _AGG_PARAMS:
            raise UnsupportedError(f"aggregation {op}() is not supported", field="query")
        mod = node.modifier
        grouping = Grouping()
        if mod is not None:
            grouping = Grouping(tuple(mod.labels), without=_enum_name(mod.type) == "Without")
        param: Any = None
        if op in _AGG_PARAMS:
            value = self.eval(node.param)
            param = value.value if isinstance(value, StringValue) else self._as_scalar(value, node)
        block = self.eval(node.expr)
        if not isinstance(block, Block):
            raise InvalidQueryError(f"aggregation {op}() needs an instant vector, got {node.expr}", field="query")
        return aggregate(op, block, grouping, param)

    @staticmethod
    def _as_scalar(value: Value, node: Any) -> npt.NDArray[np.float64]:
        if not isinstance(value, ScalarSteps):
            raise InvalidQueryError(f"expected a scalar parameter in {node}", field="query")
        return value.values

    def _binary(self, node: promql_parser.BinaryExpr) -> Value:
        op = str(node.op)
        mod = node.modifier
        return_bool = bool(mod.return_bool) if mod is not None else False
        lhs, rhs = self.eval(node.lhs), self.eval(node.rhs)
        if isinstance(lhs, ScalarSteps) and isinstance(rhs, ScalarSteps):
            return scalar_binop(op, lhs.values, rhs.values)
        if isinstance(lhs, Block) and isinstance(rhs, ScalarSteps):
            return vector_scalar_binop(op, lhs, rhs.values, scalar_left=False, return_bool=return_bool)
        if isinstance(lhs, ScalarSteps) and isinstance(rhs, Block):
            return vector_scalar_binop(op, rhs, lhs.values, scalar_left=True, return_bool=return_bool)
        if isinstance(lhs, Block) and isinstance(rhs, Block):
            return vector_binop(op, lhs, rhs, _matching(op, mod))
        raise InvalidQueryError(f"binary {op} is not defined between these operands: {node}", field="query")

    _HANDLERS: ClassVar[dict[type, Any]] = {
        promql_parser.NumberLiteral: _number,
        promql_parser.StringLiteral: _string,
        promql_parser.ParenExpr: _paren,
        promql_parser.UnaryExpr: _unary,
        promql_parser.VectorSelector: _vector_selector,
        promql_parser.MatrixSelector: _matrix,
        promql_parser.SubqueryExpr: _matrix,
        promql_parser.Call: _call,
        promql_parser.AggregateExpr: _aggregate,
        promql_parser.BinaryExpr: _binary,
    }


def _matching(op: str, mod: Any) -> Matching:
    if mod is None:
        return Matching(card="many-to-many" if op in SET_OPS else "one-to-one")
    on, labels = False, ()
    if mod.matching is not None:
        on = _enum_name(mod.matching.type) == "Include"
        labels = tuple(mod.matching.labels)
    return Matching(
        card=_CARD[_enum_name(mod.card)],
        on=on,
        labels=labels,
        include=tuple(mod.group_labels or ()),
        return_bool=bool(mod.return_bool),
    )


def _block_to_raw(block: Block, steps: npt.NDArray[np.int64]) -> RawSeries:
    """An evaluated vector's points as raw series (what a subquery's range functions read)."""
    rows, cols = np.nonzero(block.present)
    counts = np.bincount(rows, minlength=len(block))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return RawSeries(list(block.labels), steps[cols], block.values[rows, cols], offsets)


def _absent_over_time(present: npt.NDArray[np.bool_], source: Any, steps: int) -> Block:
    missing = ~present.any(axis=0) if len(present) else np.ones(steps, np.bool_)
    return Block([absent_labels(source)], np.ones((1, steps)), missing[None, :])


def _check_range_type(node: Any) -> None:
    kind = expression_type(node)
    if kind not in ("scalar", "vector"):
        raise InvalidQueryError(
            f'invalid expression type "{_TYPE_NAMES[kind]}" for range query, must be Scalar or instant Vector',
            field="query",
        )


def instant_query(querier: Querier, expr: str, time_ns: int, *, lookback_ns: int = DEFAULT_LOOKBACK_NS) -> QueryResult:
    """Evaluate ``expr`` at ``time_ns`` (int ns since the epoch), like ``/api/v1/query``.

    Returns Scalar, String, InstantVector (samples stamped ``time_ns``, in Prometheus's
    evaluation order) or Matrix (for a range-vector expression: the raw samples in each window).
    """
    node = parse_query(expr)
    steps = np.array([int(time_ns)], dtype=np.int64)
    ev = Evaluator(querier, steps, int(time_ns), int(time_ns), lookback_ns)
    with np.errstate(all="ignore"):  # IEEE results (x/0 = Inf, NaN) are PromQL semantics
        if expression_type(node) == "matrix":
            source, _ = ev.eval_range(node)
            return _windows_matrix(source)
        value = ev.eval(node)
    t = int(time_ns)
    if isinstance(value, ScalarSteps):
        return Scalar(t, float(value.values[0]))
    if isinstance(value, StringValue):
        return String(t, value.value)
    present = np.flatnonzero(value.present[:, 0])
    return InstantVector(t, [VectorSample(value.labels[i], float(value.values[i, 0])) for i in present.tolist()])


def _windows_matrix(source: RangeSource) -> Matrix:
    """An instant query of a range vector: each series' samples in its window."""
    series = []
    for _, w in source.windows():
        for i, labels in enumerate(w.raw.labels):
            lo, hi = int(w.lo[i, 0]), int(w.hi[i, 0])
            if hi > lo:
                series.append(MatrixSeries(labels, w.raw.ts[lo:hi].copy(), w.raw.values[lo:hi].copy()))
    return Matrix(series)


def range_query(
    querier: Querier,
    expr: str,
    start_ns: int,
    end_ns: int,
    step_ns: int,
    *,
    lookback_ns: int = DEFAULT_LOOKBACK_NS,
) -> Matrix:
    """Evaluate ``expr`` at ``start_ns, start_ns + step_ns, ...`` up to ``end_ns`` (inclusive),
    like ``/api/v1/query_range``. Series are sorted by labels; a scalar expression gives one
    series with no labels. Raises InvalidQueryError for a bad step/range or a non-vector type.
    """
    start_ns, end_ns, step_ns = int(start_ns), int(end_ns), int(step_ns)
    if step_ns <= 0:
        raise InvalidQueryError(
            "zero or negative query resolution step widths are not accepted. Try a positive integer", field="step"
        )
    if end_ns < start_ns:
        raise InvalidQueryError("end timestamp must not be before start time", field="end")
    if (end_ns - start_ns) // step_ns > MAX_POINTS_PER_SERIES:
        raise InvalidQueryError(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            field="step",
        )
    node = parse_query(expr)
    _check_range_type(node)
    steps = np.arange(start_ns, end_ns + 1, step_ns, dtype=np.int64)
    ev = Evaluator(querier, steps, start_ns, end_ns, lookback_ns)
    with np.errstate(all="ignore"):
        value = ev.eval(node)
    if isinstance(value, ScalarSteps):
        return Matrix([MatrixSeries((), steps.copy(), value.values.copy())])
    assert isinstance(value, Block)
    series = []
    for i in sorted(range(len(value)), key=lambda r: value.labels[r]):
        mask = value.present[i]
        if mask.any():
            series.append(MatrixSeries(value.labels[i], steps[mask], value.values[i][mask]))
    return Matrix(series)
