"""The label index selects exactly what a brute-force scan selects."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tsdb.labels import Matcher, make_labelset
from tsdb.storage.index import LabelIndex, label_value

label_st = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y", "xy", ""]), max_size=3)
series_st = st.lists(st.tuples(st.sampled_from(["m", "n"]), label_st), max_size=25)
matcher_st = st.tuples(
    st.sampled_from(["__name__", "a", "b", "c"]),
    st.sampled_from(["=", "!=", "=~", "!~"]),
    st.sampled_from(["x", "y", "", "m", "x.*", ".+", "x|m"]),
).map(lambda t: Matcher(*t))


@given(series_st, st.lists(matcher_st, max_size=3), st.sets(st.integers(0, 24)))
def test_select_equals_brute_force(series, matchers, removed) -> None:
    table = {}
    index = LabelIndex(lambda sid: table[sid], lambda: table.keys())
    for sid, (metric, labels) in enumerate(series):
        table[sid] = index.add(sid, metric, make_labelset(labels))
    for sid in removed & set(table):
        index.remove(sid, *table.pop(sid))
    want = {
        sid
        for sid, (metric, labels) in table.items()
        if all(m.matches(label_value(metric, labels, m.name)) for m in matchers)
    }
    assert set(index.select(matchers)) == want
    assert index.label_values("__name__") == {m for m, _ in table.values()}
    assert index.label_names() == ({"__name__"} | {n for _, ls in table.values() for n, _ in ls} if table else set())


def test_equal_strings_are_stored_once() -> None:
    table = {}
    index = LabelIndex(lambda sid: table[sid], lambda: table.keys())
    a = index.add(1, "m", (("dc", "".join(["e", "u"])),))
    b = index.add(2, "m", (("dc", "".join(["e", "u"])),))
    assert a[1][0][1] is b[1][0][1]
