"""InfluxDB line protocol parser: grammar, escaping, mapping, errors, and bulk == strict."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tsdb.errors import InvalidInputError
from tsdb.labels import Limits
from tsdb.protocols.influx_line import (
    PRECISION_NS,
    ParseResult,
    _LineError,
    _parse_key,
    _Parser,
    _tokenize_clean,
    _tokenize_escaped,
    escape_field_key,
    escape_measurement,
    escape_tag,
    parse_lines,
    precision_ns,
    sanitize_label_name,
    sanitize_metric_name,
)

NOW = 1_700_000_000_123_456_789


def parse(body: bytes | str, precision: str = "ns", limits: Limits | None = None) -> ParseResult:
    raw = body.encode() if isinstance(body, str) else body
    result = parse_lines(raw, precision, default_time_ns=NOW, limits=limits)
    result.batch.validate()
    return result


def rows(result: ParseResult) -> list[tuple[str, dict[str, str], int, float]]:
    """The batch as sorted (metric, labels, ts, value) rows."""
    b = result.batch
    out = [
        (b.series[i][0], dict(b.series[i][1]), int(t), float(v))
        for i, t, v in zip(b.series_idx.tolist(), b.timestamps.tolist(), b.values.tolist(), strict=True)
    ]
    return sorted(out, key=lambda r: (r[0], sorted(r[1].items()), r[2], r[3]))


def one_row(line: str, precision: str = "ns") -> tuple[str, dict[str, str], int, float]:
    result = parse(line, precision)
    assert result.rejected == [], result.rejected
    (row,) = rows(result)
    return row


def reason(line: str, limits: Limits | None = None) -> str:
    result = parse(line, limits=limits)
    assert result.accepted_lines == 0 and len(result.batch) == 0
    ((number, text),) = result.rejected
    assert number == 1 and text.startswith("line 1: ")
    return text


# --- mapping -------------------------------------------------------------------------------------


def test_fields_become_series_and_tags_become_labels() -> None:
    result = parse("cpu,host=a,region=us-west usage_user=1.5,usage_system=2i,value=3 1700000000000000000")
    assert result.accepted_lines == 1
    labels = {"host": "a", "region": "us-west"}
    assert rows(result) == [
        ("cpu", labels, 1700000000000000000, 3.0),
        ("cpu_usage_system", labels, 1700000000000000000, 2.0),
        ("cpu_usage_user", labels, 1700000000000000000, 1.5),
    ]
    assert all(labels == tuple(sorted(labels)) for _, labels in result.batch.series)


def test_same_series_from_differently_ordered_tags_is_one_series() -> None:
    result = parse("m,a=1,b=2 f=1 1\nm,b=2,a=1 f=2 2")
    assert len(result.batch.series) == 1
    assert [r[3] for r in rows(result)] == [1.0, 2.0]


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("1", 1.0),
        ("-1.5", -1.5),
        ("1e3", 1000.0),
        ("1.5E-2", 0.015),
        ("1.", 1.0),
        (".5", 0.5),
        ("-.5e+1", -5.0),
        ("01", 1.0),
        ("1i", 1.0),
        ("-12i", -12.0),
        ("9223372036854775807i", 9223372036854775807.0),
        ("-9223372036854775808i", -9223372036854775808.0),
        ("0u", 0.0),
        ("18446744073709551615u", 18446744073709551615.0),
        ("t", 1.0),
        ("T", 1.0),
        ("true", 1.0),
        ("True", 1.0),
        ("TRUE", 1.0),
        ("f", 0.0),
        ("F", 0.0),
        ("false", 0.0),
        ("False", 0.0),
        ("FALSE", 0.0),
    ],
)
def test_field_value_types(token: str, value: float) -> None:
    assert one_row(f"m f={token} 5") == ("m_f", {}, 5, value)


@pytest.mark.parametrize("precision", sorted(PRECISION_NS))
def test_precision_scales_timestamps(precision: str) -> None:
    assert one_row("m value=1 7", precision)[2] == 7 * PRECISION_NS[precision]


def test_v1_and_v2_precision_names() -> None:
    assert precision_ns("n") == precision_ns("ns") == 1
    assert precision_ns("u") == precision_ns("us") == 1_000
    assert precision_ns("m") == 60_000_000_000 and precision_ns("h") == 3_600_000_000_000
    with pytest.raises(InvalidInputError, match="unknown precision 'd'"):
        parse_lines(b"m value=1", "d", default_time_ns=NOW)


def test_missing_timestamp_takes_the_default_truncated_to_the_precision() -> None:
    assert one_row("m value=1")[2] == NOW
    assert one_row("m value=1", "s")[2] == NOW // 10**9 * 10**9
    assert one_row("m value=1", "ms")[2] == NOW // 10**6 * 10**6


def test_comments_blank_lines_spaces_and_crlf() -> None:
    body = "# a comment\n\n   \n  # indented comment\nm value=1 1\r\n  m value=2   2  \r\nm  value=3 3\n"
    result = parse(body)
    assert result.rejected == []
    assert result.accepted_lines == 3
    assert [(r[2], r[3]) for r in rows(result)] == [(1, 1.0), (2, 2.0), (3, 3.0)]


def test_body_must_be_bytes() -> None:
    with pytest.raises(InvalidInputError, match="body must be bytes"):
        parse_lines("m value=1", default_time_ns=NOW)  # type: ignore[arg-type]


# --- escaping (examples from the InfluxDB line protocol reference) --------------------------------


def test_reference_example_measurement_with_space() -> None:
    assert one_row(r"my\ Measurement fieldKey=1 5")[0] == "my_Measurement_fieldKey"


def test_reference_example_tag_keys_and_values_with_spaces() -> None:
    metric, labels, _, value = one_row(r"myMeasurement,tag\ Key1=tag\ Value1,tag\ Key2=tag\ Value2 fieldKey=100 5")
    assert metric == "myMeasurement_fieldKey" and value == 100.0
    assert labels == {"tag_Key1": "tag Value1", "tag_Key2": "tag Value2"}


def test_reference_example_emoji() -> None:
    assert one_row("myMeasurement,tagKey=🍭 fieldKey=100 1556813561098000000") == (
        "myMeasurement_fieldKey",
        {"tagKey": "🍭"},
        1556813561098000000,
        100.0,
    )


def test_reference_example_measurement_with_comma() -> None:
    assert one_row(r"cpu\,01,host=serverA,region=us-west value=1 5")[:2] == (
        "cpu_01",
        {"host": "serverA", "region": "us-west"},
    )


def test_tag_value_escapes_comma_equals_and_space() -> None:
    assert one_row(r"m,t=a\,b\=c\ d f=1 5")[1] == {"t": "a,b=c d"}


def test_field_key_escapes_comma_equals_and_space() -> None:
    assert one_row(r"m f\,x\=y\ z=1 5")[0] == "m_f_x_y_z"


def test_measurement_does_not_escape_equals_and_may_contain_it() -> None:
    # "\=" is not an escape in a measurement: both characters stay (then get sanitized).
    assert one_row(r"a\=b f=1 5")[0] == "a__b_f"
    assert one_row("a=b f=1 5")[0] == "a_b_f"


def test_backslash_before_an_unescapable_character_is_literal() -> None:
    assert one_row(r"m,t=a\b f=1 5")[1] == {"t": "a\\b"}
    assert one_row(r"m,t=a\\b f=1 5")[1] == {"t": "a\\\\b"}
    # The last backslash escapes the comma; the ones before it are literal.
    assert one_row(r"m,t=a\\\,b f=1 5")[1] == {"t": "a\\\\,b"}
    assert one_row(r"m,t=a\\,u\=b f=1 5")[1] == {"t": "a\\,u=b"}
    assert "unescaped '='" in reason(r"m,t=a\\,u=b f=1 5")


def test_quotes_in_keys_are_plain_characters() -> None:
    assert one_row("""joe's,pat's"tag=tag1 fieldKey=100 5""")[:2] == ("joe_s_fieldKey", {"pat_s_tag": "tag1"})


def test_string_fields_are_rejected_naming_the_line_and_field() -> None:
    text = reason('weather,location=us temperature=82,summary="sunny, with \\"clouds\\"" 1465839830100400200')
    assert "field 'summary' has a string value" in text
    assert "sunny, with" in text
    assert "tsdb stores numbers only" in text


def test_string_with_escaped_backslash_ends_at_the_right_quote() -> None:
    result = parse('m s="a\\\\" 5\nm s="x\\"y z",v=1 5\nm value=1 6')
    assert [n for n, _ in result.rejected] == [1, 2]
    assert all("string value" in r for _, r in result.rejected)
    assert rows(result) == [("m", {}, 6, 1.0)]


def test_string_field_spanning_lines_counts_as_one_line() -> None:
    result = parse('m value=1 1\nm s="first\nsecond, with = signs" 2\nm value=3 3')
    assert result.accepted_lines == 2
    assert [n for n, _ in result.rejected] == [2]
    assert [r[2] for r in rows(result)] == [1, 3]


def test_unterminated_string() -> None:
    result = parse('m value=1 1\nm s="open')
    assert [(n, "no closing quote" in r) for n, r in result.rejected] == [(2, True)]


def test_escape_helpers_round_trip() -> None:
    tricky = 'a b,c=d"e\\f'
    line = f"{escape_measurement(tricky)},{escape_tag(tricky)}={escape_tag(tricky)} {escape_field_key('x y')}=1 5"
    metric, labels, _, _ = one_row(line)
    assert metric == sanitize_metric_name(tricky + "_x y")
    assert labels == {sanitize_label_name(tricky): tricky}


# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "metric", "label"),
    [
        ("cpu", "cpu", "cpu"),
        ("cpu:usage", "cpu:usage", "cpu_usage"),
        ("cpu-usage.idle", "cpu_usage_idle", "cpu_usage_idle"),
        ("1cpu", "cpu", "cpu"),
        ("_x", "_x", "_x"),
        ("x-", "x", "x"),
        ("__x-", "x", "x"),
        ("héllo wörld", "h_llo_w_rld", "h_llo_w_rld"),
        ("-", None, None),
        ("9", None, None),
        ("-_0", "_0", "_0"),
        ("0_0", "_0", "_0"),
    ],
)
def test_sanitize_names_like_telegraf(name: str, metric: str | None, label: str | None) -> None:
    assert sanitize_metric_name(name) == metric
    assert sanitize_label_name(name) == label


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("cpu", "no fields after 'cpu'"),
        ("cpu,host=a", "no fields after 'cpu,host=a'"),
        ("cpu ", "no fields"),
        ("cpu f", "field key 'f' has no '=value'"),
        ("cpu f= 5", "field 'f' has no value"),
        ("cpu f=1,,g=2", "missing field key"),
        ("cpu =1", "missing field key"),
        ("cpu f=abc", "value of unknown type 'abc'"),
        ("cpu f=nan", "value of unknown type 'nan'"),
        ("cpu f=-inf", "invalid number '-inf'"),
        ("cpu f=1e400", "out of the float64 range"),
        ("cpu f=1.2.3", "invalid number '1.2.3'"),
        ("cpu f=1_000", "invalid number '1_000'"),
        ("cpu f=tRUE", "invalid boolean 'tRUE'"),
        ("cpu f=1.5i", "invalid integer '1.5i'"),
        ("cpu f=9223372036854775808i", "integer '9223372036854775808i' is out of range"),
        ("cpu f=-1u", "invalid unsigned '-1u'"),
        ("cpu f=18446744073709551616u", "unsigned '18446744073709551616u' is out of range"),
        ('cpu f="x"', "field 'f' has a string value"),
        ("cpu,host= f=1", "tag 'host' has an empty value"),
        ("cpu,host f=1", "tag key 'host' has no '=value'"),
        ("cpu,=a f=1", "empty tag key"),
        ("cpu, f=1", "empty tag key"),
        ("cpu,host=a=b f=1", "unescaped '='"),
        (",host=a f=1", "missing measurement name"),
        ("cpu f=1 12a", "invalid timestamp '12a'"),
        ("cpu f=1 1.5", "invalid timestamp '1.5'"),
        ("cpu f=1 99999999999999999999", "out of range"),
        ("cpu f=1 5 6", "unexpected text after the timestamp: '6'"),
        ("cpu f=1 b=2", "invalid timestamp 'b=2'"),
        ("cpu,t=a\\ f=1", "no fields"),
        ("cpu\tx f=1", "unexpected character '\\t'"),
        ("cpu f=1\tx", "invalid number"),
        ("- -=1", "'-_-' has no character allowed in a metric name"),
        ("cpu,- =a f=1", "missing field key"),
        ("cpu,-=a f=1", "tag key '-' has no character allowed in a label name"),
        ("cpu,__reserved=a f=1", "reserved"),
        ("cpu,a-b=1,a_b=2 f=1", "appears twice"),
    ],
)
def test_bad_lines_are_rejected_with_a_clear_reason(line: str, message: str) -> None:
    assert message in reason(line)


def test_invalid_utf8_is_rejected() -> None:
    result = parse(b"cpu,host=\xff f=1 5\ncpu f\xfe=1 5\ncpu f=\xff 5")
    assert [n for n, _ in result.rejected] == [1, 2, 3]
    assert "not valid UTF-8" in result.rejected[0][1] and "not valid UTF-8" in result.rejected[1][1]


def test_limits_are_enforced_per_line() -> None:
    limits = Limits(max_name_length=10, max_label_value_length=5, max_labels=2)
    assert "metric name is 11 characters long" in reason("abcdefghi f=1", limits)
    assert "series has 3 labels" in reason("m,a=1,b=2,c=3 f=1", limits)
    assert "value is 6 characters long" in reason("m,a=123456 f=1", limits)
    assert parse("m,a=12345,b=1 f=1", limits=limits).accepted_lines == 1


def test_partial_write_keeps_valid_lines_and_reports_the_others() -> None:
    body = 'm value=1 1\nbad\nm value=2 2\nm f="s" 3\n# fine\nm value=x 4\nm value=3 3'
    result = parse(body)
    assert result.accepted_lines == 3
    assert result.rejected_lines == 3
    assert [n for n, _ in result.rejected] == [2, 4, 6]
    assert [r[3] for r in rows(result)] == [1.0, 2.0, 3.0]


def test_a_rejected_line_leaves_no_series_behind() -> None:
    result = parse("good,t=1 value=1 1\nbad,t=2 a=1,b=x 2\nbad,t=3 a=1 9999999999999999999999")
    assert [s for s, _ in result.batch.series] == ["good"]


# --- bulk path == strict parser ----------------------------------------------------------------------


def strict(body: bytes, precision: str = "ns") -> ParseResult:
    parser = _Parser(Limits(), precision_ns(precision), NOW)
    parser.bulk = False
    parser.run(body.replace(b"\r\n", b"\n"))  # as parse_lines does
    return parser.result()


def same(a: ParseResult, b: ParseResult) -> None:
    assert a.accepted_lines == b.accepted_lines
    assert [n for n, _ in a.rejected] == [n for n, _ in b.rejected]
    assert rows(a) == rows(b)


VALUE_TOKENS = [
    "1",
    "-2.5",
    "1e5",
    "1E-3",
    "-0",
    "01",
    "1.",
    ".5",
    "7i",
    "-7i",
    "0i",
    "-0i",
    "012i",
    "1.5i",
    "1e3i",
    "i",
    "3u",
    "-3u",
    "1.5u",
    "u",
    "9223372036854775807i",
    "9223372036854775808i",
    "99999999999999999999i",
    "18446744073709551615u",
    "18446744073709551616u",
    "123456789012345678i",
    "1234567890123456789i",
    "t",
    "T",
    "true",
    "FALSE",
    "tRUE",
    "nan",
    "-inf",
    "1e400",
    "9.3e18",
    "null",
    "[1]",
    "{}",
    "[]",
    "",
    "1=2",
    "1,",
    '"s"',
    "+1",
    "0x10",
    "1_0",
]
TS_TOKENS = ["", "5", "-5", "05", "1.5", "1e3", "true", "null", "99999999999999999999", "4611686018427387905", "x"]


@st.composite
def soup_line(draw: st.DrawFn) -> str:
    key = draw(st.sampled_from(["m", "m,t=a", "m,t=b", "n,t=a,u=b", "m,t=a,u=b", "#c", " m", "m,t"]))
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "value", "i", "u", "a,b"]), min_size=0, max_size=4))
    values = [draw(st.sampled_from(VALUE_TOKENS)) for _ in names]
    fields = ",".join(f"{n}={v}" for n, v in zip(names, values, strict=True))
    if draw(st.booleans()):
        fields = fields.replace(
            draw(st.sampled_from([",", "=", "a"])), draw(st.sampled_from(["", ",", "=", ",,", "a"]))
        )
    ts = draw(st.sampled_from(TS_TOKENS))
    return f"{key} {fields} {ts}" if ts else f"{key} {fields}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(soup_line(), min_size=1, max_size=30), st.sampled_from(["ns", "s"]))
def test_bulk_path_agrees_with_the_strict_parser(lines: list[str], precision: str) -> None:
    body = "\n".join(lines).encode()
    reference = strict(body, precision)
    same(parse_lines(body, precision, default_time_ns=NOW), reference)
    # Again, now with every signature of this body learnt: more lines take the bulk path.
    same(parse_lines(body, precision, default_time_ns=NOW), reference)


@st.composite
def clean_line(draw: st.DrawFn) -> str:
    alphabet = 'ab1=, .-#"\\\t\riu'
    return draw(st.text(alphabet=alphabet, max_size=25))


@settings(max_examples=300, deadline=None)
@given(st.lists(clean_line(), min_size=1, max_size=10))
def test_random_text_never_crashes_and_paths_agree(lines: list[str]) -> None:
    body = "\n".join(lines).encode()
    reference = strict(body)
    same(parse_lines(body, default_time_ns=NOW), reference)
    same(parse_lines(body, default_time_ns=NOW), reference)
    assert reference.accepted_lines + reference.rejected_lines <= len(lines)


def _outcome(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except _LineError:
        return "error"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab1=, .-#é", max_size=25))
def test_escape_aware_tokenizer_agrees_with_the_clean_one(text: str) -> None:
    line = text.encode()
    clean = _outcome(lambda: _tokenize_clean(line))
    escaped = _outcome(lambda: _tokenize_escaped(line))
    if clean is None or escaped is None or clean == "error" or escaped == "error":
        assert clean == escaped or ("error" in (clean, escaped) and _outcome(lambda: strict(line).accepted_lines) == 0)
        return
    assert clean[::2] == escaped[::2]  # type: ignore[index]
    key = clean[0]  # type: ignore[index]
    assert _outcome(lambda: _parse_key(key, False)) == _outcome(lambda: _parse_key(key, True))


def test_key_with_two_field_sets_uses_both_signatures() -> None:
    body = "\n".join(
        f"system,host=h{h} load1={h}.5,load5=2,n_cpus=4i {t}\nsystem,host=h{h} uptime={t}i {t}"
        for t in range(1, 4)
        for h in range(3)
    ).encode()
    for _ in range(2):
        result = parse(body)
        assert result.rejected == [] and result.accepted_lines == 18
        assert len(result.batch) == 36
        same(result, strict(body))


def test_field_set_changing_between_lines_is_not_misattributed() -> None:
    # Same total field names in the same order, split differently over two keys' lines.
    warmup = b"k1 a=1,b=2 1\nk2 c=3,d=4 1"
    parse(warmup)
    result = parse(b"k1 a=1,b=2,c=3 2\nk2 d=4 2")
    assert rows(result) == [("k1_a", {}, 2, 1.0), ("k1_b", {}, 2, 2.0), ("k1_c", {}, 2, 3.0), ("k2_d", {}, 2, 4.0)]


# --- round trip against a reference model ---------------------------------------------------------

NAME_TEXT = st.text(alphabet=st.sampled_from(list("abcXYZ019_:-. ,=\"'\\#é🍭")), min_size=1, max_size=8).filter(
    lambda s: not s.endswith("\\") and not s.startswith("#")
)
VALUE_TEXT = st.text(alphabet=st.sampled_from(list("ab1 ,=\"'\\é🍭#")), min_size=1, max_size=8).filter(
    lambda s: not s.endswith("\\")
)


def naive_sanitize(name: str, colon: bool) -> str | None:
    valid_first = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_" + (":" if colon else ""))
    valid = valid_first | set("0123456789")
    if name[0] in valid_first and all(c in valid for c in name):
        return name
    kept = (name[0] if name[0] in valid_first else "") + "".join(c if c in valid else "_" for c in name[1:])
    kept = kept.strip("_")
    return ("_" + kept if kept[:1].isdigit() else kept) or None


@st.composite
def points(draw: st.DrawFn) -> tuple[str, dict[str, str], dict[str, tuple[str, float]], int]:
    measurement = draw(NAME_TEXT)
    tags = draw(st.dictionaries(NAME_TEXT, VALUE_TEXT, max_size=3))
    kinds = st.one_of(
        st.floats(allow_nan=False, allow_infinity=False).map(lambda f: (repr(f), f)),
        st.integers(-(2**63), 2**63 - 1).map(lambda i: (f"{i}i", float(i))),
        st.integers(0, 2**64 - 1).map(lambda i: (f"{i}u", float(i))),
        st.sampled_from([("t", 1.0), ("FALSE", 0.0), ("True", 1.0)]),
    )
    fields = draw(st.dictionaries(NAME_TEXT, kinds, min_size=1, max_size=3))
    ts = draw(st.integers(-(2**62), 2**62))
    return measurement, tags, fields, ts


@settings(max_examples=200, deadline=None)
@given(st.lists(points(), min_size=1, max_size=8))
def test_round_trip_through_line_protocol_text(
    pts: list[tuple[str, dict[str, str], dict[str, tuple[str, float]], int]],
) -> None:
    lines = []
    expected = []
    for measurement, tags, fields, ts in pts:
        label_names = [naive_sanitize(k, colon=False) for k in tags]
        assume(all(n is not None and not n.startswith("__") for n in label_names))
        assume(len(set(label_names)) == len(label_names))
        labels = dict(zip(label_names, tags.values(), strict=True))
        for name, (_, value) in fields.items():
            metric = naive_sanitize(measurement if name == "value" else f"{measurement}_{name}", colon=True)
            assume(metric is not None and len(metric) <= 256)
            expected.append((metric, labels, ts, value))
        tag_text = "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in tags.items())
        field_text = ",".join(f"{escape_field_key(k)}={token}" for k, (token, _) in fields.items())
        lines.append(f"{escape_measurement(measurement)}{tag_text} {field_text} {ts}")
    result = parse("\n".join(lines))
    assert result.rejected == []
    assert result.accepted_lines == len(lines)
    got = rows(result)
    want = sorted(expected, key=lambda r: (r[0], sorted(r[1].items()), r[2], r[3]))
    assert got == want


def test_large_body_takes_the_bulk_path_and_matches_the_strict_parser() -> None:
    rng = np.random.default_rng(7)
    lines = []
    for t in range(20):
        for host in range(25):
            values = rng.random(4) * 100
            lines.append(
                f"cpu,cpu=cpu{host % 4},host=h{host} user={values[0]:.3f},system={values[1]:.3f},"
                f"idle={values[2]:.3f},n={int(values[3])}i,ok=true {1_700_000_000 + t}"
            )
    body = "\n".join(lines).encode()
    first = parse(body, "s")
    second = parse(body, "s")
    reference = strict(body, "s")
    same(first, reference)
    same(second, reference)
    assert len(second.batch) == 20 * 25 * 5
    assert math.isclose(float(second.batch.values.sum()), float(reference.batch.values.sum()))


def test_reasons_name_the_line_number() -> None:
    result = parse("m value=1 1\n\n\nm value=x 2")
    ((number, text),) = result.rejected
    assert number == 4 and re.match(r"line 4: field 'value' has a value of unknown type 'x'", text)


def test_control_characters_are_refused_on_the_bulk_path_too() -> None:
    parse("ctl,t=a f=1,g=2 1")  # learn the key so the lines below take the bulk path
    body = b"ctl,t=a f=\t1,g=2 2\nctl,t=a f=1\r,g=2 3\nctl,t=a f=1\x0b,g=2 4\nctl,t=a f=1,g=2 \x015\nctl,t=a f=1,g=2 6"
    result = parse(body)
    assert [n for n, _ in result.rejected] == [1, 2, 3, 4]
    assert rows(result) == [("ctl_f", {"t": "a"}, 6, 1.0), ("ctl_g", {"t": "a"}, 6, 2.0)]
    same(result, strict(body))
