"""Exceptions: per category, items raised in the period, the open queue, its age against the response window.

Definitions: README, "Reporting". The open queue is as of `until`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db import UTCDateTime, unit_of_work
from orchestrator.models import ExceptionItem
from orchestrator.reports._sql import count_if, nearest_rank, seconds_between

__all__ = ["exceptions_report"]


def exceptions_report(*, sessions: sessionmaker[Session], since: datetime, until: datetime) -> list[dict[str, Any]]:
    """One row per category with items raised in the period or open at `until`; most raised first."""
    now = literal(until, UTCDateTime())
    raised = and_(ExceptionItem.created_at >= since, ExceptionItem.created_at < until)
    is_open = and_(ExceptionItem.status == "open", ExceptionItem.created_at < until)
    counts = (select(ExceptionItem.category,
                     count_if(raised).label("raised"),
                     func.coalesce(func.sum(case((raised, func.coalesce(ExceptionItem.occurrences, 1)),
                                                 else_=0)), 0).label("occurrences"),
                     count_if(is_open).label("open"),
                     count_if(and_(is_open, ExceptionItem.respond_by < now)).label("overdue"))
              .where(or_(raised, is_open))
              .group_by(ExceptionItem.category).subquery())
    ages = (select(ExceptionItem.category.label("category"),
                   (seconds_between(now, ExceptionItem.created_at) / 3600.0).label("hours"))
            .where(is_open).subquery())
    age = nearest_rank(ages, keys=["category"], value="hours", percents={"median": 50, "oldest": 100})
    query = (select(counts, age.c.median, age.c.oldest).outerjoin(age, age.c.category == counts.c.category)
             .order_by(counts.c.raised.desc(), counts.c.category))
    with unit_of_work(sessions, read_only=True) as session:
        found = session.execute(query).all()
    return [{"category": r.category, "raised": int(r.raised), "occurrences": int(r.occurrences),
             "open": int(r.open), "overdue": int(r.overdue),
             "overdue_share": round(r.overdue / r.open, 4) if r.open else None,
             "open_median_age_h": round(float(r.median), 1) if r.median is not None else None,
             "oldest_open_age_h": round(float(r.oldest), 1) if r.oldest is not None else None} for r in found]
