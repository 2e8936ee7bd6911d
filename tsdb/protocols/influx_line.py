"""InfluxDB line protocol -> ``Batch``: the parser behind ``POST /write`` and ``/api/v2/write``.

One line is one point::

    measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]

The grammar and escaping are those of the InfluxDB line protocol reference, as its reference
decoder (influxdata/line-protocol v2) implements them:

- A backslash escapes ``,`` and space in a measurement; ``,``, ``=`` and space in tag keys, tag
  values and field keys; ``"`` and ``\\`` in string field values. A backslash before any other
  character is a literal backslash (``\\\\,`` in a tag value is a backslash then an escaped comma).
- Field values: floats (``1``, ``-1.5e3``), integers (``1i``), unsigned integers (``1u``),
  booleans (``t T true True TRUE f F false False FALSE``, stored as 1.0 / 0.0) and strings
  (``"..."``), which tsdb cannot store: a line with a string field is rejected, naming it.
- Lines starting with ``#`` (after optional spaces) are comments; blank lines are skipped;
  ``\\r\\n`` line ends are accepted. A string field may span lines; the line number of an
  error is the physical line where the point starts (1-based).
- The timestamp is an integer in ``precision`` units; without one a point gets
  ``default_time_ns`` truncated to the precision, as InfluxDB does.

Mapping to series (docs/protocols.md): each field becomes the series
``<measurement>_<field>``, a field named ``value`` the series ``<measurement>``; tags become
labels. Names that break Prometheus's rules are sanitized as Telegraf's prometheus output does
(``sanitize_metric_name``); label values are free text.

A line is accepted or rejected as a whole; valid lines go into the batch and each invalid one
is reported with its line number and reason (InfluxDB's partial write semantics).

Speed: a Telegraf-style body (no escapes, no strings) never runs per-character Python. Lines
are split on spaces, their ``measurement,tags`` prefix looks up a cached series signature, and
the field sections of all lines are rewritten into one JSON array that orjson parses at once
(``a=1,b=2i`` -> ``["a",1,"b",2.0]``). Anything that bulk path does not vouch for (escapes,
quotes, control characters, odd number spellings, an unseen field set, a bad value or
timestamp) goes line by line through the strict parser, which is the reference semantics;
tests check that both paths agree.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt
import orjson

from tsdb._types import Batch, SeriesRef
from tsdb.errors import InvalidInputError, TSDBError
from tsdb.labels import LabelSet, Limits, make_labelset, validate_metric_name
from tsdb.timeutil import MAX_NS, MIN_NS, NS_PER_S

__all__ = [
    "PRECISION_NS",
    "ParseResult",
    "escape_field_key",
    "escape_measurement",
    "escape_tag",
    "parse_lines",
    "precision_ns",
    "sanitize_label_name",
    "sanitize_metric_name",
]

#: Nanoseconds per timestamp unit for the ``precision`` parameter: InfluxDB 2's ns/us/ms/s and
#: InfluxDB 1's n/u/ms/s/m/h.
PRECISION_NS: Final[dict[str, int]] = {
    "ns": 1,
    "n": 1,
    "us": 1_000,
    "u": 1_000,
    "µs": 1_000,
    "µ": 1_000,
    "ms": 1_000_000,
    "s": NS_PER_S,
    "m": 60 * NS_PER_S,
    "h": 3600 * NS_PER_S,
}

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_UINT64_MAX: Final = 2**64 - 1
_BOOLS: Final[dict[bytes, float]] = {
    **dict.fromkeys((b"t", b"T", b"true", b"True", b"TRUE"), 1.0),
    **dict.fromkeys((b"f", b"F", b"false", b"False", b"FALSE"), 0.0),
}
# Go's strconv.ParseFloat decimal syntax as InfluxDB accepts it (no underscores, no hex, no
# inf/nan spellings: those are rejected or non-finite anyway).
_FLOAT_RE: Final = re.compile(rb"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT_RE: Final = re.compile(rb"-?[0-9]+")
_UINT_RE: Final = re.compile(rb"[0-9]+")

# --- the strict tokenizer for lines with escapes, quotes or control characters ------------
# A backslash followed by a character the element escapes is an escape pair; any other
# backslash is literal and does not swallow the next character (the reference decoder's rule).
_MEASUREMENT_RE: Final = re.compile(rb"(?:[^\\, \x00-\x1f\x7f]|\\[, ]|\\)*")
_KEY_RE: Final = re.compile(rb"(?:[^\\,= \x00-\x1f\x7f]|\\[,= ]|\\)*")  # tag keys/values, field keys
_VALUE_RE: Final = re.compile(rb"[^, ]*")
_STRING_RE: Final = re.compile(rb'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_KEY_SECTION_RE: Final = re.compile(rb"(?:[^\\ ]|\\ |\\)*")
_UNESCAPE_MEASUREMENT_RE: Final = re.compile(rb"\\([, ])")
_UNESCAPE_KEY_RE: Final = re.compile(rb"\\([,= ])")
_CONTROL_RE: Final = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]")

# --- the bulk path ---------------------------------------------------------------------------
# An unsigned value the bulk path takes: digits only, at most 18 (always inside uint64).
_GOOD_UINT_RE: Final = re.compile(rb"=(?:0|[1-9][0-9]{0,17})u,")
# Values this large may be integers outside int64 (or floats that only look so): strict path.
_BULK_MAX_ABS: Final = 2.0**63 - 2.0**11
_JSON_INT_RE: Final = re.compile(rb"-?(?:0|[1-9][0-9]{0,18})")
_NAMES = itemgetter(0)
_IDX = itemgetter(1)
_COUNT = itemgetter(2)
_T = TypeVar("_T")

_SHARED: dict[Limits, _Shared] = {}  # see _Shared; filled lazily, one per Limits in use
_SHARED_MAX_SERIES: Final = 200_000


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What one line protocol body produced.

    ``batch`` holds the samples of every accepted line; ``accepted_lines`` counts those lines
    (blank and comment lines count nowhere); ``rejected`` lists ``(line_number, reason)`` for
    each rejected line in body order, line numbers 1-based, each reason starting with
    ``"line N: "`` so it can be shown alone.
    """

    batch: Batch
    accepted_lines: int
    rejected: list[tuple[int, str]]

    @property
    def rejected_lines(self) -> int:
        """Number of rejected lines."""
        return len(self.rejected)


def precision_ns(precision: str) -> int:
    """Nanoseconds per unit of a ``precision`` parameter; InvalidInputError if unknown."""
    try:
        return PRECISION_NS[precision]
    except (KeyError, TypeError):
        raise InvalidInputError(
            f"unknown precision {precision!r}: expected one of {', '.join(PRECISION_NS)}", field="precision"
        ) from None


def parse_lines(
    body: bytes, precision: str = "ns", *, default_time_ns: int, limits: Limits | None = None
) -> ParseResult:
    """Parse a line protocol body (already decompressed) into a Batch.

    ``precision`` is the unit of the timestamps in the body (see ``PRECISION_NS``);
    ``default_time_ns`` (int ns since the epoch) stamps points without a timestamp, truncated
    to the precision. Timestamps must land between years 1824 and 2116 (tsdb's range).
    ``limits`` bound name lengths and label counts (default ``Limits()``). Raises
    InvalidInputError only for a bad ``precision`` or a body that is not bytes; bad lines are
    reported in the result instead.
    """
    factor = precision_ns(precision)
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise InvalidInputError(f"body must be bytes, got {type(body).__name__}", field="body")
    body = bytes(body)
    if b"\r" in body:
        body = body.replace(b"\r\n", b"\n")
    parser = _Parser(limits if limits is not None else Limits(), factor, int(default_time_ns))
    parser.run(body)
    return parser.result()


# --- names -------------------------------------------------------------------------------------

_METRIC_NAME_RE: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LETTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_DIGITS: Final = frozenset("0123456789")


def _sanitize(name: str, first: frozenset[str], rest: frozenset[str]) -> str | None:
    # Telegraf's prometheus serializer: keep a valid first character, drop an invalid one,
    # replace every later invalid character with "_", then trim "_" from both ends.
    out = [name[0]] if name and name[0] in first else []
    out.extend(ch if ch in rest else "_" for ch in name[1:])
    cleaned = "".join(out).strip("_")
    if cleaned and cleaned[0] in _DIGITS:
        # Telegraf would return "0" for "-_0", which is no valid name: keep it valid.
        cleaned = "_" + cleaned
    return cleaned or None


def sanitize_metric_name(name: str) -> str | None:
    """A valid Prometheus metric name made from ``name`` the way Telegraf's prometheus output
    does it, or None when nothing valid is left.

    A valid name is returned unchanged. Otherwise an invalid first character is dropped,
    every later character outside ``[a-zA-Z0-9_:]`` becomes ``_``, and leading and trailing
    underscores are trimmed: ``"cpu-usage.idle"`` -> ``"cpu_usage_idle"``, ``"1x"`` -> ``"x"``.
    Unlike Telegraf, a result that would start with a digit gets a ``_`` prefix
    (``"-_0"`` -> ``"_0"``), so the result is always valid.
    """
    if _METRIC_NAME_RE.fullmatch(name):
        return name
    return _sanitize(name, _LETTERS | {":"}, _LETTERS | _DIGITS | {":"})


def sanitize_label_name(name: str) -> str | None:
    """A valid Prometheus label name made from ``name`` (as ``sanitize_metric_name``, but
    ``:`` is invalid too), or None when nothing valid is left."""
    if _LABEL_NAME_RE.fullmatch(name):
        return name
    return _sanitize(name, _LETTERS, _LETTERS | _DIGITS)


def escape_measurement(name: str) -> str:
    """``name`` escaped for the measurement position (commas and spaces)."""
    return name.replace(",", "\\,").replace(" ", "\\ ")


def escape_tag(text: str) -> str:
    """``text`` escaped for a tag key or tag value (commas, equals signs and spaces)."""
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


escape_field_key = escape_tag


# --- the strict parser -------------------------------------------------------------------------


class _LineError(Exception):
    """One line is invalid; ``reason`` says why (without the line number)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Unterminated(Exception):
    """A string field value is still open at the end of the physical line."""


# A tokenized point: (raw key section, escaped?, [(field key, raw value, is_string)], raw
# timestamp or None). Keys are unescaped bytes; values are the bytes between the separators.
_Fields = list[tuple[bytes, bytes, bool]]
_Point = tuple[bytes, bool, _Fields, bytes | None]


def _show(raw: bytes, limit: int = 60) -> str:
    text = raw.decode("utf-8", "backslashreplace")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _tokenize_clean(line: bytes) -> _Point | None:
    """Tokenize a line without backslashes, quotes or control characters (None: blank/comment)."""
    s = line.lstrip(b" ")
    if not s or s[0] == 35:  # '#'
        return None
    key, _, rest = s.partition(b" ")
    rest = rest.lstrip(b" ")
    if not rest:
        raise _LineError(f"no fields after {_show(key)}: expected 'measurement[,tag=value...] field=value[,...]'")
    fields_part, _, ts = rest.partition(b" ")
    ts, _, extra = ts.lstrip(b" ").partition(b" ")
    extra = extra.strip(b" ")
    if extra:
        raise _LineError(f"unexpected text after the timestamp: {_show(extra)}")
    fields: _Fields = []
    for item in fields_part.split(b","):
        name, eq, value = item.partition(b"=")
        if not name:
            raise _LineError(f"missing field key before {_show(item)}")
        if not eq:
            raise _LineError(f"field key {_show(name)} has no '=value'")
        fields.append((name, value, False))
    return key, False, fields, ts or None


def _skip_spaces(line: bytes, pos: int) -> int:
    n = len(line)
    while pos < n and line[pos] == 32:
        pos += 1
    return pos


def _unexpected(line: bytes, pos: int, where: str) -> _LineError:
    if pos >= len(line):
        return _LineError(f"unexpected end of line {where}")
    return _LineError(f"unexpected character {_show(line[pos : pos + 1])} {where}")


def _tokenize_escaped(line: bytes) -> _Point | None:
    """Tokenize any line with the full escaping rules (None: blank/comment).

    Raises _Unterminated when a string field value runs past the end of ``line``.
    """
    n = len(line)
    pos = _skip_spaces(line, 0)
    if pos == n or line[pos] == 35:
        return None
    key_end = _KEY_SECTION_RE.match(line, pos).end()  # type: ignore[union-attr]
    key = line[pos:key_end]
    pos = _skip_spaces(line, key_end)
    if pos == n:
        raise _LineError(f"no fields after {_show(key)}: expected 'measurement[,tag=value...] field=value[,...]'")
    fields: _Fields = []
    while True:
        m = _KEY_RE.match(line, pos)
        name = m.group()  # type: ignore[union-attr]
        pos = m.end()  # type: ignore[union-attr]
        if not name:
            raise _unexpected(line, pos, "where a field key should start")
        if pos >= n or line[pos] != 61:  # '='
            raise _unexpected(line, pos, f"after field key {_show(name)} (expected '=')")
        name = _UNESCAPE_KEY_RE.sub(rb"\1", name)
        pos += 1
        if pos < n and line[pos] == 34:  # '"'
            m = _STRING_RE.match(line, pos)
            if m is None:
                raise _Unterminated
            fields.append((name, m.group(1), True))
            pos = m.end()
        else:
            m = _VALUE_RE.match(line, pos)
            fields.append((name, m.group(), False))  # type: ignore[union-attr]
            pos = m.end()  # type: ignore[union-attr]
        if pos < n and line[pos] == 44:  # ','
            pos += 1
            continue
        if pos < n and line[pos] != 32:
            raise _unexpected(line, pos, f"after the value of field {_show(name)}")
        break
    pos = _skip_spaces(line, pos)
    ts_end = line.find(b" ", pos)
    ts_end = n if ts_end < 0 else ts_end
    ts = line[pos:ts_end]
    if _skip_spaces(line, ts_end) < n:
        raise _LineError(f"unexpected text after the timestamp: {_show(line[ts_end:].strip(b' '))}")
    return key, True, fields, ts or None


def _parse_key(key: bytes, escaped: bool) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Split a ``measurement[,tag=value...]`` section into unescaped measurement and tags."""
    if not escaped:
        measurement, *items = key.split(b",")
        if not measurement:
            raise _LineError("missing measurement name")
        tags = []
        for item in items:
            name, eq, value = item.partition(b"=")
            _check_tag(name, eq, value, b"=" in value)
            tags.append((name, value))
        return measurement, tags
    n = len(key)
    m = _MEASUREMENT_RE.match(key)
    pos = m.end()  # type: ignore[union-attr]
    if pos == 0:
        raise _unexpected(key, 0, "where the measurement name should start")
    measurement = _UNESCAPE_MEASUREMENT_RE.sub(rb"\1", m.group())  # type: ignore[union-attr]
    tags = []
    while pos < n:
        if key[pos] != 44:
            raise _unexpected(key, pos, "after the measurement or a tag")
        m = _KEY_RE.match(key, pos + 1)
        name, pos = m.group(), m.end()  # type: ignore[union-attr]
        eq = key[pos : pos + 1] == b"="
        value = b""
        if eq:
            m = _KEY_RE.match(key, pos + 1)
            value, pos = m.group(), m.end()  # type: ignore[union-attr]
        _check_tag(name, eq, value, pos < n and key[pos] == 61)
        tags.append((_UNESCAPE_KEY_RE.sub(rb"\1", name), _UNESCAPE_KEY_RE.sub(rb"\1", value)))
    return measurement, tags


def _check_tag(name: bytes, eq: bytes | bool, value: bytes, extra_equals: bool) -> None:
    if not name:
        raise _LineError("empty tag key")
    if not eq:
        raise _LineError(f"tag key {_show(name)} has no '=value'")
    if not value:
        raise _LineError(f"tag {_show(name)} has an empty value")
    if extra_equals:
        raise _LineError(f"tag {_show(name)} value contains an unescaped '='")


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise _LineError(f"{what} {_show(raw)} is not valid UTF-8") from None


def _field_value(name: bytes, raw: bytes, is_string: bool) -> float:
    """The float of one field value, or _LineError naming the field."""
    if is_string:
        raise _LineError(
            f"field {_show(name)} has a string value ({_show(raw, 40)}); tsdb stores numbers only "
            "(floats, integers, unsigned integers, booleans): send it as a tag or drop the field"
        )
    if not raw:
        raise _LineError(f"field {_show(name)} has no value")
    last = raw[-1]
    if raw[0] in b"tTfF":
        value = _BOOLS.get(raw)
        if value is None:
            raise _LineError(f"field {_show(name)} has an invalid boolean {_show(raw)}")
        return value
    if raw[0] not in b"-0123456789.":
        raise _LineError(
            f"field {_show(name)} has a value of unknown type {_show(raw)}: expected a float (1.5), "
            "an integer (1i), an unsigned integer (1u) or a boolean (true)"
        )
    if last == 105 or last == 117:  # 'i', 'u'
        digits = raw[:-1]
        kind, low, high = ("integer", _INT64_MIN, _INT64_MAX) if last == 105 else ("unsigned", 0, _UINT64_MAX)
        if not (_INT_RE if last == 105 else _UINT_RE).fullmatch(digits):
            raise _LineError(f"field {_show(name)} has an invalid {kind} {_show(raw)}")
        number = int(digits)
        if not low <= number <= high:
            raise _LineError(f"field {_show(name)} {kind} {_show(raw)} is out of range")
        return float(number)
    if not _FLOAT_RE.fullmatch(raw):
        raise _LineError(f"field {_show(name)} has an invalid number {_show(raw)}")
    value = float(raw)
    if not math.isfinite(value):
        raise _LineError(f"field {_show(name)} value {_show(raw)} is out of the float64 range")
    return value


# --- the parser --------------------------------------------------------------------------------

# A signature: the field names of a line (JSON's reading of them), the shared series index of
# each field, and their count. A key with several field sets maps to {field count: signature}.
_Signature = tuple[list[str], tuple[int, ...], int]


class _Shared:
    """Series and line signatures learnt from earlier bodies, for one Limits: a cache.

    ``signatures`` maps the raw ``measurement,tags`` bytes of a line to its signature, so a
    line of a known key and field set needs no parsing of its names at all; ``series`` and
    ``index`` intern the series those signatures name. Results never depend on it (a fresh
    instance gives the same batches, only slower). Thread-safe: lookups are single dict/list
    reads; interning takes the lock. Replaced whole by ``_shared`` once it holds more than
    _SHARED_MAX_SERIES series or keys, so its memory stays bounded.
    """

    def __init__(self) -> None:
        self.series: list[SeriesRef] = []
        self.index: dict[SeriesRef, int] = {}
        self.signatures: dict[bytes, _Signature | dict[int, _Signature]] = {}
        self.lock = threading.Lock()

    def intern(self, ref: SeriesRef) -> int:
        """The index of ``ref`` in ``series``, appending it if new."""
        idx = self.index.get(ref)
        if idx is None:
            with self.lock:
                idx = self.index.get(ref)
                if idx is None:
                    self.series.append(ref)
                    idx = self.index[ref] = len(self.series) - 1
        return idx

    def learn(self, key: bytes, signature: _Signature) -> None:
        """Remember ``signature`` for lines starting with ``key`` (one per field count)."""
        count = signature[2]
        old = self.signatures.get(key)
        if old is None or (isinstance(old, tuple) and old[2] == count):
            self.signatures[key] = signature
        elif isinstance(old, dict):
            old[count] = signature
        else:
            self.signatures[key] = {old[2]: old, count: signature}


def _shared(limits: Limits) -> _Shared:
    shared = _SHARED.get(limits)
    if shared is None or max(len(shared.series), len(shared.signatures)) > _SHARED_MAX_SERIES:
        shared = _SHARED[limits] = _Shared()
    return shared


class _Parser:
    """Parses one body; not thread-safe (one instance per call)."""

    def __init__(self, limits: Limits, factor: int, default_time_ns: int) -> None:
        self.limits = limits
        self.factor = factor
        default_units = default_time_ns // factor
        self.default_ns = default_units * factor
        self.default_token = str(default_units).encode()
        self.ts_low = -(-MIN_NS // factor)  # smallest timestamp (in units) inside the range
        self.ts_high = MAX_NS // factor
        self.shared = _shared(limits)
        self.bulk = True  # False: every line through the strict parser (tests compare both)
        self.keys: dict[tuple[bytes, bool], tuple[str, LabelSet] | _LineError] = {}
        self.metrics: dict[tuple[str, bytes], str | _LineError] = {}
        self.lines: list[bytes] = []
        self.line_numbers: list[int] | None = None
        self.accepted = 0
        self.rejected: list[tuple[int, str]] = []
        # Rows, series as indexes into shared.series: strict lines as lists, bulk rounds as arrays.
        self.rows: tuple[list[int], list[int], list[float]] = ([], [], [])
        self.chunks: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []

    # -- driver --

    def run(self, body: bytes) -> None:
        lines = body.split(b"\n")
        special = _special_predicate(body)
        if b'"' in body:
            lines = self._join_strings(lines)
        self.lines = lines
        if not self.bulk:
            for i in range(len(lines)):
                self._strict(i)
            return
        self._bulk(*self._scan(lines, special))

    def result(self) -> ParseResult:
        idx_rows, ts_rows, value_rows = self.rows
        chunks = [
            *self.chunks,
            (np.array(idx_rows, np.int64), np.array(ts_rows, np.int64), np.array(value_rows, np.float64)),
        ]
        shared_idx = np.concatenate([c[0] for c in chunks])
        # Renumber the shared series indexes into the batch's own dense series list.
        used = np.flatnonzero(np.bincount(shared_idx, minlength=1))
        remap = np.zeros(int(used[-1]) + 1 if len(used) else 1, np.int64)
        remap[used] = np.arange(len(used))
        all_series = self.shared.series
        series = [all_series[j] for j in used.tolist()]
        batch = Batch(
            series,
            remap[shared_idx],
            np.concatenate([c[1] for c in chunks]),
            np.concatenate([c[2] for c in chunks]),
        )
        self.rejected.sort()
        return ParseResult(batch, self.accepted, self.rejected)

    def _line_number(self, i: int) -> int:
        return i + 1 if self.line_numbers is None else self.line_numbers[i]

    def _join_strings(self, lines: list[bytes]) -> list[bytes]:
        """Merge physical lines where a quoted string field value spans a newline."""
        out: list[bytes] = []
        numbers: list[int] = []
        i, n = 0, len(lines)
        while i < n:
            line, number = lines[i], i + 1
            if b'"' in line:
                while i + 1 < n:
                    try:
                        _tokenize_escaped(line)
                    except _Unterminated:
                        i += 1
                        line += b"\n" + lines[i]
                        continue
                    except _LineError:
                        pass
                    break
            out.append(line)
            numbers.append(number)
            i += 1
        if len(out) != n:
            self.line_numbers = numbers
        return out

    # -- the per-line loop --

    def _scan(
        self, lines: list[bytes], special: Callable[[bytes], bool] | None
    ) -> tuple[list[bytes], list[bytes], list[_Signature], list[int]]:
        """Route each line: to the bulk lists when its key and field set are known, else to
        the strict parser (which learns them for the next line and the next body)."""
        if special is None:
            uniform = self._scan_uniform(lines)
            if uniform is not None:
                return uniform
        get = self.shared.signatures.get
        strict = self._strict
        default_token = self.default_token
        routed: list[tuple[bytes, bytes, _Signature, int]] = []
        add = routed.append
        for i, line in enumerate(lines):
            if special is not None and special(line):
                strict(i)
                continue
            parts = line.split(b" ")
            count = len(parts)
            if count == 3:
                key, fields, ts = parts
            elif count == 2:
                key, fields = parts
                ts = default_token
            else:
                strict(i)
                continue
            signature = get(key)
            if signature.__class__ is dict:
                signature = signature.get(fields.count(b"="))  # type: ignore[union-attr]
            if signature is None:
                strict(i, key)
                continue
            add((fields, ts, signature, i))  # type: ignore[arg-type]
        if not routed:
            return [], [], [], []
        fields_list, ts_list, signatures, numbers = zip(*routed, strict=True)
        return list(fields_list), list(ts_list), list(signatures), list(numbers)

    def _scan_uniform(self, lines: list[bytes]) -> tuple[list[bytes], list[bytes], list[_Signature], list[int]] | None:
        """``_scan`` without a Python loop for the common body where every line has the same
        number of spaces (2: with timestamps, 1: without) and no escapes; None otherwise."""
        n = len(lines)
        spaces = list(map(bytes.count, lines, repeat(b" ", n)))
        if spaces.count(2) == n:
            tokens = b" ".join(lines).split(b" ")
            keys, fields, ts = tokens[0::3], tokens[1::3], tokens[2::3]
        elif spaces.count(1) == n:
            tokens = b" ".join(lines).split(b" ")
            keys, fields, ts = tokens[0::2], tokens[1::2], [self.default_token] * n
        else:
            return None
        signatures = list(map(self.shared.signatures.get, keys))
        if len(set(map(type, signatures))) > 1 or signatures[0].__class__ is not tuple:
            # Unseen keys (None) or keys with several field sets (dicts): sort them out.
            resolved = [
                sig.get(f.count(b"=")) if sig.__class__ is dict else sig  # type: ignore[union-attr]
                for sig, f in zip(signatures, fields, strict=True)
            ]
            get = self.shared.signatures.get
            for j in [j for j, sig in enumerate(resolved) if sig is None]:
                sig = get(keys[j])  # learnt from an earlier line of this body?
                resolved[j] = sig.get(fields[j].count(b"=")) if sig.__class__ is dict else sig  # type: ignore[union-attr]
                if resolved[j] is None:
                    self._strict(j, keys[j])
                    resolved[j] = False  # type: ignore[call-overload]
            keep = [j for j, sig in enumerate(resolved) if sig]
            return (
                [fields[j] for j in keep],
                [ts[j] for j in keep],
                [resolved[j] for j in keep],  # type: ignore[misc]
                keep,
            )
        return fields, ts, signatures, list(range(n))  # type: ignore[return-value]

    # -- strict, one line at a time --

    def _strict(self, i: int, learn_key: bytes | None = None) -> None:
        """Parse line ``i`` with the reference rules, store or reject it, learn its signature."""
        line = self.lines[i]
        try:
            clean = not (b"\\" in line or b'"' in line or _CONTROL_RE.search(line))
            point = _tokenize_clean(line) if clean else _tokenize_escaped(line)
            if point is None:
                return
            key, escaped, fields, raw_ts = point
            names, idx, values, ts = self._convert(key, escaped, fields, raw_ts)
        except _Unterminated:
            reason = "a string field value has no closing quote"
        except _LineError as exc:
            reason = exc.reason
        else:
            idx_rows, ts_rows, value_rows = self.rows
            idx_rows.extend(idx)
            ts_rows.extend([ts] * len(idx))
            value_rows.extend(values)
            self.accepted += 1
            if learn_key is not None and learn_key == key:
                self.shared.learn(key, (names, idx, len(idx)))
            return
        number = self._line_number(i)
        self.rejected.append((number, f"line {number}: {reason}"))

    def _convert(
        self, key: bytes, escaped: bool, fields: _Fields, raw_ts: bytes | None
    ) -> tuple[list[str], tuple[int, ...], list[float], int]:
        measurement, labels = self._series_key(key, escaped)
        values = [_field_value(name, raw, is_string) for name, raw, is_string in fields]
        metrics = [self._metric(measurement, name) for name, _, _ in fields]
        ts = self._timestamp(raw_ts)
        names = [name.decode() for name, _, _ in fields]  # valid UTF-8: _metric checked
        return names, tuple(self.shared.intern((metric, labels)) for metric in metrics), values, ts

    def _series_key(self, key: bytes, escaped: bool) -> tuple[str, LabelSet]:
        cached = self.keys.get((key, escaped))
        if cached is None:
            try:
                cached = self._parse_series_key(key, escaped)
            except _LineError as exc:
                cached = exc
            self.keys[(key, escaped)] = cached
        if isinstance(cached, _LineError):
            raise cached
        return cached

    def _parse_series_key(self, key: bytes, escaped: bool) -> tuple[str, LabelSet]:
        raw_measurement, raw_tags = _parse_key(key, escaped)
        measurement = _decode(raw_measurement, "measurement")
        pairs = []
        for raw_name, raw_value in raw_tags:
            name = _decode(raw_name, "tag key")
            label = sanitize_label_name(name)
            if label is None:
                raise _LineError(f"tag key {name!r} has no character allowed in a label name")
            pairs.append((label, _decode(raw_value, f"value of tag {name!r}")))
        try:
            return measurement, make_labelset(pairs, self.limits)
        except TSDBError as exc:
            raise _LineError(exc.message) from None

    def _metric(self, measurement: str, field: bytes) -> str:
        cached = self.metrics.get((measurement, field))
        if cached is None:
            try:
                name = _decode(field, "field key")
                joined = measurement if name == "value" else f"{measurement}_{name}"
                metric = sanitize_metric_name(joined)
                if metric is None:
                    raise _LineError(f"{joined!r} has no character allowed in a metric name")
                cached = validate_metric_name(metric, self.limits)
            except _LineError as exc:
                cached = exc
            except TSDBError as exc:
                cached = _LineError(exc.message)
            self.metrics[(measurement, field)] = cached
        if isinstance(cached, _LineError):
            raise cached
        return cached

    def _timestamp(self, raw: bytes | None) -> int:
        if raw is None:
            return self.default_ns
        if not _INT_RE.fullmatch(raw):
            raise _LineError(f"invalid timestamp {_show(raw)}: expected an integer")
        units = int(raw)
        if not self.ts_low <= units <= self.ts_high:
            raise _LineError(f"timestamp {_show(raw)} is out of range: must lie between years 1824 and 2116")
        return units * self.factor

    # -- the bulk path --

    def _bulk(self, fields: list[bytes], ts: list[bytes], signatures: list[_Signature], numbers: list[int]) -> None:
        """Convert the routed lines at once; lines it cannot vouch for go to the strict parser.

        Each round either succeeds or names the lines that failed one of its checks; those are
        parsed strictly and the rest tried again (a handful of rounds at most, one per check).
        """
        while fields:
            bad = self._try_bulk(fields, ts, signatures)
            if bad is None:
                self.accepted += len(fields)
                return
            if not bad:  # a check failed without naming a line: trust none (not expected)
                bad = set(range(len(fields)))
            for j in sorted(bad):
                i = numbers[j]
                self._strict(i, self.lines[i].split(b" ", 1)[0])
            keep = [j for j in range(len(fields)) if j not in bad]
            fields = [fields[j] for j in keep]
            ts = [ts[j] for j in keep]
            signatures = [signatures[j] for j in keep]
            numbers = [numbers[j] for j in keep]

    def _try_bulk(self, fields: list[bytes], ts_tokens: list[bytes], signatures: list[_Signature]) -> set[int] | None:
        """Store the samples of all lines and return None, or return the lines that failed.

        Why a successful round is exact: every line has as many '=' as its signature has
        fields; the JSON rewrite parses; the names at even positions equal the signatures'
        names (which never contain ',' or '='); every value is a number or a boolean. A line
        with misplaced separators breaks one of these (a JSON string swallowing a separator
        ends in ',' and lands in a name or a value), so it cannot slip through as another line.
        """
        stamps = self._bulk_timestamps(ts_tokens)
        if isinstance(stamps, set):
            return stamps
        expected = list(map(_COUNT, signatures))
        counts_list = list(map(bytes.count, fields, repeat(b"=", len(fields))))
        if counts_list != expected:
            return {j for j, (got, want) in enumerate(zip(counts_list, expected, strict=True)) if got != want}
        buf = b",".join(fields) + b","
        if b"\t" in buf or b"\r" in buf:  # JSON would take them as whitespace
            return {j for j, f in enumerate(fields) if b"\t" in f or b"\r" in f}
        try:
            # Without integers ("12i") the body is JSON as it is; with them the parse fails
            # at the first one, and the rewrite below makes them readable.
            flat = orjson.loads(_json_doc(buf))
        except orjson.JSONDecodeError:
            buf_or_bad = _strip_int_suffixes(buf, fields)
            if isinstance(buf_or_bad, set):
                return buf_or_bad
            try:
                flat = orjson.loads(_json_doc(buf_or_bad))
            except orjson.JSONDecodeError:
                return {j for j, f in enumerate(fields) if not _json_ok(f)}
        names = flat[0::2]
        counts = np.array(counts_list, np.int64)
        if names != list(chain.from_iterable(map(_NAMES, signatures))):
            return _mismatched(names, counts, signatures)
        try:
            values = np.array(flat[1::2], dtype=np.float64)
            shaped = values.ndim == 1 and len(values) == len(names)
        except (TypeError, ValueError):
            shaped = False
        if not shaped:
            return {j for j, v in enumerate(_per_line(flat[1::2], counts)) if not _plain_numbers(v)}
        suspect = ~(np.abs(values) < _BULK_MAX_ABS)  # also NaN (a JSON null) and inf
        if suspect.any():
            line_of_row = np.repeat(np.arange(len(fields)), counts)
            return set(line_of_row[suspect].tolist())
        idx = np.array(list(chain.from_iterable(map(_IDX, signatures))), np.int64)
        self.chunks.append((idx, np.repeat(stamps * self.factor, counts), values))
        return None

    def _bulk_timestamps(self, tokens: list[bytes]) -> npt.NDArray[np.int64] | set[int]:
        """Timestamps (precision units) of all lines, or the lines whose timestamp is not a
        plain in-range integer (those get the strict parser's verdict and message)."""
        joined = b",".join(tokens)
        ok = False
        # Only digits and '-' (JSON would also read true, 1.5, 1e9, null and nested arrays).
        if not joined.translate(None, b"0123456789-,"):
            try:
                stamps = np.array(orjson.loads(b"[" + joined + b"]"))
                ok = stamps.dtype == np.int64 and stamps.shape == (len(tokens),)
            except (orjson.JSONDecodeError, OverflowError):
                pass
        if not ok:
            return {
                j
                for j, t in enumerate(tokens)
                if not _JSON_INT_RE.fullmatch(t) or not _INT64_MIN <= int(t) <= _INT64_MAX
            }
        out_of_range = (stamps < self.ts_low) | (stamps > self.ts_high)
        if out_of_range.any():
            return set(np.flatnonzero(out_of_range).tolist())
        return stamps  # type: ignore[no-any-return]


def _special_predicate(body: bytes) -> Callable[[bytes], bool] | None:
    """A test for lines the bulk path must not see (escapes and quotes need the escape-aware
    tokenizer), or None when no line of ``body`` needs one. Control characters need no test
    here: a key holding one is never learnt, and in fields or timestamps the bulk checks
    refuse them (see _try_bulk)."""
    if b"\\" in body or b'"' in body:
        return lambda line: b"\\" in line or b'"' in line
    return None


def _strip_int_suffixes(buf: bytes, fields: list[bytes]) -> bytes | set[int]:
    """Rewrite integer field values so that JSON reads them only if they are integers, or
    return the lines holding an unsigned value the bulk path does not vouch for.

    ``12i`` becomes ``12.0``, which JSON reads as the same number, while ``1.5i`` or ``1e3i``
    become ``1.5.0`` and ``1e3.0``, which JSON refuses (sending the line to the strict parser).
    Integers beyond int64 are caught after parsing by their magnitude. Unsigned values are rarer
    and checked with a regex (a negative one would read fine as JSON).
    """
    if b"u," in buf:
        if len(_GOOD_UINT_RE.findall(buf)) != buf.count(b"u,"):
            return {j for j, f in enumerate(fields) if _bad_unsigned(f)}
        buf = buf.replace(b"u,", b".0,")
    return buf.replace(b"i,", b".0,") if b"i," in buf else buf


def _bad_unsigned(fields: bytes) -> bool:
    line = fields + b","
    return line.count(b"u,") != len(_GOOD_UINT_RE.findall(line))


def _json_doc(buf: bytes) -> bytes:
    # "a=1,b=2,c=3," (lines joined by ",") -> ["a",1,"b",2,"c",3]: names become JSON strings,
    # values stay bare.
    return b'["' + buf[:-1].replace(b",", b',"').replace(b"=", b'",') + b"]"


def _json_ok(fields: bytes) -> bool:
    if b"\t" in fields or b"\r" in fields:
        return False
    line = _strip_int_suffixes(fields + b",", [fields])
    if isinstance(line, set):
        return False
    try:
        flat = orjson.loads(_json_doc(line))
    except orjson.JSONDecodeError:
        return False
    return _plain_numbers(flat[1::2])


def _plain_numbers(values: list[object]) -> bool:
    return all(type(v) in (int, float, bool) for v in values)


def _per_line(values: list[_T], counts: npt.NDArray[np.int64]) -> list[list[_T]]:
    ends = np.cumsum(counts).tolist()
    return [values[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def _mismatched(names: list[str], counts: npt.NDArray[np.int64], signatures: list[_Signature]) -> set[int]:
    """Lines whose field names differ from their key's remembered signature."""
    per_line = _per_line(names, counts)
    return {j for j, (got, sig) in enumerate(zip(per_line, signatures, strict=True)) if got != sig[0]}
