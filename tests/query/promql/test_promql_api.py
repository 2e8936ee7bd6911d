"""The public surface of ``tsdb.query.promql`` is pinned: a change here must be deliberate."""

from __future__ import annotations

import tsdb.query.promql as promql


def test_public_names_are_pinned() -> None:
    assert sorted(promql.__all__) == [
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
    for name in promql.__all__:
        assert getattr(promql, name) is not None


def test_every_registered_function_is_known_to_the_parser() -> None:
    """A registry entry the parser cannot reach would be dead code; a typo would hide a function."""
    import promql_parser

    from tsdb.query.promql.functions import FUNCTIONS, RANGE_FUNCTIONS

    for name, spec in RANGE_FUNCTIONS.items():
        args = ", ".join("1" if i != spec.matrix_arg else "x[1m]" for i in range(1 if name != "predict_linear" else 2))
        if name == "quantile_over_time":
            args = "0.5, x[1m]"
        assert isinstance(promql_parser.parse(f"{name}({args})"), promql_parser.Call)
    for name in FUNCTIONS:
        try:
            promql_parser.parse(f"{name}()")
        except ValueError as exc:
            assert "unknown function" not in str(exc), name
