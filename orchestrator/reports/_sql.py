"""SQL pieces every report shares, written once so SQLite and PostgreSQL answer the same.

Percentiles are nearest-rank over window functions (ROW_NUMBER and COUNT per group), with
integer rank arithmetic: no PERCENTILE_CONT (PostgreSQL only) and no loop over rows in Python.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, Integer, case, cast, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["count_if", "nearest_rank", "seconds_between", "share"]


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
