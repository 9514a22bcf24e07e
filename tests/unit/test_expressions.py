from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from orchestrator.playbook.expressions import (
    MAX_SOURCE_LENGTH,
    Expression,
    ExpressionError,
    check_roots,
    parse_expression,
)

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def context():
    return {
        "now": NOW,
        "deal": {"amount": 12500, "close_date": date(2027, 1, 15), "stage": "closed_won"},
        "account": {
            "name": "Acme",
            "segment": "mid",
            "health": 72,
            "arr": Decimal("30000"),
            "stage_entered_at": datetime(2026, 9, 1, tzinfo=UTC),
            "owner": {"role": "csm", "email": "dana@acme.example"},
            "tags": ["beta", "EMEA"],
        },
        "signal": {"active_users": 6, "severity": "low", "sentiment": "negative"},
    }


def evaluate(source, context):
    return parse_expression(source).evaluate(context)


@pytest.mark.parametrize(
    "source",
    [
        'deal.amount >= 10000 and account.segment in ["mid", "enterprise"]',
        "signal.active_users >= 5",
        "not (account.health < 40)",
        "now - account.stage_entered_at > 30d",
        "deal.close_date - now <= 120d",
        'signal.severity in ["high", "urgent"] or signal.sentiment == "negative"',
        "account.arr * 0.2 > 5000",
        "account.owner.role == 'csm'",
    ],
)
def test_the_playbook_conditions_from_the_design_hold_for_a_matching_account(source, context):
    assert evaluate(source, context) is True


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 / 4", 2.5),
        ("-3 - -2", -1),
        ("2.5 * 2", 5.0),
        ("'a' + \"b\"", "ab"),
        ("'it\\'s'", "it's"),
        ("[1, 2, 3]", [1, 2, 3]),
        ("[]", []),
        ("true and not false", True),
        ("null", None),
        ("1h30m", timedelta(minutes=90)),
        ("2w == 14d", True),
        ("90m == 1h30m", True),
        ("1 == 1 and 2 != 3", True),
        ("1 < 2 or 1 / 0 > 1", True),  # "or" stops at the first true side
    ],
)
def test_literals_and_operators_follow_usual_precedence(source, expected):
    assert evaluate(source, {}) == expected


def test_functions_cover_the_everyday_needs(context):
    assert evaluate("len(account.tags) == 2", context) is True
    assert evaluate("lower(account.name) == 'acme'", context) is True
    assert evaluate("contains(account.tags, 'beta')", context) is True
    assert evaluate("contains(account.owner.email, '@acme')", context) is True
    assert evaluate("days(3) == 72h", context) is True
    assert evaluate("coalesce(account.nps, account.health, 0)", context) == 72


def test_missing_fields_read_as_null_and_never_crash(context):
    assert evaluate("account.nps", context) is None
    assert evaluate("account.nps.score", context) is None
    assert evaluate("missing_root.field", context) is None
    assert evaluate("account.nps >= 8", context) is False
    assert evaluate("account.nps < 8", context) is False
    assert evaluate("account.nps == null", context) is True
    assert evaluate("account.nps != 8", context) is True
    assert evaluate("account.nps * 2", context) is None
    assert evaluate("now - account.churned_at > 30d", context) is False
    assert evaluate("len(account.nps)", context) is None


def test_in_and_not_in_are_both_false_when_the_list_is_missing(context):
    assert evaluate("'x' in account.missing_list", context) is False
    assert evaluate("'x' not in account.missing_list", context) is False
    assert evaluate("account.missing in ['a']", context) is False
    assert evaluate("account.missing not in ['a']", context) is True


def test_in_works_on_text_lists_and_record_keys(context):
    assert evaluate("'sm' in account.owner.role", context) is True
    assert evaluate("'cm' in account.owner.role", context) is False
    assert evaluate("'EMEA' in account.tags", context) is True
    assert evaluate("'role' in account.owner", context) is True
    assert evaluate("'APAC' not in account.tags", context) is True


def test_objects_with_attributes_work_like_dicts():
    @dataclass
    class Owner:
        role: str

        def promote(self):  # a method is not a field
            return "boom"

    @dataclass
    class Account:
        owner: Owner

    context = {"account": Account(owner=Owner(role="ae"))}
    assert evaluate("account.owner.role == 'ae'", context) is True
    assert evaluate("account.owner.promote", context) is None
    assert evaluate("account.owner.nothing", context) is None


def test_dict_keys_win_over_dict_methods():
    assert evaluate("order.items", {"order": {"items": 3}}) == 3
    assert evaluate("order.keys", {"order": {"items": 3}}) is None


def test_attributes_of_plain_values_are_not_fields():
    assert evaluate("name.upper", {"name": "acme"}) is None
    assert evaluate("d.year", {"d": date(2026, 1, 1)}) is None


def test_dates_count_as_midnight_utc_when_mixed_with_datetimes():
    context = {"d": date(2026, 11, 3), "t": datetime(2026, 11, 2, 12, 0, tzinfo=UTC)}
    assert evaluate("d - t", context) == timedelta(hours=12)
    assert evaluate("d > t", context) is True
    assert evaluate("d == t + 12h", context) is True


def test_datetimes_without_a_time_zone_count_as_utc():
    naive = datetime(2026, 11, 2, 12, 0)
    assert evaluate("a == b", {"a": naive, "b": NOW}) is True
    assert evaluate("b - a", {"a": naive, "b": NOW}) == timedelta(0)


def test_iso_looking_strings_are_not_parsed_as_dates():
    with pytest.raises(ExpressionError, match='cannot compare "2026-11-01" with 2026-11-02T12:00:00'):
        evaluate("closed_at < now", {"closed_at": "2026-11-01", "now": NOW})


def test_duration_arithmetic_works_both_ways(context):
    assert evaluate("now + 1d", context) == NOW + timedelta(days=1)
    assert evaluate("1d + now", context) == NOW + timedelta(days=1)
    assert evaluate("now - 2h", context) == NOW - timedelta(hours=2)
    assert evaluate("2 * 1d", context) == timedelta(days=2)
    assert evaluate("14d / 2", context) == timedelta(days=7)
    assert evaluate("14d / 7d", context) == 2
    assert evaluate("-1d", context) == timedelta(days=-1)


def test_booleans_are_not_numbers():
    assert evaluate("true == 1", {}) is False
    with pytest.raises(ExpressionError, match="cannot compare true with 1"):
        evaluate("true > 1", {})
    with pytest.raises(ExpressionError, match="cannot add true and 1"):
        evaluate("true + 1", {})


def test_comparing_text_with_a_number_is_a_clear_error(context):
    with pytest.raises(ExpressionError) as caught:
        evaluate("account.segment > 10000", context)
    assert caught.value.message == 'cannot compare "mid" with 10000'
    assert (caught.value.line, caught.value.column) == (1, 17)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("1 / 0", "cannot divide 1 by zero"),
        ("1d / 0", "cannot divide a duration of 1 day, 0:00:00 by zero"),
        ("'a' * 3", 'cannot multiply "a" by 3'),
        ("now - 5", "cannot subtract 5 from"),
        ("-'a'", 'cannot put a minus sign before "a"'),
        ("lower(5)", "lower() needs a text, got 5"),
        ("len(5)", "len() needs a list or a text, got 5"),
        ("days('x')", 'days() needs a number, got "x"'),
        ("contains(5, 1)", "contains() needs a list or a text first, got 5"),
        ("5 in 'abc'", 'cannot look for 5 inside the text "abc"'),
        ("1 in 5", '"in" needs a list or a text on its right, got 5'),
        ("days(1000000000) > 1d", "not a usable number of days"),
    ],
)
def test_type_errors_at_evaluation_are_expression_errors_with_a_message(source, message):
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate(source, {"now": NOW})


@pytest.mark.parametrize(
    ("source", "message", "line", "column"),
    [
        ("deal.amount = 10000", 'unexpected character "="; use "==" to compare', 1, 13),
        ("a && b", 'unexpected character "&"; use "and"', 1, 3),
        ("deal.amount >", "the expression ends too early; expected a value", 1, 14),
        ("(a or b", 'the expression ends too early; expected ")"', 1, 8),
        ("'mid", "a quoted text is not closed", 1, 1),
        ("deal.amount\n  and\n  account segment", 'unexpected "segment"; expected an operator', 3, 11),
        ("1 < x < 3", 'compare two things at a time and join comparisons with "and"', 1, 7),
        ("now - x > 30 days", 'write durations as one word, e.g. "14d"', 1, 14),
        ("foo(1)", '"foo" is not a function (functions: len, lower, contains, days, coalesce)', 1, 1),
        ("lowr(x)", '"lowr" is not a function; did you mean "lower"?', 1, 1),
        ("x and len(a, b)", "len() takes 1 argument, got 2", 1, 7),
        ("coalesce(a)", "coalesce() takes at least 2 arguments, got 1", 1, 1),
        ("a.__class__", 'names starting with "_" are not allowed', 1, 3),
        ("_secret", 'names starting with "_" are not allowed', 1, 1),
        ("x > 0d", '"0d" is zero', 1, 5),
        ("len", '"len" is a function; call it like len(...)', 1, 1),
        ("", "the expression is empty", 1, 1),
    ],
)
def test_syntax_errors_say_what_is_wrong_and_where(source, message, line, column):
    with pytest.raises(ExpressionError) as caught:
        parse_expression(source)
    assert message in caught.value.message
    assert (caught.value.line, caught.value.column) == (line, column)


def test_overlong_expressions_are_refused_with_a_clear_message():
    with pytest.raises(ExpressionError, match="longer than 2,000 characters"):
        parse_expression("1 + " * (MAX_SOURCE_LENGTH // 4) + "1")


def test_redundant_parentheses_add_no_depth():
    assert evaluate("(" * 900 + "1" + ")" * 900, {}) == 1


@pytest.mark.parametrize("source", ["not " * 400 + "x", "-" * 1500 + "1", "a" + ".b" * 600, "1" + " + 1" * 400])
def test_deep_nesting_is_refused_rather_than_overflowing_the_stack(source):
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse_expression(source)


def test_references_are_the_full_dotted_paths_used():
    expr = parse_expression(
        'deal.amount >= 10000 and account.segment in ["mid"] and account.owner.role == "csm" '
        "and now - coalesce(account.renewed_at, account.created_at) > 30d"
    )
    assert expr.references() == frozenset(
        {"deal.amount", "account.segment", "account.owner.role", "now", "account.renewed_at", "account.created_at"}
    )
    assert expr.roots() == frozenset({"deal", "account", "now"})


def test_keywords_inside_names_are_still_names():
    expr = parse_expression("android and notes or order.index")
    assert expr.roots() == frozenset({"android", "notes", "order"})


def test_check_roots_suggests_the_nearest_allowed_root():
    expr = parse_expression("acount.segment == 'mid' and deal.amount > 1 and zzz")
    assert check_roots(expr, ["account", "deal", "signal", "journey", "now"]) == [
        '"acount" is not available here; did you mean "account"?',
        '"zzz" is not available here (available: account, deal, journey, now, signal)',
    ]
    assert check_roots(parse_expression("deal.amount > 1"), ["deal"]) == []


def test_expressions_are_hashable_and_equal_by_source():
    a, b = parse_expression("x > 1"), Expression("x > 1")
    assert a == b and hash(a) == hash(b)
    assert a != parse_expression("x > 2")
    with pytest.raises(AttributeError):
        a.source = "y"  # type: ignore[misc]


def test_expressions_are_not_python():
    for source in ["__import__('os')", "open('/etc/passwd')", "x if y else z", "lambda: 1", "a[0]", "2 ** 3"]:
        with pytest.raises(ExpressionError):
            parse_expression(source)


def test_keywords_are_reserved_even_where_a_name_could_stand():
    with pytest.raises(ExpressionError, match='unexpected "not"; expected a value'):
        parse_expression("a + not(b)")
    with pytest.raises(ExpressionError, match="a field name"):
        parse_expression("account.in")
