"""Round trip of every WAL record type through the frame encoder and the segment scanner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from wal_testutil import any_record, delete_records, retention_records, same_record, samples_records, series_records

from tsdb.errors import InvalidInputError
from tsdb.wal.records import (
    RecordType,
    SamplesRecord,
    SeriesDef,
    SeriesRecord,
    decode_record,
    decode_strings,
    encode_record,
    encode_strings,
)
from tsdb.wal.segment import FLAG_CONTINUED, encode_frames, encode_header, scan_segment


def _through_segment(records: list) -> list:
    data = encode_header(0, 1) + bytes(encode_frames(records))
    scan = scan_segment(data, Path("mem.seg"), is_last=True)
    assert scan.damage is None
    assert len(scan.groups) == 1
    frames = scan.groups[0]
    assert [f.flags & FLAG_CONTINUED for f in frames] == [FLAG_CONTINUED] * (len(records) - 1) + [0]
    return [decode_record(f.rtype, f.payload) for f in frames]


@pytest.mark.parametrize(
    "strategy", [series_records, samples_records(), delete_records, retention_records], ids=lambda s: repr(s)[:30]
)
@given(data=st.data())
def test_each_record_type_round_trips(strategy: st.SearchStrategy, data: st.DataObject) -> None:
    record = data.draw(strategy)
    (back,) = _through_segment([record])
    assert same_record(back, record)


@given(st.lists(any_record, min_size=1, max_size=8))
def test_a_group_of_mixed_records_round_trips_in_order(records: list) -> None:
    back = _through_segment(records)
    assert len(back) == len(records)
    assert all(same_record(a, b) for a, b in zip(back, records, strict=True))


@given(st.lists(st.text(), max_size=20))
def test_string_table_round_trips(strings: list[str]) -> None:
    blob = b"".join(bytes(p) for p in encode_strings(strings))
    back, end = decode_strings(blob, 0)
    assert back == strings
    assert end == len(blob)


def test_lone_surrogates_and_non_ascii_survive() -> None:
    rec = SeriesRecord((SeriesDef(7, "m", (("a", "\ud800x"), ("b", "héllo ☃"))),))
    (back,) = _through_segment([rec])
    assert back == rec


def test_samples_payload_is_three_raw_little_endian_columns() -> None:
    rec = SamplesRecord(np.array([1, 2]), np.array([10, 20]), np.array([0.5, 1.5]))
    rtype, pieces = encode_record(rec)
    payload = b"".join(bytes(p) for p in pieces)
    assert rtype == RecordType.SAMPLES
    assert len(payload) == 4 + 24 * 2
    assert payload[4:20] == np.array([1, 2], "<i8").tobytes()
    assert payload[36:52] == np.array([0.5, 1.5], "<f8").tobytes()


def test_samples_decode_is_zero_copy_and_read_only() -> None:
    rec = SamplesRecord(np.arange(5), np.arange(5), np.ones(5))
    payload = b"".join(bytes(p) for p in encode_record(rec)[1])
    back = decode_record(RecordType.SAMPLES, payload)
    assert isinstance(back, SamplesRecord)
    assert not back.values.flags.writeable
    assert back.timestamps.base is not None


def test_samples_columns_of_different_length_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="series_ids"):
        encode_record(SamplesRecord(np.arange(3), np.arange(4), np.ones(4)))


@pytest.mark.parametrize(
    ("rtype", "payload", "message"),
    [
        (RecordType.SAMPLES, b"\x02\x00\x00\x00" + bytes(24), "2 samples need 52"),
        (RecordType.RETENTION, bytes(9), "trailing"),
        (RecordType.SERIES, b"\x01\x00\x00\x00", "truncated|needs"),
        (99, b"", "unknown record type 99"),
    ],
)
def test_bad_payload_grammar_raises_value_error(rtype: int, payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_record(rtype, payload)
