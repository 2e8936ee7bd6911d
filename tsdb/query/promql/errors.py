"""PromQL-specific errors, refining the package tree in ``tsdb.errors``.

Prometheus separates a query it cannot parse (``bad_data``, HTTP 400) from a query that parsed
but failed while running, e.g. many-to-many matching (``execution``, HTTP 422). The second kind
is ``QueryExecutionError``; it stays an ``InvalidQueryError`` so generic handlers still treat it
as the caller's fault.
"""

from __future__ import annotations

from tsdb.errors import InvalidQueryError

__all__ = ["QueryExecutionError"]


class QueryExecutionError(InvalidQueryError):
    """A well-formed query failed during evaluation (Prometheus's ``execution`` error type)."""
