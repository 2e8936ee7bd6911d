"""Request parameters of the Prometheus HTTP API, read as Prometheus reads them.

Prometheus takes parameters from the URL and, for POST/PUT with
``Content-Type: application/x-www-form-urlencoded``, from the body (Go's ``r.Form``: body values
first, so a body value wins over the same name in the URL). Grafana sends its queries as such
form POSTs. python-multipart is not installed, and not needed: the body is parsed here with
``urllib.parse``.

Values, as ``web/api/v1`` parses them:

- times (``time``, ``start``, ``end``): float Unix seconds, rounded to the millisecond as
  Prometheus rounds them, or RFC 3339 (truncated to the millisecond, Prometheus's resolution);
  Prometheus's own spellings of its minimum and maximum time are accepted too. Results are int
  nanoseconds, clamped to tsdb's time range.
- durations (``step``, ``timeout``): float seconds or a Prometheus duration (``15s``, ``1h30m``).
- ``match[]``: repeated series selectors; each is one set of ANDed matchers, the sets are ORed.
- ``limit``: a non-negative integer, 0 = no limit.

Every error is an ``InvalidQueryError`` whose message is Prometheus's
(``invalid parameter "start": cannot parse "x" to a valid timestamp``), so it answers 400 with
``errorType`` ``bad_data``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

from starlette.requests import Request

from tsdb.errors import InvalidInputError, InvalidQueryError
from tsdb.labels import Matcher
from tsdb.query import selector
from tsdb.timeutil import MAX_NS, MIN_NS, parse_duration_ns, to_ns

__all__ = ["PROM_MAX_TIME", "PROM_MIN_TIME", "PromParams", "read_params"]

#: How Prometheus spells its smallest and largest times (clients such as Thanos send them).
PROM_MIN_TIME: Final = "-292273086-05-16T16:47:06Z"
PROM_MAX_TIME: Final = "292277025-08-18T07:12:54.999999999Z"

_NS_PER_MS: Final = 1_000_000
_FORM: Final = "application/x-www-form-urlencoded"
#: Bounds the number of fields a query string or form may hold: a body within the size limit
#: cannot make the server build millions of tiny strings.
_MAX_FIELDS: Final = 10_000
_ZERO_DURATION_RE: Final = re.compile(r"0+(?:ms|s|m|h|d|w|y)?")


def _bad(name: str, detail: str) -> InvalidQueryError:
    return InvalidQueryError(f"invalid parameter {_quote(name)}: {detail}", field=name)


def _quote(text: str) -> str:
    """A string quoted as Go's %q does for printable ASCII (enough for messages)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_qs(text: str) -> dict[str, list[str]]:
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except ValueError as exc:  # too many fields
        raise InvalidQueryError(f"invalid parameters: {exc}", field=None) from None


@dataclass(frozen=True, slots=True)
class PromParams:
    """The merged parameters of one request: name -> values, body values first."""

    values: dict[str, list[str]]

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (as Go's ``FormValue``), or None when absent."""
        found = self.values.get(name)
        return found[0] if found else None

    def all(self, name: str) -> list[str]:
        """Every value of ``name`` (``match[]`` may repeat)."""
        return self.values.get(name, [])

    def time(self, name: str, default: int | None = None) -> int:
        """A time parameter in int ns; ``default`` when absent (required when None)."""
        text = self.get(name)
        if text is None or (text == "" and default is not None):
            if default is None:
                raise _bad(name, 'cannot parse "" to a valid timestamp')
            return default
        return parse_time(text, name)

    def duration(self, name: str) -> int | None:
        """A duration parameter in int ns (may be <= 0: callers check), None when absent."""
        text = self.get(name)
        if text is None or text == "":
            return None
        return parse_duration(text, name)

    def match_sets(self, *, required: bool) -> list[list[Matcher]]:
        """The ``match[]`` selectors, each parsed into matchers; [] when absent and not required."""
        texts = self.all("match[]")
        if not texts:
            if required:
                raise InvalidQueryError("no match[] parameter provided", field="match[]")
            return []
        out = []
        for text in texts:
            try:
                out.append(selector.parse_selector(text))
            except InvalidQueryError as exc:
                raise _bad("match[]", exc.message) from None
        return out

    def limit(self) -> int | None:
        """The ``limit`` parameter: None for absent or 0 (no limit)."""
        text = self.get("limit")
        if text is None or text == "":
            return None
        try:
            value = int(text)
        except ValueError:
            raise _bad("limit", f"cannot parse {_quote(text)} to a valid limit") from None
        if value < 0:
            raise _bad("limit", "limit must be non-negative")
        return value or None


def parse_time(text: str, name: str) -> int:
    """A Prometheus time parameter (see the module docstring) as int ns."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None and text.strip().lower().lstrip("+-") not in ("inf", "infinity", "nan"):
        whole = math.trunc(seconds)
        ms = round((seconds - whole) * 1000)  # Prometheus: math.Modf, then round to 1/1000 s
        return _clamp(int(whole) * 1_000_000_000 + ms * _NS_PER_MS)
    if text == PROM_MIN_TIME:
        return MIN_NS
    if text == PROM_MAX_TIME:
        return MAX_NS
    if "T" in text or "t" in text:  # RFC 3339 only, as Prometheus (no bare dates)
        try:
            ns = to_ns(text, field=name)
        except InvalidInputError:
            pass
        else:
            return _clamp(ns - ns % _NS_PER_MS)
    raise _bad(name, f"cannot parse {_quote(text)} to a valid timestamp")


def parse_duration(text: str, name: str) -> int:
    """A Prometheus duration parameter as int ns: float seconds or ``1h30m`` style."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or abs(seconds) > 9.2e9:
            raise _bad(name, f"cannot parse {_quote(text)} to a valid duration. It overflows int64")
        return round(seconds * 1_000_000_000)
    if _ZERO_DURATION_RE.fullmatch(text):
        return 0
    try:
        return parse_duration_ns(text, field=name)
    except InvalidInputError:
        raise _bad(name, f"cannot parse {_quote(text)} to a valid duration") from None


def _clamp(ns: int) -> int:
    return min(max(ns, MIN_NS), MAX_NS)


async def read_params(request: Request) -> PromParams:
    """URL parameters merged with a form body (POST/PUT), body values first.

    A form body that is not valid UTF-8 raises InvalidQueryError (400).
    """
    merged: dict[str, list[str]] = {}
    content_type = request.headers.get("content-type", "")
    if request.method in ("POST", "PUT") and content_type.split(";", 1)[0].strip().lower() == _FORM:
        raw = await request.body()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidQueryError("the form body is not valid UTF-8", field="body") from None
        merged = _parse_qs(text)
    query = request.scope["query_string"]
    if query:
        for name, values in _parse_qs(query.decode("latin-1")).items():
            merged.setdefault(name, []).extend(values)
    return PromParams(merged)
