"""Prometheus remote write 1.0 / remote read codecs against protobuf's own encoder and decoder."""

from __future__ import annotations

import math
import struct

import cramjam
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb._types import STALE_NAN, STALE_NAN_BITS, Batch, is_stale
from tsdb.errors import InvalidInputError, InvalidQueryError, UnsupportedError
from tsdb.labels import Limits, Matcher, MatchOp
from tsdb.protocols.prom_remote import (
    _MAX_WALK,
    MAX_DECOMPRESSED_BYTES,
    READ_RESPONSE_HEADERS,
    Query,
    decode_read_request,
    decode_write_request,
    encode_read_response,
    encode_write_request,
)
from tsdb.protocols.prompb import remote_pb2, types_pb2
from tsdb.storage.interface import SeriesData

MS = 1_000_000


def snappy(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def unsnappy(body: bytes) -> bytes:
    return bytes(cramjam.snappy.decompress_raw(body))


def write_request(series: list[tuple[dict[str, str], list[tuple[float, int]]]]) -> remote_pb2.WriteRequest:
    req = remote_pb2.WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name, value in sorted(labels.items()):
            ts.labels.add(name=name, value=value)
        for value, ms in samples:
            ts.samples.add(value=value, timestamp=ms)
    return req


def decoded_rows(batch: Batch) -> list[tuple[str, tuple[tuple[str, str], ...], int, int]]:
    """(metric, labels, ts ns, value bits) per row, sorted: compares NaN payloads exactly."""
    bits = batch.values.view(np.uint64).tolist()
    return sorted(
        (batch.series[i][0], batch.series[i][1], t, b)
        for i, t, b in zip(batch.series_idx.tolist(), batch.timestamps.tolist(), bits, strict=True)
    )


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


# --- remote write -----------------------------------------------------------------------------


def test_decode_a_write_request_built_with_protobuf() -> None:
    req = write_request(
        [
            ({"__name__": "up", "job": "node", "instance": "a:9100"}, [(1.0, 1000), (0.0, 2000), (STALE_NAN, 3000)]),
            ({"__name__": "temp", "room": "k"}, [(-21.5, 0), (1e300, -5)]),
        ]
    )
    decoded = decode_write_request(snappy(req.SerializeToString()))
    assert decoded.dropped_samples == 0 and decoded.dropped_reason is None
    assert decoded.exemplars == 0 and decoded.histograms == 0
    up = ("up", (("instance", "a:9100"), ("job", "node")))
    temp = ("temp", (("room", "k"),))
    assert decoded_rows(decoded.batch) == sorted(
        [
            (*up, 1000 * MS, bits(1.0)),
            (*up, 2000 * MS, bits(0.0)),
            (*up, 3000 * MS, STALE_NAN_BITS),
            (*temp, 0, bits(-21.5)),
            (*temp, -5 * MS, bits(1e300)),
        ]
    )
    decoded.batch.validate()


def test_encoder_is_byte_identical_to_protobufs_canonical_encoding() -> None:
    series = [("up", (("job", "a"),)), ("x", ()), ("y", (("a", "1"), ("b", "é")))]
    batch = Batch(
        series,
        np.array([0, 1, 2, 0, 2, 2]),
        np.array([5 * MS, 0, -(2**62), 7 * MS, 2**62, 1], np.int64),
        np.array([0.0, -0.0, STALE_NAN, 2.5, 1e-300, -7.0]),
    )
    raw = unsnappy(encode_write_request(batch))
    parsed = remote_pb2.WriteRequest.FromString(raw)
    assert parsed.SerializeToString() == raw
    assert [[(lab.name, lab.value) for lab in ts.labels] for ts in parsed.timeseries] == [
        [("__name__", "up"), ("job", "a")],
        [("__name__", "x")],
        [("__name__", "y"), ("a", "1"), ("b", "é")],
    ]
    assert [s.timestamp for s in parsed.timeseries[2].samples] == [-(2**62) // MS, 0, 2**62 // MS]


def test_labels_are_sorted_as_prometheus_sorts_them() -> None:
    batch = Batch.single("m", (("Zone", "z"), ("a", "1")), [0], [1.0])
    parsed = remote_pb2.WriteRequest.FromString(unsnappy(encode_write_request(batch)))
    assert [lab.name for lab in parsed.timeseries[0].labels] == ["Zone", "__name__", "a"]


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    names = st.text(alphabet="abcXYZ_:019", min_size=1, max_size=6).filter(lambda s: not s[0].isdigit())
    label_names = st.text(alphabet="abcXYZ_019", min_size=1, max_size=6).filter(
        lambda s: not s[0].isdigit() and not s.startswith("__")
    )
    refs = draw(
        st.lists(
            st.tuples(names, st.dictionaries(label_names, st.text(min_size=1, max_size=5), max_size=3)),
            min_size=1,
            max_size=5,
            unique_by=lambda r: (r[0], tuple(sorted(r[1].items()))),
        )
    )
    n = draw(st.integers(0, 40))
    idx = draw(st.lists(st.integers(0, len(refs) - 1), min_size=n, max_size=n))
    ms = draw(st.lists(st.integers(-(2**62 // MS), 2**62 // MS), min_size=n, max_size=n))
    values = draw(
        st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.just(STALE_NAN), min_size=n, max_size=n)
    )
    series = [(m, tuple(sorted(labels.items()))) for m, labels in refs]
    return Batch(series, np.array(idx, np.int64), np.array(ms, np.int64) * MS, np.array(values, np.float64))


@settings(max_examples=200, deadline=None)
@given(batches())
def test_write_round_trip(batch: Batch) -> None:
    body = encode_write_request(batch)
    decoded = decode_write_request(body)
    assert decoded.dropped_samples == 0
    assert decoded_rows(decoded.batch) == decoded_rows(batch)
    raw = unsnappy(body)
    assert remote_pb2.WriteRequest.FromString(raw).SerializeToString() == raw


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**63), 2**63 - 1)),
            max_size=5,
        ),
        min_size=1,
        max_size=8,
    )
)
def test_vectorized_sample_decoder_agrees_with_protobuf(samples: list[list[tuple[float, int]]]) -> None:
    # Timestamps span all of int64 (10-byte varints included); out-of-range ones are dropped.
    req = write_request([({"__name__": "m", "s": str(k)}, s) for k, s in enumerate(samples)])
    decoded = decode_write_request(snappy(req.SerializeToString()))
    expected = sorted(
        (f"{k}", ms * MS, bits(v)) for k, s in enumerate(samples) for v, ms in s if -(2**62) <= ms * MS <= 2**62
    )
    b = decoded.batch
    got = sorted(
        (b.series[i][1][0][1], t, bits(v))
        for i, t, v in zip(b.series_idx.tolist(), b.timestamps.tolist(), b.values.tolist(), strict=True)
    )
    assert got == expected
    assert decoded.dropped_samples == sum(len(s) for s in samples) - len(expected)


def encode_varint(n: int) -> bytes:
    n &= 2**64 - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + encode_varint(len(payload)) + payload


def label(name: str, value: str) -> bytes:
    return field(0x0A, field(0x0A, name.encode()) + field(0x12, value.encode()))


def test_unusual_encodings_decode_like_protobuf_does() -> None:
    value = struct.pack("<d", 2.5)
    samples = [
        bytes([0x10]) + encode_varint(7) + bytes([0x09]) + value,  # fields in reverse order
        bytes([0x09]) + struct.pack("<d", 0.0) + bytes([0x10, 0x00]),  # explicit zero fields
        bytes([0x09]) + value + bytes([0x10]) + encode_varint(9) + bytes([0x18, 0x01]),  # unknown field 3
        bytes([0x10, 0x85, 0x80, 0x00]),  # over-long varint for 5
    ]
    series = label("__name__", "m") + b"".join(field(0x12, s) for s in samples)
    # A series whose labels come after its samples, and one with an unknown field 9.
    late_labels = field(0x12, bytes([0x09]) + value + bytes([0x10, 0x01])) + label("__name__", "late")
    unknown = label("__name__", "u") + field(0x4A, b"xyz") + field(0x12, bytes([0x10, 0x02]))
    raw = field(0x0A, series) + field(0x0A, late_labels) + field(0x0A, unknown) + field(0x1A, b"\x12\x01a")
    decoded = decode_write_request(snappy(raw))
    expected_req = remote_pb2.WriteRequest.FromString(raw)
    expected = sorted(
        (
            next(lab.value for lab in ts.labels if lab.name == "__name__"),
            s.timestamp * MS,
            bits(s.value),
        )
        for ts in expected_req.timeseries
        for s in ts.samples
    )
    b = decoded.batch
    got = sorted(
        (b.series[i][0], t, bits(v))
        for i, t, v in zip(b.series_idx.tolist(), b.timestamps.tolist(), b.values.tolist(), strict=True)
    )
    assert got == expected
    assert ("m", 5 * MS, bits(0.0)) in got


def test_long_series_take_the_protobuf_path() -> None:
    n = _MAX_WALK * 3
    req = write_request(
        [({"__name__": "long"}, [(float(i), i) for i in range(n)]), ({"__name__": "short"}, [(1.0, 1)])]
    )
    b = decode_write_request(snappy(req.SerializeToString())).batch
    assert len(b) == n + 1
    long_rows = sorted(
        (t, v)
        for i, t, v in zip(b.series_idx.tolist(), b.timestamps.tolist(), b.values.tolist(), strict=True)
        if b.series[i][0] == "long"
    )
    assert long_rows == [(i * MS, float(i)) for i in range(n)]


def test_exemplars_histograms_and_metadata_are_counted_not_stored() -> None:
    req = write_request([({"__name__": "rpc_seconds", "job": "a"}, [(1.0, 10)])])
    ts = req.timeseries[0]
    ts.exemplars.add(value=0.3, timestamp=10).labels.add(name="trace_id", value="abc")
    ts.exemplars.add(value=0.4, timestamp=11)
    hist_only = req.timeseries.add()
    hist_only.labels.add(name="__name__", value="native")
    hist_only.histograms.add(count_int=3, sum=1.5, schema=1, timestamp=10)
    req.metadata.add(type=types_pb2.MetricMetadata.COUNTER, metric_family_name="rpc_seconds", help="h")
    decoded = decode_write_request(snappy(req.SerializeToString()))
    assert (decoded.exemplars, decoded.histograms) == (2, 1)
    assert decoded.batch.series == [("rpc_seconds", (("job", "a"),))]
    assert len(decoded.batch) == 1


def test_duplicate_series_in_one_request_share_an_index() -> None:
    req = write_request([({"__name__": "m", "a": "1"}, [(1.0, 1)]), ({"__name__": "m", "a": "1"}, [(2.0, 2)])])
    b = decode_write_request(snappy(req.SerializeToString())).batch
    assert b.series == [("m", (("a", "1"),))] and b.series_idx.tolist() == [0, 0]


def test_empty_label_values_mean_no_label() -> None:
    req = write_request([({"__name__": "m", "a": "", "b": "x"}, [(1.0, 1)])])
    assert decode_write_request(snappy(req.SerializeToString())).batch.series == [("m", (("b", "x"),))]


def test_empty_request() -> None:
    decoded = decode_write_request(snappy(b""))
    assert len(decoded.batch) == 0 and decoded.batch.series == []


def test_nan_and_inf_are_dropped_and_counted_but_staleness_markers_kept() -> None:
    req = write_request(
        [({"__name__": "m", "q": "0.5"}, [(math.nan, 1), (math.inf, 2), (STALE_NAN, 3), (1.0, 4), (-math.inf, 5)])]
    )
    decoded = decode_write_request(snappy(req.SerializeToString()))
    assert decoded.dropped_samples == 3
    assert decoded.dropped_reason is not None
    assert 'm{q="0.5"}' in decoded.dropped_reason and "value nan" in decoded.dropped_reason
    b = decoded.batch
    assert b.timestamps.tolist() == [3 * MS, 4 * MS]
    assert is_stale(b.values).tolist() == [True, False]
    b.validate()


def test_timestamps_outside_tsdbs_range_are_dropped() -> None:
    req = write_request([({"__name__": "m"}, [(1.0, 2**62 // MS + 1), (2.0, 1)])])
    decoded = decode_write_request(snappy(req.SerializeToString()))
    assert decoded.dropped_samples == 1
    assert "timestamp" in (decoded.dropped_reason or "")
    assert decoded.batch.values.tolist() == [2.0]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"job": "a"}, "has no __name__ label"),
        ({"__name__": "", "job": "a"}, "has no __name__ label"),
        ({"__name__": "1bad"}, "invalid metric name '1bad'"),
        ({"__name__": "m", "bad-name": "x"}, "invalid label name 'bad-name'"),
        ({"__name__": "m", "__tmp": "x"}, "reserved"),
    ],
)
def test_invalid_series_fail_the_request(labels: dict[str, str], message: str) -> None:
    body = snappy(write_request([({"__name__": "ok"}, [(1.0, 1)]), (labels, [(1.0, 1)])]).SerializeToString())
    with pytest.raises(InvalidInputError, match=message):
        decode_write_request(body)


def test_duplicate_label_and_limits_fail_the_request() -> None:
    raw = field(0x0A, label("__name__", "m") + label("a", "1") + label("a", "2") + field(0x12, b"\x10\x01"))
    with pytest.raises(InvalidInputError, match="'a' appears twice"):
        decode_write_request(snappy(raw))
    req = write_request([({"__name__": "m", "a": "1", "b": "2"}, [(1.0, 1)])])
    with pytest.raises(InvalidInputError, match="series has 2 labels; the limit is 1"):
        decode_write_request(snappy(req.SerializeToString()), Limits(max_labels=1))


def test_bad_bodies_fail_with_a_clear_message() -> None:
    with pytest.raises(InvalidInputError, match="not a valid snappy block"):
        decode_write_request(b"\x05garbage")
    framed = bytes(cramjam.snappy.compress(write_request([({"__name__": "m"}, [(1.0, 1)])]).SerializeToString()))
    with pytest.raises(InvalidInputError, match="snappy's block format, not the framed"):
        decode_write_request(framed)
    with pytest.raises(InvalidInputError, match="not a valid protobuf WriteRequest"):
        decode_write_request(snappy(b"\x0a\x05ab"))
    with pytest.raises(InvalidInputError, match="not a valid protobuf"):
        decode_write_request(snappy(field(0x0A, label("__name__", "m") + field(0x12, b"\x09\x00"))))
    with pytest.raises(InvalidInputError, match="not valid UTF-8"):
        decode_write_request(snappy(field(0x0A, field(0x0A, field(0x0A, b"\xff")) + field(0x12, b"\x10\x01"))))
    with pytest.raises(InvalidInputError, match="body must be bytes"):
        decode_write_request("text")  # type: ignore[arg-type]


def test_decompression_bomb_is_refused_before_allocating() -> None:
    claim = encode_varint(MAX_DECOMPRESSED_BYTES + 1)
    with pytest.raises(InvalidInputError, match="claims"):
        decode_write_request(claim + b"\x00")


def test_labels_longer_than_127_bytes_and_many_series() -> None:
    long_value = "v" * 300
    series = [({"__name__": "m", "long": long_value, "i": str(i)}, [(float(i), i)]) for i in range(500)]
    b = decode_write_request(snappy(write_request(series).SerializeToString())).batch
    assert len(b.series) == 500
    assert all(dict(labels)["long"] == long_value for _, labels in b.series)
    assert sorted(b.values.tolist()) == [float(i) for i in range(500)]


# --- remote read -----------------------------------------------------------------------------------


def read_request(*queries: tuple[int, int, list[tuple[int, str, str]]], accepted: list[int] | None = None) -> bytes:
    req = remote_pb2.ReadRequest()
    for start, end, matchers in queries:
        q = req.queries.add(start_timestamp_ms=start, end_timestamp_ms=end)
        for kind, name, value in matchers:
            q.matchers.add(type=kind, name=name, value=value)
    req.accepted_response_types.extend(accepted or [])
    return snappy(req.SerializeToString())


def test_decode_read_request_maps_all_matcher_types() -> None:
    lm = types_pb2.LabelMatcher
    body = read_request(
        (1000, 2000, [(lm.EQ, "__name__", "up"), (lm.NEQ, "job", "x"), (lm.RE, "i", "a.*"), (lm.NRE, "z", "b|c")]),
        (0, 5, []),
    )
    queries = decode_read_request(body)
    assert queries == [
        Query(
            1000,
            2000,
            [
                Matcher("__name__", MatchOp.EQ, "up"),
                Matcher("job", MatchOp.NE, "x"),
                Matcher("i", MatchOp.RE, "a.*"),
                Matcher("z", MatchOp.NRE, "b|c"),
            ],
        ),
        Query(0, 5, []),
    ]
    assert queries[0].start_ns == 1000 * MS and queries[0].end_ns == 2001 * MS - 1


def test_response_type_negotiation() -> None:
    samples, streamed = remote_pb2.ReadRequest.SAMPLES, remote_pb2.ReadRequest.STREAMED_XOR_CHUNKS
    query = (0, 1, [(0, "__name__", "up")])
    assert len(decode_read_request(read_request(query, accepted=[streamed, samples]))) == 1
    assert len(decode_read_request(read_request(query, accepted=[samples]))) == 1
    with pytest.raises(UnsupportedError, match="streamed chunk"):
        decode_read_request(read_request(query, accepted=[streamed]))


def test_bad_read_requests() -> None:
    with pytest.raises(InvalidQueryError, match="invalid regex"):
        decode_read_request(read_request((0, 1, [(types_pb2.LabelMatcher.RE, "a", "(")])))
    with pytest.raises(InvalidInputError, match="unknown label matcher type 7"):
        decode_read_request(read_request((0, 1, [(7, "a", "b")])))
    with pytest.raises(InvalidInputError, match="not a valid protobuf ReadRequest"):
        decode_read_request(snappy(b"\x0a\x09zz"))
    with pytest.raises(InvalidInputError, match="not a valid snappy block"):
        decode_read_request(b"\xff\xff\xff")


def test_encode_read_response() -> None:
    a = SeriesData(
        "up",
        (("job", "node"), ("Zone", "z")),
        np.array([1 * MS, 1 * MS + 5, 2 * MS + 999_999, 3 * MS], np.int64),
        np.array([1.0, 1.5, STALE_NAN, -0.0]),
    )
    b = SeriesData("x", (), np.array([-7 * MS], np.int64), np.array([0.0]))
    body = encode_read_response([[a, b], [], [b]])
    response = remote_pb2.ReadResponse.FromString(unsnappy(body))
    assert len(response.results) == 3
    first, empty, last = response.results
    assert len(empty.timeseries) == 0
    assert [[(lab.name, lab.value) for lab in ts.labels] for ts in first.timeseries] == [
        [("Zone", "z"), ("__name__", "up"), ("job", "node")],
        [("__name__", "x")],
    ]
    # Two samples in millisecond 1: the last one stands for it.
    assert [(s.timestamp, bits(s.value)) for s in first.timeseries[0].samples] == [
        (1, bits(1.5)),
        (2, STALE_NAN_BITS),
        (3, bits(-0.0)),
    ]
    assert [(s.timestamp, s.value) for s in last.timeseries[0].samples] == [(-7, 0.0)]
    assert READ_RESPONSE_HEADERS == {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}


def test_encode_read_response_with_no_queries() -> None:
    assert remote_pb2.ReadResponse.FromString(unsnappy(encode_read_response([]))).results == []
