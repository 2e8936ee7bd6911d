"""Inverted label index of one shard: label name -> value -> set of series ids.

The metric name is indexed as label ``__name__``. Selection follows Prometheus: a series
matches when every matcher accepts its value for that label, a missing label counting as "".
Matchers that cannot match "" narrow the candidates through postings (smallest set first);
the others then filter those candidates. Not thread-safe; the shard's lock guards it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tsdb.labels import LabelSet, Matcher, MatchOp

__all__ = ["LabelIndex"]

NAME_LABEL = "__name__"


class LabelIndex:
    """Postings for every (label name, value) pair; see the module docstring."""

    __slots__ = ("_all", "_postings")

    def __init__(self) -> None:
        self._postings: dict[str, dict[str, set[int]]] = {}
        self._all: set[int] = set()

    def add(self, sid: int, metric: str, labels: LabelSet) -> None:
        """Index a new series."""
        self._all.add(sid)
        self._postings.setdefault(NAME_LABEL, {}).setdefault(metric, set()).add(sid)
        for name, value in labels:
            self._postings.setdefault(name, {}).setdefault(value, set()).add(sid)

    def remove(self, sid: int, metric: str, labels: LabelSet) -> None:
        """Forget a series; empty postings are dropped so label listings stay exact."""
        self._all.discard(sid)
        for name, value in ((NAME_LABEL, metric), *labels):
            values = self._postings.get(name)
            if values is None:
                continue
            ids = values.get(value)
            if ids is not None:
                ids.discard(sid)
                if not ids:
                    del values[value]
                    if not values:
                        del self._postings[name]

    def _positive(self, m: Matcher) -> set[int]:
        """Series whose label ``m.name`` exists and matches (m must not match "")."""
        values = self._postings.get(m.name)
        if not values:
            return set()
        if m.op is MatchOp.EQ:
            return values.get(m.value, set())
        out: set[int] = set()
        for value, ids in values.items():
            if m.matches(value):
                out |= ids
        return out

    def _rejected(self, m: Matcher) -> set[int]:
        """Series whose label ``m.name`` exists and is rejected (m matches "")."""
        values = self._postings.get(m.name)
        out: set[int] = set()
        if not values:
            return out
        if m.op is MatchOp.NE:
            return values.get(m.value, out)
        for value, ids in values.items():
            if not m.matches(value):
                out |= ids
        return out

    def select(self, matchers: Sequence[Matcher]) -> set[int]:
        """Ids of the series matching every matcher (all series when there are none)."""
        positive = [m for m in matchers if not m.matches_empty()]
        negative = [m for m in matchers if m.matches_empty()]
        if positive:
            sets = sorted((self._positive(m) for m in positive), key=len)
            result = set(sets[0])
            for s in sets[1:]:
                if not result:
                    break
                result &= s
        else:
            result = set(self._all)
        for m in negative:
            if not result:
                break
            result -= self._rejected(m)
        return result

    def label_names(self, sids: Iterable[int] | None = None) -> set[str]:
        """Label names in use (``__name__`` included), over all series or only ``sids``."""
        if sids is None:
            return set(self._postings)
        wanted = set(sids)
        return {name for name, values in self._postings.items() if any(ids & wanted for ids in values.values())}

    def label_values(self, name: str, sids: Iterable[int] | None = None) -> set[str]:
        """Values of label ``name`` in use, over all series or only ``sids``."""
        values = self._postings.get(name, {})
        if sids is None:
            return set(values)
        wanted = set(sids)
        return {v for v, ids in values.items() if not ids.isdisjoint(wanted)}

    def postings_count(self, name: str) -> dict[str, int]:
        """Series count per value of label ``name`` (for cardinality reports)."""
        return {v: len(ids) for v, ids in self._postings.get(name, {}).items()}

    def pair_counts(self) -> dict[tuple[str, str], int]:
        """Series count per (label name, value) pair."""
        return {(n, v): len(ids) for n, values in self._postings.items() for v, ids in values.items()}
