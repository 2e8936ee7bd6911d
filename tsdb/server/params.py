"""Query-string parameters shared by the routes: times, ranges, selectors and durations.

Times are epoch seconds (int or float), RFC 3339 strings or ``now``. Selectors are PromQL
vector selectors (``cpu{host=~"a|b"}``) parsed with promql-parser; the simple form is
``metric=cpu&label=host=a&label=dc=x`` (equality only). Errors are InvalidQueryError naming
the parameter, so they answer 400 with ``field`` set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from tsdb.errors import InvalidQueryError
from tsdb.labels import Matcher, MatchOp
from tsdb.query import selector
from tsdb.timeutil import MAX_NS, MIN_NS, now_ns, parse_duration_ns, to_ns

__all__ = [
    "ALL_SERIES",
    "build_matchers",
    "parse_duration_seconds",
    "parse_range",
    "parse_selector",
    "parse_time",
]

#: Matches every series (every series has a non-empty name).
ALL_SERIES: Final = (Matcher("__name__", MatchOp.RE, ".+"),)


def parse_time(text: str, field: str) -> int:
    """A time parameter as int ns: epoch seconds, RFC 3339, or ``now``."""
    value = text.strip()
    if value == "now":
        return now_ns()
    try:
        seconds = float(value)
    except ValueError:
        return to_ns(value, field=field)
    if value.lstrip("+-").isdigit():
        return to_ns(int(value), field=field)  # exact for integral seconds
    return to_ns(seconds, field=field)


def parse_range(start: str | None, end: str | None) -> tuple[int, int]:
    """``(start_ns, end_ns)``, open ends as the widest range; InvalidQueryError if start > end."""
    start_ns = MIN_NS if start is None or start == "" else parse_time(start, "start")
    end_ns = MAX_NS if end is None or end == "" else parse_time(end, "end")
    if start_ns > end_ns:
        raise InvalidQueryError(f"start {start!r} is after end {end!r}: start must be <= end", field="start")
    return start_ns, end_ns


def parse_duration_seconds(text: str, field: str) -> float:
    """A positive duration (``30s``, ``5m``, ``1h30m`` or seconds) in seconds."""
    return parse_duration_ns(text, field=field) / 1e9


def parse_selector(text: str, field: str = "match") -> list[Matcher]:
    """The matchers of a PromQL vector selector; the metric name becomes ``__name__="..."``."""
    try:
        return selector.parse_selector(text)
    except InvalidQueryError as exc:
        raise InvalidQueryError(exc.message, field=field) from None


def build_matchers(
    match: str | None = None, metric: str | None = None, labels: Sequence[str] | None = None, *, required: bool = False
) -> list[Matcher]:
    """Matchers from ``match`` (a selector), ``metric`` and ``label`` params (``name=value``).

    All given parts are ANDed. With none given: ``ALL_SERIES``, or InvalidQueryError when
    ``required`` (deleting everything must be asked for explicitly).
    """
    out: list[Matcher] = []
    if match:
        out.extend(parse_selector(match))
    if metric:
        out.append(Matcher.eq("__name__", metric))
    for pair in labels or ():
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidQueryError(f"label parameter {pair!r:.80} must look like name=value", field="label")
        out.append(Matcher.eq(name, value))
    if not out:
        if required:
            raise InvalidQueryError("give a selector: match, metric or label", field="match")
        return list(ALL_SERIES)
    return out
