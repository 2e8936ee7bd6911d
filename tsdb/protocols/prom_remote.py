"""Prometheus remote write 1.0 and remote read (SAMPLES responses): bytes <-> Batch / results.

Remote write (``POST /api/v1/write``): the body is a snappy *block* (not framed) holding a
protobuf ``prometheus.WriteRequest`` (tsdb/protocols/prompb). Each TimeSeries names its series
with labels, ``__name__`` among them, and carries samples of (float64 value, int64 ms
timestamp). ``decode_write_request`` turns a body into a Batch:

- Labels: ``__name__`` becomes the metric, the other labels the LabelSet; empty values mean
  "no label", as in Prometheus. A series without ``__name__``, with an invalid or reserved
  name, a duplicate label name or over the Limits fails the whole request, like a bad snappy
  block or bad protobuf: InvalidInputError, which the server answers with 400 (the spec's
  "do not retry").
- Samples: Prometheus's staleness marker (the NaN with bits ``STALE_NAN_BITS``) is kept as a
  value. Other NaN and infinite values, and timestamps outside tsdb's range, cannot be stored:
  those samples are dropped and counted in ``DecodedWrite.dropped_samples`` (Prometheus sends
  NaN for e.g. summary quantiles without observations; failing the whole request for them
  would lose every other sample in it, since 400s are not retried).
- Exemplars and native histograms are not stored; they are counted.

Remote read (``POST /api/v1/read``): ``decode_read_request`` gives the queries (time range in
ms, label matchers); ``encode_read_response`` answers them with a snappy-compressed
``prometheus.ReadResponse`` of raw samples, one QueryResult per query in request order.

Speed: requests are parsed by protobuf's C parser through wire-compatible "views"
(prompb/views.proto) that leave each sample encoded; all samples of a request are then decoded
with numpy at once, and responses are encoded the same way. Per-series work is a dict lookup
of the raw label bytes in a cache of validated series.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import cramjam
import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from tsdb._types import STALE_NAN_BITS, Batch, SeriesRef
from tsdb.errors import InvalidInputError, TSDBError, UnsupportedError
from tsdb.labels import LabelSet, Limits, Matcher, MatchOp, canonical_key, make_labelset, validate_metric_name
from tsdb.protocols.prompb import remote_pb2, types_pb2, views_pb2
from tsdb.storage.interface import SeriesData
from tsdb.timeutil import MAX_NS, MIN_NS

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "READ_RESPONSE_HEADERS",
    "DecodedWrite",
    "Query",
    "decode_read_request",
    "decode_write_request",
    "encode_read_response",
    "encode_write_request",
]

#: Largest decompressed request accepted (bytes). A snappy block states its decompressed size
#: up front; refusing huge claims keeps a 20-byte body from allocating gigabytes.
MAX_DECOMPRESSED_BYTES: Final = 256 * 1024 * 1024

#: HTTP headers of a remote read SAMPLES response, as the remote read spec prescribes.
READ_RESPONSE_HEADERS: Final[dict[str, str]] = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
}

_NS_PER_MS: Final = 1_000_000
_MS_LOW: Final = -(-MIN_NS // _NS_PER_MS)  # smallest ms timestamp inside tsdb's range
_MS_HIGH: Final = MAX_NS // _NS_PER_MS
_MATCH_OPS: Final[dict[int, MatchOp]] = {
    types_pb2.LabelMatcher.EQ: MatchOp.EQ,
    types_pb2.LabelMatcher.NEQ: MatchOp.NE,
    types_pb2.LabelMatcher.RE: MatchOp.RE,
    types_pb2.LabelMatcher.NRE: MatchOp.NRE,
}

#: Validated series by the raw protobuf bytes of their labels, per Limits: a cache (results
#: never depend on it) that spares re-validating the same series in every request. Cleared
#: whole past _SERIES_CACHE_MAX entries. dict reads and writes are atomic, so it is thread-safe.
_SERIES_CACHE: dict[Limits, dict[bytes, SeriesRef]] = {}
_SERIES_CACHE_MAX: Final = 100_000
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class DecodedWrite:
    """What one remote write request held.

    ``batch``: the storable samples (timestamps int64 ns, staleness markers kept).
    ``dropped_samples``: samples left out because their value is NaN/inf (other than the
    staleness marker) or their timestamp lies outside tsdb's range; ``dropped_reason`` says
    why for the first of them (None when nothing was dropped). ``exemplars`` and
    ``histograms``: how many of each the request carried (not stored).
    """

    batch: Batch
    dropped_samples: int
    dropped_reason: str | None
    exemplars: int
    histograms: int


@dataclass(frozen=True, slots=True)
class Query:
    """One remote read query: series matching all ``matchers`` with samples whose timestamp
    lies in ``[start_ms, end_ms]`` (milliseconds, both ends inclusive, as Prometheus reads)."""

    start_ms: int
    end_ms: int
    matchers: list[Matcher]

    @property
    def start_ns(self) -> int:
        """First nanosecond of the range."""
        return self.start_ms * _NS_PER_MS

    @property
    def end_ns(self) -> int:
        """Last nanosecond of the range (the whole end millisecond is included)."""
        return self.end_ms * _NS_PER_MS + _NS_PER_MS - 1


# --- remote write -----------------------------------------------------------------------------


def decode_write_request(body: bytes, limits: Limits | None = None) -> DecodedWrite:
    """Decode a remote write 1.0 body (snappy block of a protobuf WriteRequest).

    Raises InvalidInputError naming the problem for a bad snappy block, bad protobuf, a
    series without ``__name__``, invalid or reserved names and Limits violations; nothing of
    such a request should be stored. See the module docstring for what is dropped or counted.
    """
    limits = limits if limits is not None else Limits()
    raw = _decompress(body)
    try:
        parts = list(views_pb2.WriteRequestView.FromString(raw).timeseries)
    except DecodeError as exc:
        raise InvalidInputError(f"remote write body is not a valid protobuf WriteRequest: {exc}", field="body") from exc
    joined = b"".join(parts)
    buf = np.frombuffer(joined + bytes(_PAD), np.uint8)
    lens = np.fromiter(map(len, parts), np.int64, count=len(parts))
    ends = np.cumsum(lens)
    starts = ends - lens
    walk = _Walk(buf, starts, ends)
    decoder = _SeriesDecoder(limits)
    # Series the walk took: their label fields are the series' bytes before the samples.
    taken = np.flatnonzero(walk.regular & (np.bincount(walk.sample_series, minlength=len(parts)) > 0))
    series_of = np.full(len(parts), -1, np.int64)
    keys = [joined[a:b] for a, b in zip(starts[taken].tolist(), walk.label_end[taken].tolist(), strict=True)]
    series_of[taken] = decoder.intern_all(keys)
    values, ms = _decode_samples(buf, walk.sample_start, walk.sample_len, joined)
    columns = [(series_of[walk.sample_series], ms, values)]
    exemplars, histograms = walk.exemplars, walk.histograms
    # The others (unusual encodings, very long series) go through protobuf one by one.
    for i in np.flatnonzero(~walk.regular).tolist():
        idx, extra_values, extra_ms, extra_exemplars, extra_histograms = _decode_series(
            joined[starts[i] : ends[i]], decoder
        )
        columns.append((np.full(len(extra_ms), idx, np.int64), extra_ms, extra_values))
        exemplars += extra_exemplars
        histograms += extra_histograms
    series_idx, ms, values = (np.concatenate([c[k] for c in columns]) for k in range(3))
    return _drop_unstorable(decoder.series, series_idx, ms, values, exemplars, histograms)


# Bytes of zero padding after a request: gathers at a field's start may read past its end.
_PAD: Final = 32
#: Fields per series the vectorized walk follows; a longer series (thousands of samples in one
#: TimeSeries, as backfills send) goes through protobuf instead of costing one round each.
_MAX_WALK: Final = 64
_J5: Final = np.arange(5)
_TAG_LABEL, _TAG_SAMPLE, _TAG_EXEMPLAR, _TAG_HISTOGRAM = 0x0A, 0x12, 0x1A, 0x22


class _Walk:
    """The fields of every encoded TimeSeries, found for all series at once.

    A series is ``regular`` when its fields are labels (tag 0x0a) followed by samples,
    exemplars and histograms (0x12, 0x1a, 0x22) with well-formed lengths; the others (unusual
    field order, unknown fields, more than _MAX_WALK labels or varied fields) are left to
    protobuf. For regular series the walk gives ``label_end`` (where the label fields end), each
    sample field's payload start, length and series, and the number of exemplars and histograms.

    Three phases, each a few numpy operations per round over all open series: (1) one round per
    label field; (2) series whose remaining fields are all samples of one size, as Prometheus
    sends them, are checked in a single step; (3) the rest, one round per field.
    """

    def __init__(self, buf: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]):
        self.buf, self.ends = buf, ends
        self.windows = np.lib.stride_tricks.sliding_window_view(buf, 5)
        self.regular = np.ones(len(starts), bool)
        self.label_end = self._labels(starts.copy())
        self.samples: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
        self._other_fields(self._uniform_samples(np.flatnonzero(self.regular & (self.label_end < ends))))
        start_all, len_all, series_all = (
            np.concatenate([part[k] for part in self.samples] or [np.empty(0, np.int64)]) for k in range(3)
        )
        keep = self.regular[series_all]
        self.sample_start, self.sample_len, self.sample_series = start_all[keep], len_all[keep], series_all[keep]

    def _field(
        self, p: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """(payload start, payload length, length varint well-formed) of the fields at ``p``."""
        first = self.buf[p + 1]
        if (first < 0x80).all():  # all lengths below 128: one byte each
            return p + 2, first.astype(np.int64), np.ones(len(p), bool)
        head = self.windows[p + 1]
        more = head >= 0x80
        size = 1 + np.argmin(more, axis=1)  # bytes of the length varint (at most 5 read)
        length = (((head & 0x7F).astype(np.int64) << (7 * _J5)) * (size[:, None] > _J5)).sum(axis=1)
        return p + 1 + size, length, ~more.all(axis=1)

    def _labels(self, pos: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Phase 1: where each series' leading run of label fields ends."""
        ends = self.ends
        label_end = ends.copy()
        active = np.flatnonzero(pos < ends)
        for _ in range(_MAX_WALK):
            if not len(active):
                break
            p = pos[active]
            is_label = self.buf[p] == _TAG_LABEL
            label_end[active[~is_label]] = p[~is_label]
            active, p = active[is_label], p[is_label]
            start, length, ok = self._field(p)
            nxt = start + length
            bad = ~ok | (nxt > ends[active])
            self.regular[active[bad]] = False
            pos[active] = nxt
            active = active[~bad & (nxt < ends[active])]
        self.regular[active] = False
        return label_end

    def _uniform_samples(self, series: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Phase 2: take the series whose fields after the labels are samples of one encoded
        size (below 128 bytes); return the others."""
        buf = self.buf
        first = self.label_end[series]
        size = buf[first + 1].astype(np.int64)
        stride = 2 + size
        span = self.ends[series] - first
        candidate = (buf[first] == _TAG_SAMPLE) & (size < 0x80) & (span % stride == 0)
        count = np.where(candidate, span // stride, 0)
        rows = np.repeat(np.arange(len(series)), count)
        offsets = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
        at = first[rows] + offsets * stride[rows]
        row_ok = (buf[at] == _TAG_SAMPLE) & (buf[at + 1] == size[rows])
        uniform = candidate & (np.bincount(rows[~row_ok], minlength=len(series)) == 0)
        take = uniform[rows]
        self.samples.append((at[take] + 2, size[rows][take], series[rows][take]))
        return series[~uniform]

    def _other_fields(self, series: npt.NDArray[np.int64]) -> None:
        """Phase 3: one round per field for the remaining series (samples of varied sizes,
        exemplars, histograms)."""
        pos = self.label_end.copy()
        active = series
        others: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]] = []
        for _ in range(_MAX_WALK):
            if not len(active):
                break
            p = pos[active]
            tag = self.buf[p]
            start, length, ok = self._field(p)
            nxt = start + length
            is_sample = tag == _TAG_SAMPLE
            bad = ~ok | (nxt > self.ends[active]) | ~(is_sample | (tag == _TAG_EXEMPLAR) | (tag == _TAG_HISTOGRAM))
            self.regular[active[bad]] = False
            sample, other = ~bad & is_sample, ~bad & ~is_sample
            self.samples.append((start[sample], length[sample], active[sample]))
            others.append((active[other], tag[other]))
            pos[active] = nxt
            active = active[~bad & (nxt < self.ends[active])]
        self.regular[active] = False  # still open after _MAX_WALK fields
        other_series = np.concatenate([o[0] for o in others] or [np.empty(0, np.int64)])
        other_tags = np.concatenate([o[1] for o in others] or [np.empty(0, np.uint8)])
        counted = self.regular[other_series]
        self.exemplars = int(np.count_nonzero(counted & (other_tags == _TAG_EXEMPLAR)))
        self.histograms = int(np.count_nonzero(counted & (other_tags == _TAG_HISTOGRAM)))


class _SeriesDecoder:
    """Series of one request by the raw bytes of their label fields, validated once per
    process through the shared cache."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.cache = _series_cache(limits)
        self.local: dict[bytes, int] = {}
        self.series: list[SeriesRef] = []

    def intern(self, label_fields: bytes) -> int:
        """The request-local index of the series whose encoded label fields are given."""
        idx = self.local.get(label_fields)
        if idx is None:
            idx = self.local[label_fields] = len(self.series)
            self.series.append(self._ref(label_fields))
        return idx

    def intern_all(self, keys: list[bytes]) -> list[int]:
        """``intern`` for many keys, with the common case (known series) in C loops."""
        new = [k for k in dict.fromkeys(keys) if k not in self.local]
        refs = list(map(self.cache.get, new))
        for j, ref in enumerate(refs):
            if ref is None:
                refs[j] = self._ref(new[j])
        base = len(self.series)
        self.local.update(zip(new, range(base, base + len(new)), strict=True))
        self.series.extend(refs)  # type: ignore[arg-type]
        return list(map(self.local.__getitem__, keys))

    def _ref(self, label_fields: bytes) -> SeriesRef:
        ref = self.cache.get(label_fields)
        if ref is None:
            ref = _series_ref([_label(raw) for raw in _label_payloads(label_fields)], self.limits)
            if len(self.cache) >= _SERIES_CACHE_MAX:
                self.cache.clear()
            self.cache[label_fields] = ref
        return ref


def _label_payloads(label_fields: bytes) -> list[bytes]:
    """The Label messages inside a run of encoded ``labels`` fields (tag 0x0a each)."""
    out = []
    pos, n = 0, len(label_fields)
    while pos < n:
        length = shift = 0
        pos += 1  # the tag, 0x0a (checked by the walk or written by _decode_series)
        while True:
            byte = label_fields[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        out.append(label_fields[pos : pos + length])
        pos += length
    return out


def _decode_series(
    encoded: bytes, decoder: _SeriesDecoder
) -> tuple[int, npt.NDArray[np.float64], npt.NDArray[np.int64], int, int]:
    """One TimeSeries through protobuf: (series index, values, ms, exemplars, histograms)."""
    try:
        ts = views_pb2.TimeSeriesView.FromString(encoded)
    except DecodeError as exc:
        raise InvalidInputError(f"remote write body is not a valid protobuf WriteRequest: {exc}", field="body") from exc
    samples = list(ts.samples)
    if not samples:
        return -1, np.empty(0, np.float64), np.empty(0, np.int64), len(ts.exemplars), len(ts.histograms)
    idx = decoder.intern(b"".join(_field_bytes(_TAG_LABEL, raw) for raw in ts.labels))
    lens = np.fromiter(map(len, samples), np.int64, count=len(samples))
    joined = b"".join(samples)
    values, ms = _decode_samples(np.frombuffer(joined + bytes(_PAD), np.uint8), np.cumsum(lens) - lens, lens, joined)
    return idx, values, ms, len(ts.exemplars), len(ts.histograms)


def _decompress(body: bytes) -> bytes:
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise InvalidInputError(f"body must be bytes, got {type(body).__name__}", field="body")
    claimed = _snappy_length(bytes(body[:10]))
    if claimed > MAX_DECOMPRESSED_BYTES:
        raise InvalidInputError(
            f"snappy block claims {claimed} decompressed bytes; the limit is {MAX_DECOMPRESSED_BYTES}", field="body"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(bytes(body)))
    except cramjam.DecompressionError as exc:
        raise InvalidInputError(
            f"body is not a valid snappy block (remote write and read use snappy's block format, not the framed "
            f"stream format): {exc}",
            field="body",
        ) from exc


def _snappy_length(head: bytes) -> int:
    """The decompressed length a snappy block announces in its leading varint (0 if unreadable)."""
    length = shift = 0
    for byte in head[:5]:
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return length
        shift += 7
    return 0


def _series_cache(limits: Limits) -> dict[bytes, SeriesRef]:
    cache = _SERIES_CACHE.get(limits)
    if cache is None:
        with _CACHE_LOCK:
            cache = _SERIES_CACHE.setdefault(limits, {})
    return cache


def _series_ref(pairs: list[tuple[str, str]], limits: Limits) -> SeriesRef:
    """Validate one series' labels into (metric, LabelSet)."""
    metric = None
    others = []
    for name, value in pairs:
        if name == "__name__":
            if metric is not None:
                raise InvalidInputError(f"series {_show_labels(pairs)} has two __name__ labels", field="labels")
            metric = value
        else:
            others.append((name, value))
    if not metric:
        raise InvalidInputError(
            f"series {_show_labels(pairs)} has no __name__ label: every remote write series needs a metric name",
            field="labels",
        )
    try:
        return validate_metric_name(metric, limits), make_labelset(others, limits)
    except TSDBError as exc:
        raise InvalidInputError(f"series {_show_labels(pairs)}: {exc.message}", field=exc.field) from exc


def _show_labels(pairs: list[tuple[str, str]]) -> str:
    text = "{" + ", ".join(f"{n}={v!r}" for n, v in pairs) + "}"
    return text if len(text) <= 200 else text[:200] + "...}"


def _label(raw: bytes) -> tuple[str, str]:
    """Decode one encoded prometheus.Label (name, value)."""
    n = len(raw)
    # The canonical encoding with short strings: 0x0a len name [0x12 len value].
    if n >= 2 and raw[0] == 0x0A and raw[1] < 0x80:
        end = 2 + raw[1]
        if end == n:
            return _utf8(raw[2:end]), ""
        if end + 2 <= n and raw[end] == 0x12 and raw[end + 1] < 0x80 and end + 2 + raw[end + 1] == n:
            return _utf8(raw[2:end]), _utf8(raw[end + 2 :])
    try:
        label = types_pb2.Label.FromString(raw)
    except DecodeError as exc:
        raise InvalidInputError(f"remote write label is not a valid protobuf Label: {exc}", field="labels") from exc
    return label.name, label.value


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise InvalidInputError(f"label {raw!r:.80} is not valid UTF-8", field="labels") from None


_J10: Final = np.arange(10)
_SHIFTS: Final = (7 * np.arange(10)).astype(np.uint64)


def _decode_samples(
    buf: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], lens: npt.NDArray[np.int64], raw: bytes
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Values and ms timestamps of the encoded prometheus.Sample messages at ``starts`` (with
    ``lens`` bytes each) in ``buf`` (``raw``'s bytes plus zero padding), decoded with numpy.

    A sample is ``[0x09 <8-byte little-endian double>] [0x10 <varint int64>]``, each field
    absent when zero (proto3). Samples in any other shape (field order, unknown or repeated
    fields) are rare and go through protobuf one by one.
    """
    n = len(starts)
    if n == 0:
        return np.empty(0, np.float64), np.empty(0, np.int64)
    # One row of the 20 bytes a sample can span, per sample (padding covers the overrun).
    rows = np.lib.stride_tricks.sliding_window_view(buf, 20)[starts]
    has_value = (lens >= 9) & (rows[:, 0] == 0x09)
    values = np.ascontiguousarray(rows[:, 1:9]).view("<f8").ravel().astype(np.float64)
    values[~has_value] = 0.0
    varint_len = lens - 9 * has_value - 1  # bytes after the 0x10 tag; -1 when there is no timestamp
    has_ts = varint_len >= 0
    tag = np.where(has_value, rows[:, 9], rows[:, 0])
    groups = np.where(has_value[:, None], rows[:, 10:20], rows[:, 1:11])
    in_varint = varint_len[:, None] > _J10
    last = (varint_len - 1)[:, None] == _J10
    continuation = (groups & 0x80) != 0
    # Inside the varint every byte but the last has the continuation bit; a 10-byte varint's
    # last byte holds bit 63 only.
    well_formed = (~in_varint | (continuation != last)).all(axis=1) & ((varint_len < 10) | (groups[:, 9] <= 1))
    ok = ~has_ts | ((tag == 0x10) & (varint_len >= 1) & (varint_len <= 10) & well_formed)
    ms = (((groups & 0x7F).astype(np.uint64) << _SHIFTS) * in_varint).sum(axis=1, dtype=np.uint64).view(np.int64)
    ms[~has_ts] = 0
    for j in np.flatnonzero(~ok).tolist():
        start = int(starts[j])
        try:
            sample = types_pb2.Sample.FromString(raw[start : start + int(lens[j])])
        except DecodeError as exc:
            raise InvalidInputError(f"remote write sample is not a valid protobuf Sample: {exc}", field="body") from exc
        values[j], ms[j] = sample.value, sample.timestamp
    return values, ms


def _drop_unstorable(
    series: list[SeriesRef],
    series_idx: npt.NDArray[np.int64],
    ms: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    exemplars: int,
    histograms: int,
) -> DecodedWrite:
    """Build the result, leaving out samples with non-finite values (staleness markers stay)
    or timestamps outside tsdb's range."""
    storable = np.isfinite(values) | (values.view(np.uint64) == STALE_NAN_BITS)
    in_range = (ms >= _MS_LOW) & (ms <= _MS_HIGH)
    keep = storable & in_range
    reason = None
    if not keep.all():
        j = int(np.flatnonzero(~keep)[0])
        metric, labels = series[int(series_idx[j])]
        what = f"value {float(values[j])!r}" if not storable[j] else f"timestamp {int(ms[j])} ms"
        reason = (
            f"sample of {canonical_key(metric, labels)} at {int(ms[j])} ms dropped: {what} cannot be stored "
            "(values must be finite or the staleness marker, timestamps between years 1824 and 2116)"
        )
        series_idx, ms, values = series_idx[keep], ms[keep], values[keep]
    batch = Batch(series, series_idx, ms * _NS_PER_MS, values)
    return DecodedWrite(batch, int((~keep).sum()), reason, exemplars, histograms)


def encode_write_request(batch: Batch) -> bytes:
    """A remote write 1.0 body (snappy block of a WriteRequest) holding ``batch``.

    One TimeSeries per series with rows, labels sorted by name as Prometheus sends them
    (``__name__`` among them), samples in time order. Timestamps are truncated to milliseconds
    (floor), the protocol's unit.
    """
    order = np.lexsort((batch.timestamps, batch.series_idx))
    idx = np.asarray(batch.series_idx)[order]
    ms = np.asarray(batch.timestamps)[order] // _NS_PER_MS
    values = np.asarray(batch.values, np.float64)[order]
    out = _encode_series_list(idx, ms, values, list(batch.series))
    return bytes(cramjam.snappy.compress_raw(out))


# --- remote read --------------------------------------------------------------------------------


def decode_read_request(body: bytes) -> list[Query]:
    """The queries of a remote read body (snappy block of a protobuf ReadRequest).

    Raises InvalidInputError for a bad snappy block, bad protobuf or an unknown matcher type,
    InvalidQueryError for a bad regex, and UnsupportedError when the client accepts only
    streamed (chunked) responses, which tsdb does not implement.
    """
    raw = _decompress(body)
    try:
        request = remote_pb2.ReadRequest.FromString(raw)
    except DecodeError as exc:
        raise InvalidInputError(f"remote read body is not a valid protobuf ReadRequest: {exc}", field="body") from exc
    accepted = list(request.accepted_response_types)
    if accepted and remote_pb2.ReadRequest.SAMPLES not in accepted:
        raise UnsupportedError(
            "remote read: the client accepts only streamed chunk responses; tsdb answers with SAMPLES",
            field="accepted_response_types",
        )
    return [Query(q.start_timestamp_ms, q.end_timestamp_ms, [_matcher(m) for m in q.matchers]) for q in request.queries]


def _matcher(m: types_pb2.LabelMatcher) -> Matcher:
    op = _MATCH_OPS.get(m.type)
    if op is None:
        raise InvalidInputError(f"unknown label matcher type {m.type} for label {m.name!r}", field="matchers")
    return Matcher(m.name, op, m.value)


def encode_read_response(results: Sequence[Sequence[SeriesData]]) -> bytes:
    """A snappy-compressed ReadResponse: one QueryResult per entry of ``results`` (in order),
    each series with its labels (``__name__`` included, sorted by name as Prometheus does) and
    its samples in time order with ms timestamps. Samples that fall into the same millisecond
    are reduced to the last one, since a Prometheus series holds one sample per timestamp.
    """
    out = bytearray()
    for series_list in results:
        refs: list[SeriesRef] = []
        idx_parts, ms_parts, value_parts = [], [], []
        for k, data in enumerate(series_list):
            ms = np.asarray(data.timestamps, np.int64) // _NS_PER_MS
            values = np.asarray(data.values, np.float64)
            if len(ms) > 1:
                last_of_ms = np.append(ms[1:] != ms[:-1], True)
                ms, values = ms[last_of_ms], values[last_of_ms]
            refs.append((data.metric, data.labels))
            idx_parts.append(np.full(len(ms), k, np.int64))
            ms_parts.append(ms)
            value_parts.append(values)
        payload = (
            _encode_series_list(
                np.concatenate(idx_parts), np.concatenate(ms_parts), np.concatenate(value_parts), refs, keep_empty=True
            )
            if refs
            else b""
        )
        out += b"\x0a" + _varint(len(payload)) + payload
    return bytes(cramjam.snappy.compress_raw(bytes(out)))


# --- protobuf encoding helpers ------------------------------------------------------------------


_SMALL_VARINTS: Final = [bytes((i,)) for i in range(0x80)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL_VARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field_bytes(tag: int, payload: bytes) -> bytes:
    return _SMALL_VARINTS[tag] + _varint(len(payload)) + payload


@functools.lru_cache(maxsize=65536)  # a cache: series repeat from one request to the next
def _encode_labels(metric: str, labels: LabelSet) -> bytes:
    """Encoded ``labels`` fields (field 1 of TimeSeries) with ``__name__``, sorted by name."""
    pairs = sorted([("__name__", metric), *labels])
    return b"".join(
        _field_bytes(0x0A, _field_bytes(0x0A, name.encode()) + (_field_bytes(0x12, value.encode()) if value else b""))
        for name, value in pairs
    )


def _encode_series_list(
    idx: npt.NDArray[np.int64],
    ms: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    refs: Sequence[SeriesRef],
    *,
    keep_empty: bool = False,
) -> bytes:
    """Repeated TimeSeries (field 1 of WriteRequest and QueryResult) for rows sorted by series
    then time; series without rows are written only when ``keep_empty``."""
    blob, row_end = _encode_samples(ms, values)
    bounds = np.searchsorted(idx, np.arange(len(refs) + 1))
    byte_bounds = np.concatenate([[0], row_end])[bounds].tolist()
    out = bytearray()
    for k, (metric, labels) in enumerate(refs):
        if bounds[k] == bounds[k + 1] and not keep_empty:
            continue
        series = _encode_labels(metric, labels) + blob[byte_bounds[k] : byte_bounds[k + 1]]
        out += b"\x0a" + _varint(len(series)) + series
    return bytes(out)


def _encode_samples(ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> tuple[bytes, npt.NDArray[np.int64]]:
    """Encoded ``samples`` fields (field 2 of TimeSeries), one per row, and each row's end
    offset in the returned bytes. Zero values and timestamps are omitted, as proto3 does."""
    n = len(ms)
    if n == 0:
        return b"", np.empty(0, np.int64)
    bits = np.ascontiguousarray(values, np.float64).view(np.uint64)
    u = np.ascontiguousarray(ms, np.int64).view(np.uint64)
    has_value = bits != 0
    has_ts = u != 0
    varint_len = 1 + (u[:, None] >= (np.uint64(1) << _SHIFTS[1:])).sum(axis=1)
    payload_len = 9 * has_value + (1 + varint_len) * has_ts
    # One row of 22 columns per sample: 0x12 len | 0x09 value(8) | 0x10 varint(<=10).
    rows = np.zeros((n, 22), np.uint8)
    rows[:, 0] = 0x12
    rows[:, 1] = payload_len
    rows[:, 2] = 0x09
    rows[:, 3:11] = bits.astype("<u8").view(np.uint8).reshape(n, 8)
    rows[:, 11] = 0x10
    groups = ((u[:, None] >> _SHIFTS) & np.uint64(0x7F)).astype(np.uint8)
    in_varint = varint_len[:, None] > _J10
    groups[in_varint & ((varint_len - 1)[:, None] > _J10)] |= 0x80
    rows[:, 12:22] = groups
    mask = np.zeros((n, 22), bool)
    mask[:, :2] = True
    mask[:, 2:11] = has_value[:, None]
    mask[:, 11] = has_ts
    mask[:, 12:22] = in_varint & has_ts[:, None]
    return rows[mask].tobytes(), np.cumsum(2 + payload_len)
