"""The value checks every intake path shares (signals now, connector records later)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.intake import values
from orchestrator.intake.values import Problem


@pytest.mark.parametrize(("text", "reason"), [
    ("plain", None),
    ("caf\u00e9 \U0001f600", None),
    ("a\x00b", "contains a NUL character"),
    ("\ud800", "contains a lone surrogate (U+D800); text must be valid Unicode"),
    ("ok \udfff", "contains a lone surrogate (U+DFFF); text must be valid Unicode"),
    # A surrogate pair as two code points is still not text UTF-8 can encode.
    ("\ud83d\ude00", "contains a lone surrogate (U+D83D); text must be valid Unicode"),
])
def test_text_problem(text, reason):
    assert values.text_problem(text) == reason


@pytest.mark.parametrize(("value", "problem"), [
    ({"a": [1, 2.5, True, None, "x", {"b": -3}]}, None),
    ({"n": values.MAX_INT, "m": values.MIN_INT}, None),
    ({"n": values.MAX_INT + 1}, Problem("payload.n", "is an integer beyond the 64-bit range "
                                                    "(-9223372036854775808 to 9223372036854775807)")),
    ({"n": values.MIN_INT - 1}, Problem("payload.n", "is an integer beyond the 64-bit range "
                                                    "(-9223372036854775808 to 9223372036854775807)")),
    ({"x": [0, float("nan")]}, Problem("payload.x[1]", "is not a finite number; NaN and Infinity cannot be stored")),
    ({"x": float("-inf")}, Problem("payload.x", "is not a finite number; NaN and Infinity cannot be stored")),
    ({"when": datetime(2026, 1, 1, tzinfo=UTC)}, Problem("payload.when", "is not a JSON value (a datetime)")),
    ({"amount": Decimal("1.5")}, Problem("payload.amount", "is not a JSON value (a Decimal)")),
    ({1: "x"}, Problem("payload", "has a key that is not a string (1)")),
    ({"odd key\n": "\x00"}, Problem('payload."odd key\\n"', "contains a NUL character")),
    ({"k\x00": 1}, Problem('payload."k\\u0000"', "the name contains a NUL character")),
])
def test_json_problem_names_the_first_bad_value(value, problem):
    assert values.json_problem(value, path=("payload",)) == problem


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_is_bounded_and_named_at_the_checked_field():
    assert values.json_problem(_nested(values.MAX_DEPTH), path=("payload",)) is None
    assert values.json_problem(_nested(values.MAX_DEPTH + 1), path=("payload",)) == Problem(
        "payload", "is nested more than 32 levels deep")


def test_a_cycle_is_caught_by_the_depth_bound_not_the_recursion_limit():
    cycle: dict[str, object] = {}
    cycle["self"] = cycle
    assert values.json_problem(cycle, path=("record",)) == Problem("record", "is nested more than 32 levels deep")


def test_mapping_problem_checks_names_and_each_fields_value():
    assert values.mapping_problem({"name": "Acme", "tags": ["a"]}) is None
    assert values.mapping_problem({"name": "Ac\x00me"}) == Problem("name", "contains a NUL character")
    assert values.mapping_problem({"na\ud800me": 1}) == Problem(
        '"na\\ud800me"', "the name contains a lone surrogate (U+D800); text must be valid Unicode")
    assert values.mapping_problem({2: 1}) == Problem(None, "has a field name that is not a string (2)")


OUT_OF_RANGE = "is out of range once converted to UTC (years 1 to 9999)"


@pytest.mark.parametrize(("value", "problem"), [
    (datetime(2026, 11, 23, 14, tzinfo=UTC), None),
    (datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))), OUT_OF_RANGE),
    (datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), OUT_OF_RANGE),
    (datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=5))), None),
])
def test_datetime_problem(value, problem):
    assert values.datetime_problem(value) == problem


@pytest.mark.parametrize(("text", "field", "reason"), [
    ('{"a": NaN}', "a", "is NaN; only finite numbers can be stored"),
    ('{"a": [Infinity]}', "a[0]", "is Infinity; only finite numbers can be stored"),
    ('{"a": -1e400}', "a", "is a number beyond the floating-point range (-1e400)"),
    ('{"a": ' + "1" * 4301 + "}", "a", "is an integer of 4301 digits, beyond the 64-bit range "
                                      "(-9223372036854775808 to 9223372036854775807)"),
    ('{"a": "\\u0000"}', "a", "contains a NUL character"),
    ('{"a": "\\udc00x"}', "a", "contains a lone surrogate (U+DC00); text must be valid Unicode"),
])
def test_parse_json_leaves_unstorable_literals_for_the_checks_to_name(text, field, reason):
    assert values.mapping_problem(values.parse_json(text)) == Problem(field, reason)


@pytest.mark.parametrize(("text", "message"), [
    ("[" * 30_000, "nested more than 100 levels deep"),
    ("{\"a\":" * 101 + "1" + "}" * 101, "nested more than 100 levels deep"),
    ("{not json", "Expecting property name enclosed in double quotes (column 2)"),
    ("", "Expecting value (column 1)"),
])
def test_parse_json_raises_only_json_error(text, message):
    with pytest.raises(values.JSONError, match=f"^{message.replace('(', '[(]').replace(')', '[)]')}$"):
        values.parse_json(text)


def test_brackets_inside_strings_are_not_nesting():
    text = '{"a": "' + "[{" * 500 + '\\" ]]"}'
    assert values.parse_json(text) == {"a": "[{" * 500 + '" ]]'}



def test_the_parser_takes_nesting_up_to_its_own_bound():
    assert values.parse_json("[" * values.PARSE_DEPTH + "]" * values.PARSE_DEPTH) is not None


json_text = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=20,
)


@given(json_text)
def test_anything_the_checks_pass_is_json_both_databases_store(value):
    """Passing values serialize to strict JSON (no NaN) and UTF-8 without NUL: what PostgreSQL takes."""
    if values.json_problem(value) is None:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        assert "\x00" not in text and "\\u0000" not in text
        text.encode("utf-8")  # no lone surrogate
        assert json.loads(text) == value


_ODD_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=True),
    st.text(alphabet=st.characters(codec=None, exclude_categories=())), st.sampled_from(["a\x00b", "\ud800", "é"]),
    st.decimals(allow_nan=False, places=2).map(Decimal), st.just(("tuple", 1)), st.just(b"bytes"))
_ODD_VALUES = st.recursive(
    _ODD_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(st.text(max_size=5), st.integers(), st.just("\ud800")), inner,
                                            max_size=3)),
    max_leaves=12)


@given(fields=st.dictionaries(st.one_of(st.text(max_size=6), st.just("a\x00")), _ODD_VALUES, max_size=4),
       max_depth=st.integers(min_value=0, max_value=3))
def test_the_plain_value_fast_path_finds_exactly_what_the_walk_finds(fields, max_depth):
    # The fast path only ever says "nothing wrong"; every problem is the walk's, word for word.
    assert values.mapping_problem(fields, max_depth=max_depth) == values._mapping_walk(fields, max_depth=max_depth)


def test_the_plain_value_fast_path_leaves_each_kind_of_problem_to_the_walk():
    for fields in ({"a": "x\x00"}, {"a": {"b": float("inf")}}, {"a": [2**64]}, {"\ud800": 1}, {1: "x"},
                   {"a": [[[["deep"]]]]}):
        assert values.mapping_problem(fields, max_depth=3) is not None, fields
