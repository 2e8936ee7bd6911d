"""Inverted label index of one shard: label name -> value -> series ids.

The metric name is indexed as label ``__name__``. Selection follows Prometheus: a series
matches when every matcher accepts its value for that label, a missing label counting as "".

Memory matters at 100k+ series, so postings are compact: a value held by one series (the
usual case for ``instance`` or ``host``) maps to the bare int id, larger ones to an
``array('q')`` (8 bytes a member, where a Python set costs ~50). Selection therefore does not
intersect sets: it takes the candidates of the most selective matcher from the postings and
checks every other matcher against each candidate's own labels, which costs O(candidates).
Label strings are deduplicated against the index's keys, so a value shared by many series
is held once. Not thread-safe; the shard's lock guards it.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Sequence

from tsdb.labels import LabelSet, Matcher, MatchOp

__all__ = ["NAME_LABEL", "LabelIndex", "label_value"]

NAME_LABEL = "__name__"
Posting = int | array  # type: ignore[type-arg]


def label_value(metric: str, labels: LabelSet, name: str) -> str:
    """Value of label ``name`` of a series ("" when absent); ``__name__`` is the metric."""
    if name == NAME_LABEL:
        return metric
    for n, v in labels:
        if n == name:
            return v
    return ""


def _ids(p: Posting | None) -> Iterable[int]:
    if p is None:
        return ()
    return (p,) if type(p) is int else p  # type: ignore[return-value]


def _size(p: Posting | None) -> int:
    if p is None:
        return 0
    return 1 if type(p) is int else len(p)  # type: ignore[arg-type]


class LabelIndex:
    """Postings for every (label name, value) pair; see the module docstring.

    ``identity(sid)`` must return (metric, labels) of a live series; ``all_ids()`` every id.
    """

    __slots__ = ("_all_ids", "_identity", "_postings")

    def __init__(self, identity: Callable[[int], tuple[str, LabelSet]], all_ids: Callable[[], Iterable[int]]) -> None:
        self._postings: dict[str, dict[str, Posting]] = {}
        self._identity = identity
        self._all_ids = all_ids

    def _add_one(self, name: str, value: str, sid: int) -> None:
        values = self._postings.get(name)
        if values is None:
            values = self._postings[name] = {}
        p = values.get(value)
        if p is None:
            values[value] = sid
        elif type(p) is int:
            values[value] = array("q", (p, sid))
        else:
            p.append(sid)  # type: ignore[union-attr]

    def _canonical(self, name: str, value: str) -> str:
        values = self._postings.get(name)
        if values and value in values:
            for key in values.keys() & {value}:
                return key  # the dict's own key object
        return value

    def _canonical_name(self, name: str) -> str:
        if name in self._postings:
            for key in self._postings.keys() & {name}:
                return key
        return name

    def add(self, sid: int, metric: str, labels: LabelSet) -> tuple[str, LabelSet]:
        """Index a new series; returns (metric, labels) made of the index's own strings, so
        equal strings across series are stored once."""
        metric = self._canonical(NAME_LABEL, metric)
        self._add_one(NAME_LABEL, metric, sid)
        out = []
        changed = False
        for pair in labels:
            name, value = pair
            cname, cvalue = self._canonical_name(name), self._canonical(name, value)
            if cname is not name or cvalue is not value:
                pair, changed = (cname, cvalue), True
            self._add_one(cname, cvalue, sid)
            out.append(pair)
        return metric, (tuple(out) if changed else labels)

    def remove(self, sid: int, metric: str, labels: LabelSet) -> None:
        """Forget a series; empty postings are dropped so label listings stay exact."""
        for name, value in ((NAME_LABEL, metric), *labels):
            values = self._postings.get(name)
            p = None if values is None else values.get(value)
            if p is None:
                continue
            if type(p) is int:
                if p == sid:
                    del values[value]  # type: ignore[union-attr]
            else:
                p.remove(sid)  # type: ignore[union-attr]
                if len(p) == 1:  # type: ignore[arg-type]
                    values[value] = p[0]  # type: ignore[index]
            if not values:
                del self._postings[name]

    def _union(self, m: Matcher, accept: bool) -> list[int]:
        """Ids of series having label ``m.name`` whose value m accepts (or rejects)."""
        values = self._postings.get(m.name)
        if not values:
            return []
        if m.op is MatchOp.EQ and accept:
            return list(_ids(values.get(m.value)))
        out: list[int] = []
        for value, p in values.items():
            if m.matches(value) == accept:
                out.extend(_ids(p))
        return out

    def select(self, matchers: Sequence[Matcher]) -> list[int]:
        """Ids of the series matching every matcher (every series when there are none)."""
        positive = [m for m in matchers if not m.matches_empty()]
        if positive:
            # Candidates from the most selective positive matcher (equality sizes are known
            # without work; regex matchers are only expanded when nothing else narrows).
            eq = [m for m in positive if m.op is MatchOp.EQ]
            first = min(eq, key=lambda m: _size(self._postings.get(m.name, {}).get(m.value))) if eq else positive[0]
            candidates: Iterable[int] = self._union(first, True)
            rest = [m for m in matchers if m is not first]
        else:
            candidates, rest = self._all_ids(), list(matchers)
        if not rest:
            return list(candidates)
        identity = self._identity
        out = []
        for sid in candidates:
            metric, labels = identity(sid)
            for m in rest:
                if not m.matches(label_value(metric, labels, m.name)):
                    break
            else:
                out.append(sid)
        return out

    def label_names(self, sids: Iterable[int] | None = None) -> set[str]:
        """Label names in use (``__name__`` included), over all series or only ``sids``."""
        if sids is None:
            return set(self._postings)
        names = set()
        for sid in sids:
            _metric, labels = self._identity(sid)
            names.add(NAME_LABEL)
            names.update(n for n, _ in labels)
        return names

    def label_values(self, name: str, sids: Iterable[int] | None = None) -> set[str]:
        """Values of label ``name`` in use, over all series or only ``sids``."""
        if sids is None:
            return set(self._postings.get(name, {}))
        out = set()
        for sid in sids:
            v = label_value(*self._identity(sid), name)
            if v:
                out.add(v)
        return out

    def pair_counts(self) -> dict[tuple[str, str], int]:
        """Series count per (label name, value) pair."""
        return {(n, v): _size(p) for n, values in self._postings.items() for v, p in values.items()}
