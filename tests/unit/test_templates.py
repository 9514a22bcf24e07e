from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from orchestrator.playbook.templates import (
    Template,
    TemplateError,
    check_variables,
    compile_template,
)

CONTEXT = {
    "account": {"name": "Acme GmbH", "owner": {"name": "Dana"}, "arr": 125000, "notes": None},
    "deal": {"amount": 12500, "close_date": date(2026, 11, 23)},
    "now": datetime(2026, 11, 2, 12, 0, tzinfo=UTC),
}


def test_template_renders_context_fields_as_plain_text():
    template = compile_template("Kickoff call with {{ account.name }} <{{ account.owner.name }}> & co")
    assert template.render(CONTEXT) == "Kickoff call with Acme GmbH <Dana> & co"


def test_empty_fields_render_as_nothing_rather_than_none():
    assert compile_template("notes: [{{ account.notes }}]").render(CONTEXT) == "notes: []"


def test_dict_keys_win_over_dict_methods():
    template = compile_template("{{ order.items }} / {{ order.values }}")
    assert template.render({"order": {"items": 3, "values": "x"}}) == "3 / x"


def test_objects_with_attributes_work_like_dicts():
    class Account:
        name = "Initech"

    assert compile_template("{{ account.name }}").render({"account": Account()}) == "Initech"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(12500, "$12,500"), (1234.5, "$1,234.50"), (Decimal("99.99"), "$99.99"), (-300, "-$300"), (0, "$0")],
)
def test_money_filter_formats_amounts_with_thousands_separators(value, expected):
    assert compile_template("{{ x | money }}").render({"x": value}) == expected


def test_money_filter_takes_a_currency_symbol():
    assert compile_template("{{ x | money('€') }}").render({"x": 5000}) == "€5,000"


def test_money_filter_refuses_text():
    with pytest.raises(TemplateError, match='"money" filter needs a number, got "lots"'):
        compile_template("{{ x | money }}").render({"x": "lots"})


def test_date_filter_prints_iso_dates_and_utc_for_aware_datetimes():
    template = compile_template("{{ deal.close_date | date }} {{ when | date('%d.%m.%Y %H:%M') }}")
    berlin_evening = datetime.fromisoformat("2026-11-23T23:30:00+01:00")
    assert template.render({**CONTEXT, "when": berlin_evening}) == "2026-11-23 23.11.2026 22:30"


def test_date_filter_does_not_parse_strings():
    with pytest.raises(TemplateError, match='"date" filter needs a date'):
        compile_template("{{ x | date }}").render({"x": "2026-11-23"})


def test_days_until_counts_from_now_in_the_context():
    template = compile_template("{{ deal.close_date | days_until }} days left")
    assert template.render(CONTEXT) == "21 days left"


def test_days_until_counts_calendar_dates_not_24_hour_blocks():
    late_evening = {"now": datetime(2026, 11, 2, 23, 0, tzinfo=UTC), "d": datetime(2026, 11, 3, 1, 0, tzinfo=UTC)}
    assert compile_template("{{ d | days_until }}").render(late_evening) == "1"


def test_days_until_is_negative_for_past_dates():
    assert compile_template("{{ d | days_until }}").render({**CONTEXT, "d": date(2026, 10, 30)}) == "-3"


def test_undefined_root_variable_message_names_the_variable():
    with pytest.raises(TemplateError) as caught:
        compile_template("Hello\n{{ acount.name }}").render(CONTEXT)
    assert caught.value.message == '"acount" is not available to this template'
    assert caught.value.line == 2


def test_undefined_field_message_names_the_dotted_path_and_line():
    with pytest.raises(TemplateError) as caught:
        compile_template("Hi {{ account.name }},\n\nyour deal {{ deal.amnt | money }}").render(CONTEXT)
    assert str(caught.value) == '"deal.amnt" has no value: the field "amnt" does not exist'
    assert caught.value.line == 3


def test_default_filter_makes_a_missing_field_optional():
    assert compile_template("{{ deal.owner | default('nobody') }}").render(CONTEXT) == "nobody"


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ account.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ x.append(1) }}",
        "{{ d.update({'a': 1}) }}",
        "{{ 'a' * 100000000 }}",
        "{{ 10 ** 100000 }}",
    ],
)
def test_sandbox_blocks_reaching_python_internals_and_mutation(attack):
    with pytest.raises(TemplateError, match="not allowed"):
        compile_template(attack).render({"account": {}, "x": [], "d": {}})


def test_sandbox_violation_message_says_it_is_not_allowed():
    with pytest.raises(TemplateError, match="not allowed"):
        compile_template("{{ ''.__class__.__mro__ }}").render({})


def test_syntax_error_reports_its_line():
    with pytest.raises(TemplateError) as caught:
        compile_template("line one\nline two {{ account.name }\nline three")
    assert caught.value.line == 2
    assert "syntax error" in caught.value.message


def test_unclosed_block_is_a_syntax_error():
    with pytest.raises(TemplateError, match="syntax error"):
        compile_template("{% if deal.amount > 10 %}big")


def test_variables_lists_root_names():
    template = compile_template("{{ account.name }} {{ contacts[0] }} {{ deal.amount | money }}")
    assert template.variables() == frozenset({"account", "contacts", "deal"})


@pytest.mark.parametrize("source, what", [
    ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "loops"),
    ("{% macro m() %}x{% endmacro %}{{ m() }}", "macros"),
])
def test_loops_and_macros_are_refused_when_the_template_is_compiled(source, what):
    with pytest.raises(TemplateError, match=f"{what}.* are not allowed in playbook templates"):
        compile_template(source)


@pytest.mark.parametrize("source", [
    "{{ 'x'.ljust(300000000) }}",
    "{{ '{:>300000000}'.format(1) }}",
    "{{ s|replace('a', 'aaaaaaaaaa')|replace('a', 'aaaaaaaaaa')|replace('a', 'aaaaaaaaaa')"
    "|replace('a', 'aaaaaaaaaa') }}",
])
def test_a_template_cannot_grow_its_text_without_bound(source):
    with pytest.raises(TemplateError, match="not allowed"):
        compile_template(source).render({"s": "a" * 1000})


def test_padding_filters_are_not_offered():
    with pytest.raises(TemplateError, match="No filter named 'center'"):
        compile_template("{{ 'x' | center(300000000) }}")


def test_templates_are_hashable_and_equal_by_source():
    a, b = compile_template("{{ account.name }}"), Template("{{ account.name }}")
    assert a == b
    assert hash(a) == hash(b)
    assert a != compile_template("{{ deal.name }}")
    assert len({a, b}) == 1


def test_templates_are_frozen():
    template = compile_template("x")
    with pytest.raises(AttributeError):
        template.source = "y"  # type: ignore[misc]


def test_check_variables_suggests_the_nearest_allowed_name():
    template = compile_template("{{ acount.name }} {{ deal.amount }} {{ zzz }}")
    messages = check_variables(template, ["account", "deal", "signal", "journey"])
    assert messages == [
        '"acount" is not available here; did you mean "account"?',
        '"zzz" is not available here (available: account, deal, journey, signal)',
    ]


def test_check_variables_is_empty_when_everything_is_allowed():
    assert check_variables(compile_template("{{ account.name }}"), ["account"]) == []


def test_overlong_templates_are_refused():
    with pytest.raises(TemplateError, match="longer than"):
        compile_template("x" * 20_001)
