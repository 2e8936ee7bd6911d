"""PromQL: Prometheus's query language evaluated over the ``promql-parser`` AST.

Entry points: ``instant_query(querier, expr, time_ns)`` and
``range_query(querier, expr, start_ns, end_ns, step_ns)``; ``querier`` is anything that
implements ``tsdb.storage.interface.Querier`` (``tsdb.TSDB`` does). Modules, by verb:
``evaluator`` (node dispatch, steps), ``selectors`` (lookback, staleness, offset, @),
``range_functions`` and ``functions`` (the function registry), ``aggregations``, ``binops``,
``values`` (result types).
"""

from .errors import QueryExecutionError
from .evaluator import DEFAULT_LOOKBACK_NS, instant_query, parse_query, range_query
from .values import InstantVector, Matrix, MatrixSeries, QueryResult, Scalar, String, VectorSample

__all__ = [
    "DEFAULT_LOOKBACK_NS",
    "InstantVector",
    "Matrix",
    "MatrixSeries",
    "QueryExecutionError",
    "QueryResult",
    "Scalar",
    "String",
    "VectorSample",
    "instant_query",
    "parse_query",
    "range_query",
]
