"""The Loop: per stage, accounts that entered, moved on and dropped off, stages jumped over, time in stage.

Read from stage changes recorded in the period; every stage is a row, an empty one too.
Definitions: README, "Reporting".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from orchestrator.db import unit_of_work
from orchestrator.models import JourneyStage, StageChange
from orchestrator.reports._sql import count_if, nearest_rank

__all__ = ["LoopRow", "loop_report"]

STAGES = [stage.value for stage in JourneyStage]


@dataclass(frozen=True)
class LoopRow:
    stage: str
    entered: int
    moved_on: int
    drop_off: float | None
    skipped: int
    median_days: float | None
    p90_days: float | None

    def figures(self) -> dict[str, Any]:
        return {name: (round(value, 4) if isinstance(value, float) else value)
                for name, value in self.__dict__.items()}


def _index(column: Any) -> Any:
    return case(*[(column == stage, number) for number, stage in enumerate(STAGES)], else_=None)


def loop_report(*, sessions: sessionmaker[Session], since: datetime, until: datetime) -> list[LoopRow]:
    """One row per stage in loop order, from stage changes in [since, until)."""
    period = and_(StageChange.at >= since, StageChange.at < until)
    entered = (select(StageChange.to_stage, func.count(func.distinct(StageChange.account_id)))
               .where(period).group_by(StageChange.to_stage))
    into, out = aliased(StageChange), aliased(StageChange)
    moved = (select(into.to_stage, func.count(func.distinct(into.account_id)))
             .join(out, and_(out.account_id == into.account_id, out.from_stage == into.to_stage, out.at >= into.at,
                             out.id != into.id))
             .where(into.at >= since, into.at < until, out.at < until).group_by(into.to_stage))
    jumped = select(*[count_if(and_(_index(StageChange.from_stage) < number,
                                    _index(StageChange.to_stage) > number)).label(stage)
                      for number, stage in enumerate(STAGES)]).where(period)
    spans = (select(StageChange.from_stage.label("stage"),
                    (StageChange.seconds_in_previous / 86400.0).label("days"))
             .where(period, StageChange.from_stage.is_not(None), StageChange.seconds_in_previous.is_not(None))
             .subquery())
    times = select(nearest_rank(spans, keys=["stage"], value="days", percents={"median": 50, "p90": 90}))
    with unit_of_work(sessions, read_only=True) as session:
        entries = dict(session.execute(entered).tuples().all())
        moves = dict(session.execute(moved).tuples().all())
        skips = session.execute(jumped).one()._mapping
        percentiles = {row.stage: row for row in session.execute(times)}
    rows = []
    for stage in STAGES:
        count, onward = entries.get(stage, 0), moves.get(stage, 0)
        found = percentiles.get(stage)
        rows.append(LoopRow(stage=stage, entered=count, moved_on=onward,
                            drop_off=1 - onward / count if count else None, skipped=int(skips[stage] or 0),
                            median_days=float(found.median) if found is not None else None,
                            p90_days=float(found.p90) if found is not None else None))
    return rows
