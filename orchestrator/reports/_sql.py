"""SQL pieces every report shares, written once so SQLite and PostgreSQL answer the same.

Percentiles are nearest-rank over window functions (ROW_NUMBER and COUNT per group), with
integer rank arithmetic: no PERCENTILE_CONT (PostgreSQL only) and no loop over rows in Python.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, Integer, String, case, cast, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["count_if", "first_of", "iso_week", "nearest_rank", "parse_grouping", "seconds_between", "share"]


class seconds_between(FunctionElement[float]):  # noqa: N801 - reads as a SQL function
    """Elapsed seconds from `earlier` to `later` (both timestamps), as a float."""

    type = Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return (f"((julianday({compiler.process(later, **kw)}) - julianday({compiler.process(earlier, **kw)}))"
            " * 86400.0)")


@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element: seconds_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(later, **kw)} - {compiler.process(earlier, **kw)}))"


class iso_week(FunctionElement[str]):  # noqa: N801 - reads as a SQL function
    """The ISO 8601 week of a UTC timestamp as text, e.g. '2026-W48' (weeks start on Monday; week 1
    holds the year's first Thursday, so 2027-01-01 is in 2026-W53)."""

    type = String()
    inherit_cache = True
    name = "iso_week"


@compiles(iso_week, "sqlite")
def _iso_week_sqlite(element: iso_week, compiler: Any, **kw: Any) -> str:
    # SQLite before 3.46 has no %G/%V: take the Thursday of the value's Monday-to-Sunday week, whose
    # calendar year is the ISO year and whose day of the year gives the week number. In Julian day
    # numbers (JDN % 7 == 0 on Mondays) that is integer arithmetic, cheap over a million rows.
    at = compiler.process(list(element.clauses)[0], **kw)
    thursday = f"((CAST(julianday({at}) + 0.5 AS INTEGER) / 7) * 7 + 3)"
    return (f"(strftime('%Y', {thursday}) || '-W' || "
            f"printf('%02d', (CAST(strftime('%j', {thursday}) AS INTEGER) - 1) / 7 + 1))")


@compiles(iso_week, "postgresql")
def _iso_week_postgresql(element: iso_week, compiler: Any, **kw: Any) -> str:
    # timestamptz: read the wall time in UTC, whatever the session's TimeZone.
    at = compiler.process(list(element.clauses)[0], **kw)
    return f"to_char(({at}) AT TIME ZONE 'UTC', 'IYYY-\"W\"IW')"


def first_of(*values: Any) -> ColumnElement[Any]:
    """The earliest non-NULL of two timestamps (SQLite's min() and PostgreSQL's LEAST differ on NULL)."""
    earlier, later = values
    return case((earlier.is_(None), later), (later.is_(None), earlier), (earlier <= later, earlier), else_=later)


def share(part: ColumnElement[Any], whole: ColumnElement[Any]) -> ColumnElement[Any]:
    """part / whole as a float; NULL when whole is 0 (an empty group has no rate, not 0%)."""
    return cast(part, Float) / func.nullif(cast(whole, Float), 0.0)


def nearest_rank(values: Any, *, keys: list[str], value: str, percents: dict[str, int]) -> Any:
    """Per group of `keys`, the nearest-rank percentiles of `value` over the subquery `values`.

    The p-th percentile is the smallest value with at least p% of the group's values at or
    below it: rank ceil(p*n/100), computed as (p*n + 99) // 100 in integers. Ties take the
    same value whichever row holds the rank. Returns a subquery with `keys` and one column
    per name in `percents` (e.g. {"median": 50, "p90": 90}).
    """
    group = [values.c[k] for k in keys]
    ranked = select(*group, values.c[value].label("v"),
                    func.row_number().over(partition_by=group, order_by=values.c[value]).label("rn"),
                    func.count().over(partition_by=group).label("n")).subquery()
    columns = []
    for name, percent in percents.items():
        rank = (literal(percent, Integer) * ranked.c.n + 99) // 100
        columns.append(func.max(_when(ranked.c.rn == rank, ranked.c.v)).label(name))
    return select(*[ranked.c[k] for k in keys], *columns).group_by(*[ranked.c[k] for k in keys]).subquery()


def _when(condition: ColumnElement[bool], then: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((condition, then), else_=None)


def count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """How many rows of the group meet `condition` (0 for none)."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def parse_grouping(by: str | None, *, allowed: tuple[str, ...], default: str) -> tuple[str, ...]:
    """`team` or `team,week` as keys; ValueError naming what is allowed."""
    keys = tuple(part.strip() for part in (by or default).split(","))
    if not 1 <= len(keys) <= 2 or len(set(keys)) != len(keys) or not set(keys) <= set(allowed) \
            or (len(keys) == 2 and keys[1] != "week"):
        raise ValueError(f"group by one of {', '.join(allowed)}"
                         + (", or one of them and week (e.g. team,week)" if "week" in allowed else ""))
    return keys
