"""Durations as RevOps write them in playbooks: "14d", "1h30m", "4 business hours".

A duration is either wall-clock time (`calendar`) or business time (`business_days`
and/or `business_minutes`), never both: "1 business day 2h" has no single sensible
meaning, so it is refused rather than guessed. Business time only becomes a deadline
on someone's business calendar (see `orchestrator.calendars`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta

from orchestrator.hints import closest

__all__ = ["Duration", "DurationError", "GovernanceError", "parse_duration", "parse_quiet_hours", "parse_touch_cap"]

_EXAMPLES = '"14d", "1h30m", "4 business hours" or "2 business days"'

# Minutes per unit; words and their abbreviations map to the same unit letter.
_UNIT_MINUTES = {"w": 7 * 24 * 60, "d": 24 * 60, "h": 60, "m": 1}
_UNIT_WORDS = {
    "w": "w", "wk": "w", "wks": "w", "week": "w", "weeks": "w",
    "d": "d", "day": "d", "days": "d",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
}  # fmt: skip
# Units people reach for that we refuse on purpose, with the reason in their terms.
_REFUSED_UNITS = {
    "s": "minutes are the smallest unit",
    "sec": "minutes are the smallest unit",
    "secs": "minutes are the smallest unit",
    "second": "minutes are the smallest unit",
    "seconds": "minutes are the smallest unit",
    "mo": 'months differ in length; write days instead, e.g. "30d"',
    "month": 'months differ in length; write days instead, e.g. "30d"',
    "months": 'months differ in length; write days instead, e.g. "30d"',
    "y": 'years differ in length; write days instead, e.g. "365d"',
    "yr": 'years differ in length; write days instead, e.g. "365d"',
    "year": 'years differ in length; write days instead, e.g. "365d"',
    "years": 'years differ in length; write days instead, e.g. "365d"',
}
_BUSINESS = "business"
_KNOWN_WORDS = sorted({*_UNIT_WORDS, *_REFUSED_UNITS, _BUSINESS})

# Ten years is far beyond any SLA or review cycle; the cap keeps typos like
# "14000000d" from becoming overflow errors deep inside date arithmetic.
_MAX_MINUTES = 3650 * 24 * 60
_MAX_TEXT = 100

_TOKEN = re.compile(r"\d+(?:[.,]\d+)?|[a-z]+|\S")


class DurationError(ValueError):
    """A duration that cannot be understood; str(error) is the message for RevOps."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Duration:
    """A parsed duration; `text` is kept as written so messages can quote it."""

    text: str
    calendar: timedelta = timedelta(0)
    business_minutes: int = 0
    business_days: int = 0

    @property
    def is_business(self) -> bool:
        """True when the duration counts business time rather than wall-clock time."""
        return bool(self.business_minutes or self.business_days)

    def __str__(self) -> str:
        return self.text


def _not_a_duration(text: str, hint: str | None = None) -> DurationError:
    message = f'"{text}" is not a duration; write e.g. {_EXAMPLES}'
    if hint:
        message += f" ({hint})"
    return DurationError(message)


def _did_you_mean(word: str) -> str | None:
    match = closest(word, _KNOWN_WORDS, cutoff=0.75)
    return f'did you mean "{match}" instead of "{word}"?' if match else None


def parse_duration(text: str) -> Duration:
    """Parse "14d", "2w", "1h30m", "3 days", "4 business hours", "2 business days"."""
    if isinstance(text, bool) or not isinstance(text, str):
        if isinstance(text, int):
            raise DurationError(
                f"{text} has no unit; write e.g. \"{text}d\" for days or "
                f"\"{text} business hours\" for working hours"
            )
        raise DurationError(f"expected a duration such as {_EXAMPLES}, got {text!r}")

    shown = text.strip()
    if not shown:
        raise DurationError(f"the duration is empty; write e.g. {_EXAMPLES}")
    if len(shown) > _MAX_TEXT:
        raise DurationError(f"the duration is too long to be a duration; write e.g. {_EXAMPLES}")

    tokens = _TOKEN.findall(shown.lower())
    calendar_minutes = 0
    business_minutes = 0
    business_days = 0
    seen: set[tuple[bool, str]] = set()
    any_business = any_calendar = False
    hint: str | None

    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "-":
            raise DurationError(f'"{shown}" is negative; a duration must be longer than zero')
        if not token[0].isdigit():
            if token in _KNOWN_WORDS:
                hint = "every unit needs a number before it"
            else:
                hint = _did_you_mean(token) if token.isalpha() else None
            raise _not_a_duration(shown, hint)
        if not token.isdigit():
            raise _not_a_duration(shown, 'use whole numbers, e.g. "1h30m" instead of "1.5h"')
        amount = int(token)
        i += 1

        business = False
        if i < len(tokens) and tokens[i] == _BUSINESS:
            business = True
            i += 1
        if i >= len(tokens):
            raise DurationError(
                f'"{shown}" is missing a unit; write e.g. "{amount}d" for days or '
                f'"{amount} business hours" for working hours'
            )
        word = tokens[i]
        i += 1
        if word in _REFUSED_UNITS:
            raise _not_a_duration(shown, _REFUSED_UNITS[word])
        unit = _UNIT_WORDS.get(word)
        if unit is None:
            hint = _did_you_mean(word) if word.isalpha() else None
            raise _not_a_duration(shown, hint)
        if (business, unit) in seen:
            raise _not_a_duration(shown, f'"{word}" appears twice')
        seen.add((business, unit))

        if business:
            any_business = True
            if unit == "w":
                # Workweeks differ between calendars; days say exactly what is meant.
                raise _not_a_duration(shown, 'write business weeks as days, e.g. "5 business days"')
            if unit == "d":
                business_days += amount
            else:
                business_minutes += amount * _UNIT_MINUTES[unit]
        else:
            any_calendar = True
            calendar_minutes += amount * _UNIT_MINUTES[unit]

    if any_business and any_calendar:
        raise DurationError(
            f'"{shown}" mixes business time and calendar time; use one kind, '
            f'e.g. "1 business day" or "1d"'
        )
    if calendar_minutes == 0 and business_minutes == 0 and business_days == 0:
        raise DurationError(f'"{shown}" is zero; a duration must be longer than zero')
    if max(calendar_minutes, business_minutes, business_days * 24 * 60) > _MAX_MINUTES:
        raise DurationError(f'"{shown}" is longer than ten years; check for a typo')

    return Duration(
        text=shown,
        calendar=timedelta(minutes=calendar_minutes),
        business_minutes=business_minutes,
        business_days=business_days,
    )


# -- governance settings: caps and quiet hours (parsed by config at start) --------

_CAP = re.compile(r"^\s*(\d+)\s+per\s+(.+?)\s*$")
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class GovernanceError(ValueError):
    """A cap or quiet-hours setting that cannot be understood."""


def parse_touch_cap(text: str) -> tuple[int, Duration]:
    """ "3 per 7d" -> (3, 7 days). The period must be wall-clock time."""
    match = _CAP.match(text) if isinstance(text, str) else None
    if match is None:
        raise GovernanceError(f'customer-touch cap "{text}" is not a cap; write e.g. "3 per 7d"')
    try:
        period = parse_duration(match.group(2))
    except DurationError as exc:
        raise GovernanceError(f'customer-touch cap "{text}": {exc}') from None
    if period.is_business:
        # "Per 2 business days" would let a weekend burst through; caps protect the customer's week.
        raise GovernanceError(f'customer-touch cap "{text}": use calendar time, e.g. "3 per 7d"')
    return int(match.group(1)), period


def parse_quiet_hours(text: str) -> tuple[time, time]:
    """ "20:00-08:00" -> (20:00, 08:00). The window may wrap midnight."""
    match = _WINDOW.match(text) if isinstance(text, str) else None
    if match is None:
        raise GovernanceError(f'quiet hours "{text}" is not a time range; write e.g. "20:00-08:00"')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise GovernanceError(f'quiet hours "{text}" has an impossible time; write e.g. "20:00-08:00"')
    start, end = time(h1, m1), time(h2, m2)
    if start == end:
        raise GovernanceError(f'quiet hours "{text}" starts and ends at the same time')
    return start, end


