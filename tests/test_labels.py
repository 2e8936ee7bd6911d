"""Series identity rules: names, labels, canonical keys, stable sharding, matchers."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsdb.errors import InvalidNameError, InvalidQueryError
from tsdb.labels import Limits, Matcher, MatchOp, canonical_key, make_labelset, shard_of, validate_metric_name


@pytest.mark.parametrize("name", ["cpu", "node_cpu_seconds_total", "a:b:c", "_x", "X9"])
def test_valid_metric_names(name: str) -> None:
    assert validate_metric_name(name) == name


@pytest.mark.parametrize("name", ["", "9cpu", "cpu-load", "cpu load", "ñ", "a.b"])
def test_invalid_metric_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidNameError, match=r"\[a-zA-Z_:\]") as err:
        validate_metric_name(name)
    assert err.value.field == "metric"


@pytest.mark.parametrize("bad", [None, 5, b"cpu", True])
def test_metric_name_must_be_a_string(bad: object) -> None:
    with pytest.raises(InvalidNameError, match="must be a string"):
        validate_metric_name(bad)


def test_huge_names_and_values_are_refused() -> None:
    with pytest.raises(InvalidNameError, match="limit is 256"):
        validate_metric_name("a" * 1_000_000)
    with pytest.raises(InvalidNameError, match="limit is 2048"):
        make_labelset({"k": "v" * 1_000_000})
    with pytest.raises(InvalidNameError, match="limit is 3"):
        make_labelset({"a": "1", "b": "2", "c": "3", "d": "4"}, Limits(max_labels=3))


def test_labelsets_are_sorted_and_drop_empty_values() -> None:
    assert make_labelset({"z": "1", "a": "2", "e": ""}) == (("a", "2"), ("z", "1"))


@pytest.mark.parametrize("labels", [{"1a": "x"}, {"a-b": "x"}, {"__name__": "x"}, {"a": 1}, {5: "x"}])
def test_invalid_labels_are_refused(labels: dict) -> None:
    with pytest.raises(InvalidNameError) as err:
        make_labelset(labels)
    assert err.value.field == "labels"


def test_canonical_key_escapes_values() -> None:
    assert canonical_key("m", ()) == "m"
    assert canonical_key("m", (("a", 'q"\\\n'),)) == 'm{a="q\\"\\\\\\n"}'


def test_shard_of_is_stable_across_processes() -> None:
    keys = ["cpu", 'cpu{host="a"}', "x" * 100]
    here = [shard_of(k, 7) for k in keys]
    code = f"from tsdb.labels import shard_of; print([shard_of(k, 7) for k in {keys!r}])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123"}
    )
    assert out.stdout.strip() == str(here)


@given(st.text(alphabet="abc", max_size=4))
def test_regex_matchers_are_fully_anchored(value: str) -> None:
    m = Matcher("l", MatchOp.RE, "a.*")
    assert m.matches(value) == value.startswith("a")
    assert Matcher("l", MatchOp.NRE, "a.*").matches(value) == (not value.startswith("a"))


def test_matchers_match_missing_labels_as_empty() -> None:
    assert Matcher("host", "=", "").matches_empty()
    assert Matcher("host", "!=", "a").matches_empty()
    assert not Matcher("host", "=~", ".+").matches_empty()


def test_bad_matchers_are_query_errors() -> None:
    with pytest.raises(InvalidQueryError, match="invalid regex"):
        Matcher("a", "=~", "(")
    with pytest.raises(InvalidQueryError, match="unknown matcher operator"):
        Matcher("a", "==", "x")
