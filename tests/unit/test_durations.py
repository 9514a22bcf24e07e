from datetime import timedelta

import pytest

from orchestrator.durations import Duration, DurationError, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("14d", timedelta(days=14)),
        ("90d", timedelta(days=90)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("45m", timedelta(minutes=45)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("3 days", timedelta(days=3)),
        ("2 hours", timedelta(hours=2)),
        ("30 minutes", timedelta(minutes=30)),
        ("1 day", timedelta(days=1)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("  14D ", timedelta(days=14)),
    ],
)
def test_calendar_durations_become_wall_clock_timedeltas(text, expected):
    duration = parse_duration(text)
    assert duration.calendar == expected
    assert duration.business_minutes == 0
    assert duration.business_days == 0
    assert not duration.is_business


@pytest.mark.parametrize(
    ("text", "minutes", "days"),
    [
        ("4 business hours", 240, 0),
        ("1 business hour", 60, 0),
        ("2 business days", 0, 2),
        ("1 business day", 0, 1),
        ("30 business minutes", 30, 0),
        ("1 business day 4 business hours", 240, 1),
    ],
)
def test_business_durations_count_business_minutes_and_days(text, minutes, days):
    duration = parse_duration(text)
    assert duration.business_minutes == minutes
    assert duration.business_days == days
    assert duration.calendar == timedelta(0)
    assert duration.is_business


def test_duration_keeps_the_text_as_written_for_messages():
    duration = parse_duration(" 4 business hours ")
    assert duration.text == "4 business hours"
    assert str(duration) == "4 business hours"


def test_durations_are_hashable_and_compare_by_value():
    assert parse_duration("14d") == parse_duration("14d")
    assert len({parse_duration("14d"), parse_duration("14d")}) == 1
    assert parse_duration("14d") == Duration(text="14d", calendar=timedelta(days=14))


def test_misspelled_unit_suggests_the_right_word():
    with pytest.raises(DurationError) as caught:
        parse_duration("4 bussiness hours")
    message = str(caught.value)
    assert message.startswith('"4 bussiness hours" is not a duration; write e.g. "14d"')
    assert 'did you mean "business"' in message


def test_misspelled_unit_word_suggests_the_nearest_unit():
    with pytest.raises(DurationError, match='did you mean "hours"'):
        parse_duration("2 hourss")


def test_a_number_from_yaml_asks_for_a_unit():
    with pytest.raises(DurationError, match=r'14 has no unit; write e\.g\. "14d"'):
        parse_duration(14)  # type: ignore[arg-type]


def test_a_bare_number_string_asks_for_a_unit():
    with pytest.raises(DurationError, match="missing a unit"):
        parse_duration("14")


@pytest.mark.parametrize("text", ["0d", "0 business hours", "0h0m"])
def test_zero_durations_are_refused(text):
    with pytest.raises(DurationError, match="longer than zero"):
        parse_duration(text)


def test_negative_durations_are_refused():
    with pytest.raises(DurationError, match="negative"):
        parse_duration("-5d")


def test_mixing_business_and_calendar_time_is_refused():
    with pytest.raises(DurationError, match="mixes business time and calendar time"):
        parse_duration("1 business day 2h")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("30s", "minutes are the smallest unit"),
        ("10 seconds", "minutes are the smallest unit"),
        ("3 months", "months differ in length"),
        ("1y", "years differ in length"),
        ("1.5h", "whole numbers"),
        ("2 business weeks", "5 business days"),
        ("1h1h", "appears twice"),
    ],
)
def test_units_we_refuse_say_why(text, reason):
    with pytest.raises(DurationError, match=reason):
        parse_duration(text)


@pytest.mark.parametrize("text", ["", "   ", "soon", "d14", "14 d x", "x" * 200, "14d!"])
def test_anything_else_is_not_a_duration(text):
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert str(caught.value)  # always a readable message, never empty


def test_absurdly_long_durations_are_refused_before_they_overflow():
    with pytest.raises(DurationError, match="ten years"):
        parse_duration("99999999999999999999d")


def test_duration_error_is_a_value_error_with_a_message_attribute():
    with pytest.raises(ValueError) as caught:
        parse_duration(None)  # type: ignore[arg-type]
    assert isinstance(caught.value, DurationError)
    assert caught.value.message == str(caught.value)
