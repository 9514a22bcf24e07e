"""Business calendars: turn "4 business hours" into a deadline on the owner's clock.

Written here rather than on `businesstimedelta` (last released 2017, pytz-only, and it
quietly treats naive datetimes as UTC). Public holidays come from the `holidays`
package. All arithmetic happens on aware datetimes: a business day's opening and
closing are local wall times converted to UTC, so a DST change shortens or lengthens
nothing that should not change, and results are always returned in UTC.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import holidays as holidays_lib

from orchestrator.durations import Duration

__all__ = ["BusinessCalendar", "CalendarError", "calendar_from_config"]

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CONFIG_KEYS = ("timezone", "workdays", "hours", "holidays", "extra_holidays")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

# A calendar with no business day in this many days is broken (e.g. every workday
# listed as a holiday); stop instead of looping for ever.
_MAX_SEARCH_DAYS = 366 * 2


class CalendarError(ValueError):
    """A calendar that cannot be built or used; str(error) is the message for RevOps."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@lru_cache(maxsize=1024)
def _public_holidays(code: str, year: int) -> frozenset[date]:
    # Cached per year as an immutable set: the package's holiday objects fill in
    # years lazily on lookup, which is not something to share between threads.
    country, _, subdiv = code.partition("-")
    table = holidays_lib.country_holidays(country, subdiv=subdiv or None, years=year)
    return frozenset(day for day in table if day.year == year)


@lru_cache(maxsize=1)
def _supported_holiday_codes() -> dict[str, list[str]]:
    # The package builds this table afresh on every call (milliseconds), and a calendar is
    # built for every task created: ask once per process.
    return holidays_lib.list_supported_countries()


def _check_holiday_code(code: str) -> None:
    supported = _supported_holiday_codes()
    country, dash, subdiv = code.partition("-")
    if country not in supported:
        close = difflib.get_close_matches(country, list(supported), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ' (use a country code such as "US", "GB" or "DE")'
        raise CalendarError(f'calendar "holidays": "{code}" is not a known country{hint}')
    if dash and subdiv not in supported[country]:
        known = ", ".join(supported[country][:12]) or "none"
        raise CalendarError(
            f'calendar "holidays": "{subdiv}" is not a region of {country} (known regions include: {known})'
        )


def _require_aware(at: datetime, what: str) -> None:
    if not isinstance(at, datetime):
        raise CalendarError(f"{what} must be a date and time, got {at!r}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise CalendarError(f"{what} has no time zone ({at.isoformat()}); times must be time-zone aware")


@dataclass(frozen=True)
class BusinessCalendar:
    """Working hours on workdays, minus public and extra holidays, in one time zone.

    Hours are a single daytime window (`start` < `end`); overnight shifts are not
    supported. A moment exactly at `end` is outside business hours.
    """

    timezone: str = "UTC"
    workdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    start: time = time(9, 0)
    end: time = time(17, 0)
    holidays: str | None = None
    extra_holidays: tuple[date, ...] = ()

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise CalendarError(_unknown_timezone_message(self.timezone)) from None
        if not self.workdays:
            raise CalendarError('calendar "workdays": at least one workday is needed')
        if any(not isinstance(d, int) or isinstance(d, bool) or not 0 <= d <= 6 for d in self.workdays):
            raise CalendarError('calendar "workdays": days must be Monday=0 to Sunday=6')
        if self.start >= self.end:
            raise CalendarError(
                f'calendar "hours": opening {self.start:%H:%M} must be before closing {self.end:%H:%M}'
            )
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise CalendarError('calendar "hours": give local times without a time zone')
        if self.holidays is not None:
            _check_holiday_code(self.holidays)

    @property
    def zone(self) -> ZoneInfo:
        """The calendar's time zone."""
        return ZoneInfo(self.timezone)

    def is_workday(self, day: date) -> bool:
        """True when `day` (a local date) is a workday that is not a holiday."""
        if day.weekday() not in self.workdays or day in self.extra_holidays:
            return False
        return self.holidays is None or day not in _public_holidays(self.holidays, day.year)

    def is_business_time(self, at: datetime) -> bool:
        """True when `at` falls inside working hours on a business day."""
        _require_aware(at, "the time")
        day = at.astimezone(self.zone).date()
        if not self.is_workday(day):
            return False
        opening, closing = self._window(day)
        return opening <= at < closing

    def add(self, start: datetime, duration: Duration) -> datetime:
        """The deadline `duration` after `start`, in UTC.

        The calendar part is elapsed time. Business days keep the local time of day;
        business minutes count only working time. Outside business hours, counting
        starts at the next opening.
        """
        _require_aware(start, "the start time")
        result = start.astimezone(UTC) + duration.calendar
        if duration.business_days:
            result = self._add_business_days(result, duration.business_days)
        if duration.business_minutes:
            result = self._add_business_minutes(result, duration.business_minutes)
        return result.astimezone(UTC)

    def add_business_time(self, start: datetime, amount: timedelta) -> datetime:
        """`amount` of working time after `start` (to the microsecond), in UTC."""
        _require_aware(start, "the start time")
        if amount <= timedelta(0):
            return start.astimezone(UTC)
        return self._add_business_time(start.astimezone(UTC), amount).astimezone(UTC)

    @property
    def day_length(self) -> timedelta:
        """Working time in an ordinary business day (no DST change)."""
        return datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)

    def business_minutes_between(self, a: datetime, b: datetime) -> int:
        """Whole business minutes from `a` to `b`; negative when `b` is before `a`."""
        _require_aware(a, "the first time")
        _require_aware(b, "the second time")
        if b < a:
            return -self.business_minutes_between(b, a)
        return self.business_time_between(a, b) // timedelta(minutes=1)

    def business_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Exact business time from `a` to `b` (zero when `b` is not after `a`).

        Summed as timedeltas (whole microseconds), never float seconds: float sums of
        windows drift just under a whole minute and flooring then loses that minute.
        """
        _require_aware(a, "the first time")
        _require_aware(b, "the second time")
        total = timedelta(0)
        if b <= a:
            return total
        for opening, closing in self._windows_from(a.astimezone(self.zone).date()):
            if opening >= b:
                break
            overlap = min(closing, b) - max(opening, a)
            if overlap > timedelta(0):
                total += overlap
        return total

    # -- internals -----------------------------------------------------------------

    def _window(self, day: date) -> tuple[datetime, datetime]:
        # Local wall times to UTC: across a DST change the window keeps its local
        # opening and closing, and its real length is what the clocks say.
        return _wall_to_utc(day, self.start, self.zone), _wall_to_utc(day, self.end, self.zone)

    def _windows_from(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        """Working windows from `day` on, for ever; the caller stops."""
        gap = 0
        while True:
            if self.is_workday(day):
                gap = 0
                yield self._window(day)
            else:
                gap += 1
                if gap > _MAX_SEARCH_DAYS:
                    raise CalendarError(
                        f"the calendar has no business day in the {_MAX_SEARCH_DAYS} days after "
                        f"{day - timedelta(days=gap)}; check its workdays and holidays"
                    )
            day += timedelta(days=1)

    def _current_or_next_window(self, at: datetime) -> tuple[datetime, datetime]:
        for opening, closing in self._windows_from(at.astimezone(self.zone).date()):
            if at < closing:
                return opening, closing
        raise AssertionError("unreachable: _windows_from never ends")  # pragma: no cover

    def _add_business_days(self, at: datetime, days: int) -> datetime:
        opening, closing = self._current_or_next_window(at)
        anchor = max(at, opening)
        local_time = anchor.astimezone(self.zone).time()
        counted = 0
        for window_open, _ in self._windows_from(opening.astimezone(self.zone).date()):
            if counted == days:
                day = window_open.astimezone(self.zone).date()
                return _wall_to_utc(day, local_time, self.zone)
            counted += 1
        raise AssertionError("unreachable: _windows_from never ends")  # pragma: no cover

    def _add_business_minutes(self, at: datetime, minutes: int) -> datetime:
        return self._add_business_time(at, timedelta(minutes=minutes))

    def _add_business_time(self, at: datetime, remaining: timedelta) -> datetime:
        for opening, closing in self._windows_from(at.astimezone(self.zone).date()):
            if at >= closing:
                continue
            cursor = max(at, opening)
            available = closing - cursor
            if remaining <= available:
                return cursor + remaining
            remaining -= available
        raise AssertionError("unreachable: _windows_from never ends")  # pragma: no cover


def _wall_to_utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time; one that a spring-forward gap skips is the jump itself.

    Python reads a skipped wall time (02:30 when clocks go 02:00 -> 03:00) with the old
    offset, which lands at 03:30, after the gap; a working day that opens "at 02:30"
    opens when the clocks reach it, at 03:00.
    """
    wall = datetime.combine(day, at)
    before = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if before.astimezone(zone).replace(tzinfo=None) == wall:
        return before  # an ordinary or repeated (fall-back: first occurrence) wall time
    # In a gap: the jump lies between the two readings; find the first instant whose wall
    # clock is at or past `wall` (about 40 halvings of an hour-long gap).
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = before
    while high - low > timedelta(microseconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high


def _unknown_timezone_message(name: object) -> str:
    message = f'calendar "timezone": "{name}" is not a known time zone'
    if isinstance(name, str) and name:
        close = difflib.get_close_matches(name, sorted(available_timezones()), n=1, cutoff=0.7)
        if close:
            return f'{message}; did you mean "{close[0]}"?'
    return f'{message} (use a name such as "Europe/Berlin" or "America/New_York")'


def _parse_workdays(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise CalendarError('calendar "workdays": give a list of days, e.g. ["mon", "tue", "wed", "thu", "fri"]')
    days: list[int] = []
    for item in value:
        name = str(item).strip().lower()
        if name in _DAY_NAMES:
            days.append(_DAY_NAMES.index(name))
        elif name in _FULL_DAY_NAMES:
            days.append(_FULL_DAY_NAMES.index(name))
        else:
            close = difflib.get_close_matches(name, [*_DAY_NAMES, *_FULL_DAY_NAMES], n=1)
            hint = f'; did you mean "{close[0]}"?' if close else ' (use "mon", "tue", ... "sun")'
            raise CalendarError(f'calendar "workdays": "{item}" is not a day of the week{hint}')
    return tuple(sorted(set(days)))


def _parse_hours(value: Any) -> tuple[time, time]:
    match = _HOURS.match(value) if isinstance(value, str) else None
    if match is None:
        raise CalendarError(f'calendar "hours": "{value}" is not a time range; write e.g. "09:00-17:00"')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    # "24:00" is how people write "end of day"; time() has no 24:00, so take 23:59.
    if (h2, m2) == (24, 0):
        h2, m2 = 23, 59
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise CalendarError(f'calendar "hours": "{value}" has an impossible time; write e.g. "09:00-17:00"')
    return time(h1, m1), time(h2, m2)


def _parse_extra_holidays(value: Any) -> tuple[date, ...]:
    if not isinstance(value, (list, tuple)):
        raise CalendarError('calendar "extra_holidays": give a list of dates, e.g. ["2026-12-24"]')
    days: list[date] = []
    for item in value:
        if isinstance(item, datetime):
            raise CalendarError(f'calendar "extra_holidays": "{item}" has a time; give only the date')
        if isinstance(item, date):
            days.append(item)
            continue
        try:
            days.append(date.fromisoformat(str(item).strip()))
        except ValueError:
            raise CalendarError(
                f'calendar "extra_holidays": "{item}" is not a date; write e.g. "2026-12-24"'
            ) from None
    return tuple(sorted(set(days)))


def calendar_from_config(data: Mapping[str, Any]) -> BusinessCalendar:
    """Build a calendar from playbook/config data; errors name the offending key.

    Example: {"timezone": "Europe/Berlin", "workdays": ["mon", "tue", "wed", "thu", "fri"],
    "hours": "09:00-17:00", "holidays": "DE", "extra_holidays": ["2026-12-24"]}.
    """
    if not isinstance(data, Mapping):
        raise CalendarError("a calendar must be a set of keys such as timezone, workdays, hours, holidays")
    for key in data:
        if key not in _CONFIG_KEYS:
            close = difflib.get_close_matches(str(key), _CONFIG_KEYS, n=1)
            hint = f'; did you mean "{close[0]}"?' if close else f" (known keys: {', '.join(_CONFIG_KEYS)})"
            raise CalendarError(f'calendar: unknown key "{key}"{hint}')

    kwargs: dict[str, Any] = {}
    if "timezone" in data:
        if not isinstance(data["timezone"], str):
            raise CalendarError(_unknown_timezone_message(data["timezone"]))
        kwargs["timezone"] = data["timezone"].strip()
    if "workdays" in data:
        kwargs["workdays"] = _parse_workdays(data["workdays"])
    if "hours" in data:
        kwargs["start"], kwargs["end"] = _parse_hours(data["hours"])
    if data.get("holidays") is not None:
        code = data["holidays"]
        if not isinstance(code, str) or not code.strip():
            raise CalendarError('calendar "holidays": give a country code such as "US", "GB", "DE" or "US-CA"')
        kwargs["holidays"] = code.strip().upper()
    if "extra_holidays" in data:
        kwargs["extra_holidays"] = _parse_extra_holidays(data["extra_holidays"])
    return BusinessCalendar(**kwargs)
