"""Exceptions: per category, items raised in the period, the open queue, its age against the response window.

Definitions: README, "Reporting". The open queue is as of `until`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, case, func, literal, literal_column, or_, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from orchestrator.db import UTCDateTime, unit_of_work
from orchestrator.models import ExceptionItem, Journey, Owner
from orchestrator.reports._sql import count_if, nearest_rank, parse_grouping, seconds_between
from orchestrator.reports.scope import EVERYTHING, Scope, journey_scope

__all__ = ["GROUPINGS", "exceptions_report", "item_group", "open_condition", "raised_condition", "with_item_owner"]

GROUPINGS: tuple[str, ...] = ("category", "owner", "team")  # category is the default


def _scoped(scope: Scope) -> list[Any]:
    # An item's team is its owner's; its playbook and stage are its journey's (none: outside).
    conditions: list[Any] = []
    if scope.playbook or scope.stage:
        journeys = select(Journey.id).where(*journey_scope(Scope(stage=scope.stage, playbook=scope.playbook)))
        conditions.append(ExceptionItem.journey_id.in_(journeys))
    if scope.team:
        conditions.append(ExceptionItem.owner.in_(select(Owner.email).where(Owner.team == scope.team)))
    return conditions


def raised_condition(*, since: datetime, until: datetime, scope: Scope = EVERYTHING) -> Any:
    """Items raised in [since, until) within `scope` (the `raised` figure; also its drill-down)."""
    return and_(ExceptionItem.created_at >= since, ExceptionItem.created_at < until, *_scoped(scope))


def open_condition(*, until: datetime, scope: Scope = EVERYTHING) -> Any:
    """Items open at `until` within `scope` (the `open` figure; also its drill-down)."""
    return and_(ExceptionItem.status == "open", ExceptionItem.created_at < until, *_scoped(scope))


def item_group(key: str) -> Any:
    # The item's owner is an email (its team: that owner's, over the outer join `_with_owner` adds).
    return {"category": ExceptionItem.category,
            "owner": func.coalesce(ExceptionItem.owner, _text("(no owner)")),
            "team": func.coalesce(_ITEM_OWNER.team, _text("(no team)"))}[key]


def _text(value: str) -> Any:
    return literal_column(f"'{value}'", String())  # inline: PostgreSQL matches GROUP BY by its text


def with_item_owner(query: Any, key: str) -> Any:
    return query.outerjoin(_ITEM_OWNER, _ITEM_OWNER.email == ExceptionItem.owner) if key == "team" else query


_ITEM_OWNER = aliased(Owner, name="item_owner")


def exceptions_report(*, sessions: sessionmaker[Session], since: datetime, until: datetime,
                      scope: Scope = EVERYTHING, by: str | None = None) -> list[dict[str, Any]]:
    """One row per category (or `by` group) with items raised in the period or open at `until`; most raised first."""
    (key,) = parse_grouping(by, allowed=GROUPINGS, default="category")
    group = item_group(key)
    now = literal(until, UTCDateTime())
    raised = raised_condition(since=since, until=until, scope=scope)
    is_open = open_condition(until=until, scope=scope)
    counts = with_item_owner(
        select(group.label("grp"),
               count_if(raised).label("raised"),
               func.coalesce(func.sum(case((raised, func.coalesce(ExceptionItem.occurrences, 1)),
                                           else_=0)), 0).label("occurrences"),
               count_if(is_open).label("open"),
               count_if(and_(is_open, ExceptionItem.respond_by < now)).label("overdue"))
        .where(or_(raised, is_open)), key).group_by(group).subquery()
    ages = with_item_owner(select(group.label("grp"), (seconds_between(now, ExceptionItem.created_at) / 3600.0)
                              .label("hours")).where(is_open), key).subquery()
    age = nearest_rank(ages, keys=["grp"], value="hours", percents={"median": 50, "oldest": 100})
    query = (select(counts, age.c.median, age.c.oldest).outerjoin(age, age.c.grp == counts.c.grp)
             .order_by(counts.c.raised.desc(), counts.c.grp))
    with unit_of_work(sessions, read_only=True) as session:
        found = session.execute(query).all()
    return [{key: r.grp, "raised": int(r.raised), "occurrences": int(r.occurrences),
             "open": int(r.open), "overdue": int(r.overdue),
             "overdue_share": round(r.overdue / r.open, 4) if r.open else None,
             "open_median_age_h": round(float(r.median), 1) if r.median is not None else None,
             "oldest_open_age_h": round(float(r.oldest), 1) if r.oldest is not None else None} for r in found]
