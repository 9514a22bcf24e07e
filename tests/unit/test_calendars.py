from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.calendars import BusinessCalendar, CalendarError, calendar_from_config
from orchestrator.durations import parse_duration

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


@pytest.fixture
def us_calendar() -> BusinessCalendar:
    return BusinessCalendar(timezone="America/New_York", holidays="US")


def test_business_hours_within_one_day_add_plainly(us_calendar):
    deadline = us_calendar.add(ny(2026, 11, 2, 10, 0), parse_duration("4 business hours"))
    assert deadline == ny(2026, 11, 2, 14, 0)


def test_results_are_in_utc(us_calendar):
    deadline = us_calendar.add(ny(2026, 11, 2, 10, 0), parse_duration("1 business hour"))
    assert deadline.tzinfo is UTC
    assert deadline == datetime(2026, 11, 2, 16, 0, tzinfo=UTC)


def test_business_hours_skip_the_weekend(us_calendar):
    friday_afternoon = ny(2026, 11, 6, 15, 0)
    deadline = us_calendar.add(friday_afternoon, parse_duration("4 business hours"))
    assert deadline == ny(2026, 11, 9, 11, 0)  # Monday


def test_business_hours_skip_thanksgiving(us_calendar):
    wednesday_before = ny(2026, 11, 25, 15, 0)
    deadline = us_calendar.add(wednesday_before, parse_duration("4 business hours"))
    assert deadline == ny(2026, 11, 27, 11, 0)  # Thursday 26th is a holiday


def test_business_days_skip_weekends_and_holidays(us_calendar):
    wednesday_before_thanksgiving = ny(2026, 11, 25, 15, 0)
    deadline = us_calendar.add(wednesday_before_thanksgiving, parse_duration("2 business days"))
    assert deadline == ny(2026, 11, 30, 15, 0)  # Fri 27th, then Monday 30th


def test_business_days_keep_the_local_time_of_day(us_calendar):
    deadline = us_calendar.add(ny(2026, 11, 2, 10, 17), parse_duration("1 business day"))
    assert deadline == ny(2026, 11, 3, 10, 17)


def test_business_days_started_outside_hours_count_from_the_next_opening(us_calendar):
    friday_evening = ny(2026, 11, 6, 18, 30)
    deadline = us_calendar.add(friday_evening, parse_duration("1 business day"))
    assert deadline == ny(2026, 11, 10, 9, 0)  # opening Monday, one business day later


def test_business_hours_started_before_opening_count_from_the_opening(us_calendar):
    early = ny(2026, 11, 2, 6, 0)
    assert us_calendar.add(early, parse_duration("2 business hours")) == ny(2026, 11, 2, 11, 0)


def test_business_hours_started_on_a_sunday_count_from_monday_opening(us_calendar):
    sunday = ny(2026, 11, 8, 12, 0)
    assert us_calendar.add(sunday, parse_duration("30 business minutes")) == ny(2026, 11, 9, 9, 30)


def test_business_hours_ending_exactly_at_closing_stay_on_that_day(us_calendar):
    assert us_calendar.add(ny(2026, 11, 2, 13, 0), parse_duration("4 business hours")) == ny(2026, 11, 2, 17, 0)


def test_business_hours_across_a_dst_change_keep_local_opening_hours(us_calendar):
    # New York falls back on Sunday 2026-11-01; Friday 16:00 EDT + 2h ends Monday 10:00 EST.
    deadline = us_calendar.add(ny(2026, 10, 30, 16, 0), parse_duration("2 business hours"))
    assert deadline == ny(2026, 11, 2, 10, 0)
    assert deadline == datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


def test_business_days_across_a_dst_change_keep_local_time_of_day():
    calendar = BusinessCalendar(timezone="Europe/Berlin", holidays="DE")
    # Berlin springs forward on Sunday 2026-03-29.
    deadline = calendar.add(berlin(2026, 3, 27, 10, 0), parse_duration("1 business day"))
    assert deadline == berlin(2026, 3, 30, 10, 0)
    assert deadline - berlin(2026, 3, 27, 10, 0).astimezone(UTC) == timedelta(days=3, hours=-1)


def test_calendar_durations_add_elapsed_time_ignoring_business_hours(us_calendar):
    saturday_night = ny(2026, 11, 7, 23, 0)
    assert us_calendar.add(saturday_night, parse_duration("14d")) == ny(2026, 11, 21, 23, 0)
    # Across the fall-back change one calendar day is 24 elapsed hours.
    assert us_calendar.add(ny(2026, 10, 31, 12, 0), parse_duration("1d")) == ny(2026, 11, 1, 11, 0)


def test_a_berlin_owner_and_a_new_york_owner_get_different_deadlines_for_the_same_task():
    berlin_owner = BusinessCalendar(timezone="Europe/Berlin", holidays="DE")
    new_york_owner = BusinessCalendar(timezone="America/New_York", holidays="US")
    created = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)  # 16:00 Berlin, 10:00 New York
    four_hours = parse_duration("4 business hours")
    assert berlin_owner.add(created, four_hours) == berlin(2026, 11, 3, 12, 0)
    assert new_york_owner.add(created, four_hours) == ny(2026, 11, 2, 14, 0)


def test_german_unity_day_is_not_a_berlin_business_day():
    calendar = BusinessCalendar(timezone="Europe/Berlin", holidays="DE")
    assert not calendar.is_workday(date(2025, 10, 3))  # a Friday
    assert calendar.is_workday(date(2025, 10, 2))


def test_subdivision_holidays_apply_only_to_their_region():
    # Cesar Chavez Day is a California state holiday, not a federal one.
    california = BusinessCalendar(timezone="America/Los_Angeles", holidays="US-CA")
    federal = BusinessCalendar(timezone="America/Los_Angeles", holidays="US")
    assert not california.is_workday(date(2026, 3, 31))
    assert federal.is_workday(date(2026, 3, 31))


def test_extra_holidays_are_not_business_days():
    calendar = BusinessCalendar(extra_holidays=(date(2026, 12, 24),))
    start = datetime(2026, 12, 23, 16, 0, tzinfo=UTC)
    assert calendar.add(start, parse_duration("2 business hours")) == datetime(2026, 12, 25, 10, 0, tzinfo=UTC)


def test_is_business_time_respects_hours_weekends_and_holidays(us_calendar):
    assert us_calendar.is_business_time(ny(2026, 11, 2, 9, 0))
    assert us_calendar.is_business_time(ny(2026, 11, 2, 16, 59))
    assert not us_calendar.is_business_time(ny(2026, 11, 2, 17, 0))
    assert not us_calendar.is_business_time(ny(2026, 11, 2, 8, 59))
    assert not us_calendar.is_business_time(ny(2026, 11, 7, 12, 0))  # Saturday
    assert not us_calendar.is_business_time(ny(2026, 11, 26, 12, 0))  # Thanksgiving


def test_business_minutes_between_counts_only_working_time(us_calendar):
    friday = ny(2026, 11, 6, 16, 0)
    monday = ny(2026, 11, 9, 10, 30)
    assert us_calendar.business_minutes_between(friday, monday) == 150
    assert us_calendar.business_minutes_between(monday, friday) == -150
    assert us_calendar.business_minutes_between(friday, friday) == 0


def test_business_minutes_between_is_the_inverse_of_add(us_calendar):
    start = ny(2026, 11, 20, 14, 10)
    deadline = us_calendar.add(start, parse_duration("20 business hours"))
    assert us_calendar.business_minutes_between(start, deadline) == 20 * 60


@pytest.mark.parametrize("method", ["add", "is_business_time", "between"])
def test_naive_datetimes_are_refused(us_calendar, method):
    naive = datetime(2026, 11, 2, 10, 0)
    with pytest.raises(CalendarError, match="no time zone"):
        if method == "add":
            us_calendar.add(naive, parse_duration("1h"))
        elif method == "is_business_time":
            us_calendar.is_business_time(naive)
        else:
            us_calendar.business_minutes_between(naive, ny(2026, 11, 3, 10, 0))


def test_calendar_with_no_reachable_business_day_says_so_instead_of_looping():
    every_weekday_2026 = tuple(
        date(2026, 1, 1) + timedelta(days=i) for i in range(800)
    )
    calendar = BusinessCalendar(workdays=(0,), extra_holidays=every_weekday_2026)
    with pytest.raises(CalendarError, match="no business day"):
        calendar.add(datetime(2026, 1, 1, tzinfo=UTC), parse_duration("1 business hour"))


def test_calendar_from_config_reads_the_documented_shape():
    calendar = calendar_from_config(
        {
            "timezone": "Europe/Berlin",
            "workdays": ["mon", "tue", "wed", "thu", "Friday"],
            "hours": "08:30-16:00",
            "holidays": "de",
            "extra_holidays": ["2026-12-24", date(2026, 12, 31)],
        }
    )
    assert calendar == BusinessCalendar(
        timezone="Europe/Berlin",
        workdays=(0, 1, 2, 3, 4),
        start=time(8, 30),
        end=time(16, 0),
        holidays="DE",
        extra_holidays=(date(2026, 12, 24), date(2026, 12, 31)),
    )


def test_calendar_from_config_defaults_to_weekdays_nine_to_five_utc():
    assert calendar_from_config({}) == BusinessCalendar()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"timezone": "Europe/Berln"},
         'calendar "timezone": "Europe/Berln" is not a known time zone; did you mean "Europe/Berlin"?'),
        ({"timezone": 5}, 'calendar "timezone"'),
        ({"workdays": ["mon", "tues"]}, 'calendar "workdays": "tues" is not a day of the week; did you mean "tue"?'),
        ({"workdays": "mon-fri"}, 'calendar "workdays"'),
        ({"hours": "9-5"}, 'calendar "hours": "9-5" is not a time range'),
        ({"hours": "17:00-09:00"}, 'calendar "hours": opening 17:00 must be before closing 09:00'),
        ({"hours": "09:00-25:00"}, 'calendar "hours"'),
        ({"holidays": "XX"}, 'calendar "holidays": "XX" is not a known country'),
        ({"holidays": "US-ZZ"}, 'calendar "holidays": "ZZ" is not a region of US'),
        ({"extra_holidays": ["next friday"]}, 'calendar "extra_holidays": "next friday" is not a date'),
        ({"timzone": "UTC"}, 'calendar: unknown key "timzone"; did you mean "timezone"?'),
    ],
)
def test_calendar_config_errors_name_the_bad_key(config, message):
    with pytest.raises(CalendarError) as caught:
        calendar_from_config(config)
    assert message in str(caught.value)


def test_calendars_are_hashable_values():
    assert hash(BusinessCalendar(holidays="US")) == hash(BusinessCalendar(holidays="US"))


# -- exact arithmetic and DST gaps (issue 18) --------------------------------------


def test_business_minutes_between_sums_exact_durations_not_float_seconds():
    # Float seconds summed over three windows came to 31199.99999... and floored to 519.
    calendar = BusinessCalendar()
    start = datetime(2026, 11, 2, 16, 34, 37, 878251, tzinfo=UTC)
    deadline = calendar.add(start, parse_duration("520 business minutes"))
    assert deadline == datetime(2026, 11, 4, 9, 14, 37, 878251, tzinfo=UTC)
    assert calendar.business_minutes_between(start, deadline) == 520
    assert calendar.business_time_between(start, deadline) == timedelta(minutes=520)


@settings(max_examples=200)
@given(offset=st.integers(min_value=0, max_value=14 * 24 * 3600 * 10**6 - 1),
       minutes=st.integers(min_value=1, max_value=5000))
def test_between_inverts_add_for_starts_with_microseconds(offset, minutes):
    calendar = BusinessCalendar(timezone="America/New_York", holidays="US")
    start = datetime(2026, 11, 2, tzinfo=UTC) + timedelta(microseconds=offset)
    deadline = calendar.add(start, parse_duration(f"{minutes} business minutes"))
    assert calendar.business_minutes_between(start, deadline) == minutes


def test_an_opening_time_in_the_spring_forward_gap_opens_when_the_clocks_jump():
    # New York, 2026-03-08: 02:00 EST -> 03:00 EDT. "02:30" does not exist that day; the
    # day opens at the jump (07:00 UTC), not at 03:30 EDT (07:30 UTC).
    calendar = BusinessCalendar(timezone="America/New_York", workdays=tuple(range(7)),
                                start=time(2, 30), end=time(17, 0))
    opening = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert calendar.is_business_time(opening)
    assert not calendar.is_business_time(opening - timedelta(microseconds=1))
    sunday_night = datetime(2026, 3, 8, 4, 0, tzinfo=UTC)  # 23:00 EST on Saturday
    assert calendar.add(sunday_night, parse_duration("30 business minutes")) == opening + timedelta(minutes=30)
    # The next day opens at 02:30 EDT as usual.
    assert calendar.is_business_time(datetime(2026, 3, 9, 6, 30, tzinfo=UTC))
    assert not calendar.is_business_time(datetime(2026, 3, 9, 6, 29, tzinfo=UTC))


def test_a_closing_time_in_the_spring_forward_gap_closes_when_the_clocks_jump():
    calendar = BusinessCalendar(timezone="America/New_York", workdays=tuple(range(7)),
                                start=time(0, 0), end=time(2, 30))
    # Opens 00:00 EST (05:00 UTC), closes at the jump (07:00 UTC): two real hours.
    day = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)
    assert calendar.business_minutes_between(day, day + timedelta(hours=3)) == 120
