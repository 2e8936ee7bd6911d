"""Series identity: metric names, labels, canonical keys and label matchers.

A series is a metric name plus a set of labels (str -> str). Names follow Prometheus's rules:
metric names match ``[a-zA-Z_:][a-zA-Z0-9_:]*`` and label names ``[a-zA-Z_][a-zA-Z0-9_]*``;
label names starting with ``__`` are reserved (``__name__`` is the metric name). A label with an
empty value is the same as no label, as in Prometheus, so it is dropped.

Inside the engine labels are a ``LabelSet``: a tuple of ``(name, value)`` pairs sorted by name,
hashable and cheap to compare. The canonical key ``metric{a="x",b="y"}`` is the series' identity
on disk and the input of the shard hash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

import xxhash

from tsdb.errors import InvalidNameError, InvalidQueryError

__all__ = [
    "LabelSet",
    "Limits",
    "MatchOp",
    "Matcher",
    "canonical_key",
    "labels_to_dict",
    "make_labelset",
    "matchers_from",
    "shard_of",
    "validate_metric_name",
]

LabelSet = tuple[tuple[str, str], ...]

_METRIC_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits on series identity; they keep one bad client from exhausting memory.

    Defaults are generous for real metrics (Prometheus has no limits; Cortex/Mimir default to
    30 labels and 2048-byte values) and small enough that a 1 MB key is refused.
    """

    max_name_length: int = 256
    max_label_value_length: int = 2048
    max_labels: int = 30


DEFAULT_LIMITS = Limits()


def validate_metric_name(metric: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """Return ``metric`` if it is a valid metric name, else raise InvalidNameError."""
    if not isinstance(metric, str):
        raise InvalidNameError(
            f"metric name must be a string, got {type(metric).__name__} {metric!r:.80}", field="metric"
        )
    if len(metric) > limits.max_name_length:
        raise InvalidNameError(
            f"metric name is {len(metric)} characters long; the limit is {limits.max_name_length}",
            field="metric",
        )
    if not _METRIC_RE.fullmatch(metric):
        raise InvalidNameError(
            f"invalid metric name {metric!r:.80}: must match [a-zA-Z_:][a-zA-Z0-9_:]*", field="metric"
        )
    return metric


def _validate_label(name: object, value: object, limits: Limits) -> None:
    if not isinstance(name, str) or not isinstance(value, str):
        raise InvalidNameError(
            f"label {name!r:.80}={value!r:.80}: label names and values must be strings", field="labels"
        )
    if len(name) > limits.max_name_length or not _LABEL_RE.fullmatch(name):
        raise InvalidNameError(
            f"invalid label name {name!r:.80}: must match [a-zA-Z_][a-zA-Z0-9_]* "
            f"and be at most {limits.max_name_length} characters",
            field="labels",
        )
    if name.startswith("__"):
        raise InvalidNameError(
            f"label name {name!r} is reserved: names starting with '__' are internal", field="labels"
        )
    if len(value) > limits.max_label_value_length:
        raise InvalidNameError(
            f"label {name!r} value is {len(value)} characters long; the limit is {limits.max_label_value_length}",
            field="labels",
        )


def make_labelset(
    labels: Mapping[str, str] | Iterable[tuple[str, str]] | None, limits: Limits = DEFAULT_LIMITS
) -> LabelSet:
    """Validate labels and return them as a sorted LabelSet; empty values are dropped.

    Raises InvalidNameError naming the bad label; nothing is partially accepted.
    """
    if not labels:
        return ()
    if isinstance(labels, Mapping):
        items = labels.items()
    elif isinstance(labels, (list, tuple)):
        items = labels
    else:
        raise InvalidNameError(f"labels must be a mapping of str to str, got {type(labels).__name__}", field="labels")
    pairs = []
    for pair in items:
        name, value = pair
        _validate_label(name, value, limits)
        if value != "":
            # Keep the caller's tuple when it is one: the engine's cache key shares it.
            pairs.append(pair if type(pair) is tuple else (name, value))
    if len(pairs) > limits.max_labels:
        raise InvalidNameError(f"series has {len(pairs)} labels; the limit is {limits.max_labels}", field="labels")
    pairs.sort()
    for i in range(1, len(pairs)):
        if pairs[i][0] == pairs[i - 1][0]:
            raise InvalidNameError(f"label {pairs[i][0]!r} appears twice", field="labels")
    return tuple(pairs)


def labels_to_dict(labels: LabelSet) -> dict[str, str]:
    """The LabelSet as a plain dict (a new one each call)."""
    return dict(labels)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def canonical_key(metric: str, labels: LabelSet) -> str:
    """The series' identity string, ``metric{a="x",b="y"}`` with labels sorted and values escaped
    as in the Prometheus text format; the bare metric name when there are no labels."""
    if not labels:
        return metric
    return metric + "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in labels) + "}"


def shard_of(key: str, num_shards: int) -> int:
    """Stable shard number of a canonical key: xxh64 of its UTF-8 bytes, modulo ``num_shards``.

    Stable across processes and Python versions (unlike ``hash()``), so WAL files and
    snapshots written by one process are read back into the same shard by the next.
    """
    return xxhash.xxh64_intdigest(key.encode()) % num_shards


@lru_cache(maxsize=4096)
def _compile(pattern: str, label: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error as exc:
        raise InvalidQueryError(f"invalid regex {pattern!r} for label {label!r}: {exc}", field="match") from exc


class MatchOp(StrEnum):
    """The four PromQL label matching operators."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher, ``name op value``; the metric name is matched as label ``__name__``.

    Regexes are fully anchored as in PromQL (``=~"a.*"`` does not match ``"ba"``). A missing
    label has the value ``""``, so ``host=""`` selects series without a host label.
    """

    name: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.op, MatchOp):
            try:
                object.__setattr__(self, "op", MatchOp(self.op))
            except ValueError as exc:
                raise InvalidQueryError(
                    f"unknown matcher operator {self.op!r}: expected =, !=, =~ or !~", field="match"
                ) from exc
        if self.op in (MatchOp.RE, MatchOp.NRE):
            _ = self.regex  # compile now so a bad regex fails at construction

    @property
    def regex(self) -> re.Pattern[str]:
        """The compiled regex (only for =~ and !~); use ``fullmatch``, PromQL anchors fully."""
        return _compile(self.value, self.name)

    def matches(self, value: str) -> bool:
        """Whether a label value (``""`` when the label is absent) satisfies this matcher."""
        op = self.op
        if op is MatchOp.EQ:
            return value == self.value
        if op is MatchOp.NE:
            return value != self.value
        if op is MatchOp.RE:
            return self.regex.fullmatch(value) is not None
        return self.regex.fullmatch(value) is None

    def matches_empty(self) -> bool:
        """Whether a series lacking this label matches (the label's value is then "")."""
        return self.matches("")

    @classmethod
    def eq(cls, name: str, value: str) -> Matcher:
        """Shorthand for an equality matcher."""
        return cls(name, MatchOp.EQ, value)

    def __str__(self) -> str:
        return f'{self.name}{self.op.value}"{_escape(self.value)}"'


def matchers_from(metric: str | None, labels: Mapping[str, Any] | None) -> list[Matcher]:
    """Equality matchers for a metric name and a dict of label values (the simple query form)."""
    out = [] if metric is None else [Matcher.eq("__name__", metric)]
    for name, value in (labels or {}).items():
        out.append(Matcher.eq(name, str(value)))
    return out
