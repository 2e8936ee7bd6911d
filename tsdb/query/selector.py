"""Series selectors (``cpu{host=~"a|b"}``) to matchers, parsed by promql-parser."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import promql_parser

from tsdb.errors import InvalidQueryError
from tsdb.labels import Matcher, MatchOp

__all__ = ["matchers_of", "parse_selector"]

_OPS = {
    "MatchOp.Equal": MatchOp.EQ,
    "MatchOp.NotEqual": MatchOp.NE,
    "MatchOp.Re": MatchOp.RE,
    "MatchOp.NotRe": MatchOp.NRE,
}


def _op(op: Any) -> MatchOp:
    text = str(op)
    if text in _OPS:
        return _OPS[text]
    for candidate in MatchOp:
        if text == candidate.value:
            return candidate
    raise InvalidQueryError(f"unsupported matcher operator {text}", field="match")


def parse_selector(selector: str) -> list[Matcher]:
    """Matchers of a PromQL vector selector like ``cpu{host="a"}`` or ``{__name__=~"c.*"}``.

    Raises InvalidQueryError for anything that is not a plain selector.
    """
    try:
        expr = promql_parser.parse(selector)
    except Exception as exc:  # the parser raises plain ValueError/RuntimeError variants
        raise InvalidQueryError(f"cannot parse selector {selector!r:.80}: {exc}", field="match") from exc
    if not isinstance(expr, promql_parser.VectorSelector):
        raise InvalidQueryError(f'{selector!r:.80} is not a series selector like cpu{{host="a"}}', field="match")
    if expr.offset is not None or expr.at is not None:
        raise InvalidQueryError("offset and @ are not allowed in a series selector", field="match")
    out = []
    if expr.name:
        out.append(Matcher.eq("__name__", expr.name))
    for m in expr.matchers.matchers:
        if m.name == "__name__" and expr.name:
            continue
        out.append(Matcher(m.name, _op(m.op), m.value))
    if expr.matchers.or_matchers:
        raise InvalidQueryError("'or' inside a selector is not supported", field="match")
    return out


def matchers_of(
    selector: str | Sequence[Matcher] | None, metric: str | None = None, labels: Mapping[str, Any] | None = None
) -> list[Matcher]:
    """Matchers from any accepted form: a selector string, a list of Matcher, plus optional
    metric name and label equalities (all ANDed)."""
    if selector is None:
        out: list[Matcher] = []
    elif isinstance(selector, str):
        out = parse_selector(selector)
    else:
        out = list(selector)
        for m in out:
            if not isinstance(m, Matcher):
                raise InvalidQueryError(f"expected Matcher objects, got {type(m).__name__}", field="match")
    if metric is not None:
        out.append(Matcher.eq("__name__", metric))
    for name, value in (labels or {}).items():
        out.append(Matcher.eq(name, str(value)))
    if not out:
        raise InvalidQueryError("a query needs a metric name or at least one label matcher", field="match")
    return out
