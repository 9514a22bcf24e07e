"""Parameter types shared by the operator commands: record ids and the acting person."""

from __future__ import annotations

from typing import Any

import click

# Primary keys are 32-bit integers on PostgreSQL; a larger number names no row, and sending it
# to the database would fail there (and silently differ on SQLite) instead of saying so.
MAX_ID = 2**31 - 1


class RecordId(click.ParamType):
    """A positive whole number that fits a database id."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip()
            if not text.isdecimal() or not text.isascii():
                self.fail(f"{value!r} is not an id (a positive whole number)", param, ctx)
            # Length first: int() of thousands of digits is refused by Python itself.
            number = int(text) if len(text) <= 12 else MAX_ID + 1
        if not 1 <= number <= MAX_ID:
            self.fail(f"{str(value)[:20]!r} is out of range: ids run from 1 to {MAX_ID}", param, ctx)
        return number


class Actor(click.ParamType):
    """Who acts: any non-blank text, stripped (the audit trail names a person, never "")."""

    name = "email"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if not text:
            self.fail("must name who acts (an email), not be empty", param, ctx)
        if not text.isprintable():
            self.fail("must be plain text (no control characters)", param, ctx)
        return text


RECORD_ID = RecordId()
ACTOR = Actor()
