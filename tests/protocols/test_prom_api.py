"""The Prometheus HTTP API envelopes: exact bytes for every result type, encodings, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tsdb.errors import (
    DiskFullError,
    InvalidQueryError,
    InvalidTimestampError,
    LimitExceededError,
    UnsupportedError,
)
from tsdb.protocols.prom_api import (
    STATUS_BY_ERROR_TYPE,
    error_body,
    error_for_exception,
    format_timestamp,
    format_value,
    query_success_body,
    success_body,
)
from tsdb.query.promql import InstantVector, Matrix, MatrixSeries, QueryExecutionError, Scalar, String, VectorSample

S = 1_000_000_000


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.0, "0"),
        (-0.0, "-0"),
        (1.5, "1.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e-5, "0.00001"),  # positional down to 1e-6 ...
        (1e-6, "0.000001"),
        (1e-7, "1e-07"),  # ... exponent form below, with Go's two-digit exponent
        (1e16, "10000000000000000"),
        (1e21, "1e+21"),
        (-2.5e22, "-2.5e+22"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
    ],
)
def test_value_encoding(value: float, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (1_700_000_000 * S, "1700000000"),
        (1_700_000_000 * S + 500_000_000, "1700000000.500"),
        (1_700_000_000 * S + 50_000_000, "1700000000.050"),
        (1_700_000_000 * S + 1_000_000, "1700000000.001"),
        (1_700_000_000 * S + 123, "1700000000.000000123"),
        (-1_500_000_000, "-1.500"),
    ],
)
def test_timestamp_encoding(ns: int, text: str) -> None:
    assert format_timestamp(ns) == text


def test_vector_envelope_bytes() -> None:
    result = InstantVector(
        1_435_781_451_781_000_000,
        [VectorSample((("__name__", "up"), ("instance", "localhost:9090"), ("job", "prometheus")), 1.0)],
    )
    assert query_success_body(result) == (
        b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up",'
        b'"instance":"localhost:9090","job":"prometheus"},"value":[1435781451.781,"1"]}]}}'
    )


def test_matrix_envelope_bytes() -> None:
    result = Matrix([MatrixSeries((("job", "a"),), np.array([10 * S, 25 * S]), np.array([0.5, math.nan]))])
    assert query_success_body(result) == (
        b'{"status":"success","data":{"resultType":"matrix","result":'
        b'[{"metric":{"job":"a"},"values":[[10,"0.5"],[25,"NaN"]]}]}}'
    )
    assert query_success_body(Matrix([])) == b'{"status":"success","data":{"resultType":"matrix","result":[]}}'


def test_scalar_and_string_envelopes() -> None:
    assert (
        query_success_body(Scalar(2 * S, 2.0))
        == b'{"status":"success","data":{"resultType":"scalar","result":[2,"2"]}}'
    )
    assert query_success_body(String(2 * S, 'a"b')) == (
        b'{"status":"success","data":{"resultType":"string","result":[2,"a\\"b"]}}'
    )


def test_warnings_follow_data() -> None:
    body = query_success_body(Scalar(0, 1.0), warnings=["careful"])
    assert body.endswith(b',"warnings":["careful"]}')


def test_strings_are_escaped_like_go() -> None:
    result = InstantVector(0, [VectorSample((("v", 'a<b>&"\n\x01\u2028é'),), 1.0)])
    body = query_success_body(result)
    assert b'"a\\u003cb\\u003e\\u0026\\"\\n\\u0001\\u2028\xc3\xa9"' in body
    assert json.loads(body)["data"]["result"][0]["metric"]["v"] == 'a<b>&"\n\x01\u2028é'


def test_success_body_for_plain_data() -> None:
    assert success_body(["__name__", "job"]) == b'{"status":"success","data":["__name__","job"]}'
    assert success_body([{"__name__": "up"}]) == b'{"status":"success","data":[{"__name__":"up"}]}'
    with pytest.raises(ValueError):
        success_body([math.nan])


def test_error_envelope_and_statuses() -> None:
    assert error_body("bad_data", "parse error") == b'{"status":"error","errorType":"bad_data","error":"parse error"}'
    assert STATUS_BY_ERROR_TYPE["bad_data"] == 400
    assert STATUS_BY_ERROR_TYPE["execution"] == 422
    assert STATUS_BY_ERROR_TYPE["timeout"] == 503
    with pytest.raises(ValueError):
        error_body("nope", "x")


@pytest.mark.parametrize(
    ("exc", "status", "error_type"),
    [
        (InvalidQueryError("parse error: x", field="query"), 400, "bad_data"),
        (InvalidTimestampError("bad time", field="time"), 400, "bad_data"),
        (QueryExecutionError("many-to-many", field="query"), 422, "execution"),
        (UnsupportedError("function holt_winters() is not supported"), 422, "execution"),
        (LimitExceededError("too many samples"), 422, "execution"),
        (TimeoutError("slow"), 503, "timeout"),
        (DiskFullError("disk full"), 503, "unavailable"),
        (RuntimeError("boom"), 500, "internal"),
    ],
)
def test_error_for_exception(exc: BaseException, status: int, error_type: str) -> None:
    got_status, body = error_for_exception(exc)
    assert got_status == status
    decoded = json.loads(body)
    assert decoded == {"status": "error", "errorType": error_type, "error": str(exc)}
