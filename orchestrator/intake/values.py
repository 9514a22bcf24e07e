"""Value checks for anything stored from outside: what both databases store alike, or a reason why not.

SQLite stores almost anything; PostgreSQL refuses NUL characters, lone surrogates, NaN and
Infinity in JSON, out-of-range integers and timestamps. A value that passes these checks is
stored by both backends (or refused by both, for constraints the schema states), so an intake
outcome never depends on the database. Signals, records and connector pages all use them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MAX_DEPTH", "MAX_ID", "MAX_INT", "MIN_INT", "PARSE_DEPTH", "JSONError", "Problem",
    "datetime_problem", "field_name", "json_problem", "mapping_problem", "parse_json", "text_problem",
]

MAX_DEPTH = 32  # containers inside one field's value, the value itself included
# The parser refuses deeper text before building anything (json's C parser recurses per level).
PARSE_DEPTH = 100
MAX_INT = 2**63 - 1  # a JSON integer must fit 64 bits: what SQL and most JSON readers take
MIN_INT = -(2**63)
MAX_ID = 2**31 - 1  # row ids are INTEGER: 32 bits on PostgreSQL
_MAX_INT_DIGITS = 20  # longer digit strings are refused before int() sees them

_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")
# A JSON string, escapes included; what is left once strings are cut out is structure.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


@dataclass(frozen=True)
class Problem:
    """Why a value cannot be stored: the dotted field it sits at (None: the whole value) and a reason."""

    field: str | None
    reason: str


class JSONError(ValueError):
    """The text is not JSON this service stores; the message reads after "not valid JSON: "."""


class _Refused:
    """Stands in, inside parsed JSON, for a literal that has no safe Python value (NaN, 10**5000)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def field_name(path: Sequence[str | int]) -> str | None:
    """`payload.items[2].note`; odd keys are quoted JSON-style so the name stays on one line."""
    name = ""
    for segment in path:
        if isinstance(segment, int):
            name += f"[{segment}]"
            continue
        if not _PLAIN_KEY.fullmatch(segment):
            shown = segment if len(segment) <= 64 else segment[:64] + "..."
            segment = json.dumps(shown)  # ensure_ascii: NUL, newlines, surrogates become escapes
        name += f".{segment}" if name else segment
    return name or None


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored as text on every backend, or None."""
    if "\x00" in text:
        return "contains a NUL character"
    if not text.isascii():
        found = _SURROGATE.search(text)
        if found:
            return f"contains a lone surrogate (U+{ord(found.group()):04X}); text must be valid Unicode"
    return None


def _number_problem(value: int | float) -> str | None:
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            return f"is an integer beyond the 64-bit range ({MIN_INT} to {MAX_INT})"
        return None
    if not math.isfinite(value):
        return "is not a finite number; NaN and Infinity cannot be stored"
    return None


def json_problem(value: Any, *, path: Sequence[str | int] = (), max_depth: int = MAX_DEPTH) -> Problem | None:
    """The first reason `value` is not storable JSON: types, text, numbers, nesting deeper than `max_depth`."""
    return _Walk(root=tuple(path), max_depth=max_depth).value(value, list(path), 0)


@dataclass(frozen=True)
class _Walk:
    root: tuple[str | int, ...]
    max_depth: int

    def value(self, value: Any, path: list[str | int], depth: int) -> Problem | None:
        if value is None or isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            reason = _number_problem(value)
        elif isinstance(value, str):
            reason = text_problem(value)
        elif isinstance(value, _Refused):
            reason = value.reason
        elif isinstance(value, (Mapping, list, tuple)):
            if depth >= self.max_depth:
                # Named at the field the caller checked: a path 33 levels long helps nobody.
                return Problem(field_name(self.root), f"is nested more than {self.max_depth} levels deep")
            return self.container(value, path, depth + 1)
        else:
            reason = f"is not a JSON value (a {type(value).__name__})"
        return Problem(field_name(path), reason) if reason else None

    def container(self, value: Mapping[Any, Any] | list[Any] | tuple[Any, ...], path: list[str | int],
                  depth: int) -> Problem | None:
        items: Any = value.items() if isinstance(value, Mapping) else enumerate(value)
        for key, item in items:
            if isinstance(value, Mapping):
                if not isinstance(key, str):
                    return Problem(field_name(path), f"has a key that is not a string ({key!r:.40})")
                reason = text_problem(key)
                if reason:
                    return Problem(field_name([*path, key]), f"the name {reason}")
            path.append(key)
            problem = self.value(item, path, depth)
            path.pop()
            if problem:
                return problem
        return None


def mapping_problem(fields: Mapping[Any, Any], *, max_depth: int = MAX_DEPTH) -> Problem | None:
    """`json_problem` for each field of a record or envelope, each value nested at most `max_depth`."""
    if type(fields) is dict and all(type(key) is str and _plain_text(key) and _plain(value, 0, max_depth)
                                    for key, value in fields.items()):
        return None
    return _mapping_walk(fields, max_depth=max_depth)


def _plain(value: Any, depth: int, max_depth: int) -> bool:
    """True when `value` is storable beyond doubt (exact JSON types, every check passed): the walk would find
    nothing. Anything else, every problem included, is left to the walk, which names it."""
    kind = type(value)
    if kind is str:
        return _plain_text(value)
    if kind is int:
        return MIN_INT <= value <= MAX_INT
    if kind is float:
        return math.isfinite(value)
    if value is None or kind is bool:
        return True
    if depth >= max_depth:
        return False
    if kind is dict:
        return all(type(key) is str and _plain_text(key) and _plain(item, depth + 1, max_depth)
                   for key, item in value.items())
    if kind is list:
        return all(_plain(item, depth + 1, max_depth) for item in value)
    return False


def _plain_text(text: str) -> bool:
    return "\x00" not in text and (text.isascii() or _SURROGATE.search(text) is None)


def _mapping_walk(fields: Mapping[Any, Any], *, max_depth: int) -> Problem | None:
    for key, value in fields.items():
        if not isinstance(key, str):
            return Problem(None, f"has a field name that is not a string ({key!r:.40})")
        reason = text_problem(key)
        if reason:
            return Problem(field_name([key]), f"the name {reason}")
        problem = json_problem(value, path=(key,), max_depth=max_depth)
        if problem:
            return problem
    return None


def datetime_problem(value: datetime) -> str | None:
    """Why an aware datetime cannot be stored as UTC on every backend (years 1 to 9999), or None."""
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        return "is out of range once converted to UTC (years 1 to 9999)"
    return None


# -- parsing -----------------------------------------------------------------------------------

def _parse_int(text: str) -> int | _Refused:
    digits = len(text.lstrip("-"))
    if digits > _MAX_INT_DIGITS:
        return _Refused(f"is an integer of {digits} digits, beyond the 64-bit range ({MIN_INT} to {MAX_INT})")
    return int(text)


def _parse_float(text: str) -> float | _Refused:
    value = float(text)
    if not math.isfinite(value):
        return _Refused(f"is a number beyond the floating-point range ({text[:20]}{'...' if len(text) > 20 else ''})")
    return value


def _parse_constant(text: str) -> _Refused:
    return _Refused(f"is {text}; only finite numbers can be stored")


def _depth_problem(text: str) -> str | None:
    structure = _JSON_STRING.sub("", text)
    if structure.count("[") + structure.count("{") <= PARSE_DEPTH:
        return None
    depth = 0
    for bracket in _BRACKET.finditer(structure):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > PARSE_DEPTH:
            return f"nested more than {PARSE_DEPTH} levels deep"
    return None


def parse_json(text: str) -> Any:
    """`json.loads` that never raises anything but JSONError and never recurses without bound.

    NaN, Infinity, 1e400 and integers too long for 64 bits parse to placeholders that
    `json_problem` reports at their field, so the rejection names where they were.
    """
    problem = _depth_problem(text)
    if problem:
        raise JSONError(problem)
    try:
        return json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                          parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise JSONError(f"{exc.msg} (column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # belt and braces: the hooks above should pre-empt these
        raise JSONError(str(exc)[:200]) from None
