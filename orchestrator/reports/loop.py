"""The Loop: per stage, accounts that entered, moved on and dropped off, stages jumped over, time in stage,
and signal to first human touch (on acquire: speed to lead).

Read from stage changes recorded in the period and journeys whose signal arrived in it; every stage is
a row, an empty one too. Definitions: README, "Reporting".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db import unit_of_work
from orchestrator.models import Journey, JourneyStage, PlaybookVersion, Signal, StageChange, Task
from orchestrator.reports._sql import count_if, first_of, nearest_rank, seconds_between
from orchestrator.reports.scope import EVERYTHING, Scope, journey_conditions, journey_scope

__all__ = ["STAGES", "LoopRow", "changes_scope", "human_touch", "loop_report", "stage_number", "with_next_change"]

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
    signal_journeys: int
    touched: int
    touch_median_min: float | None
    touch_p90_min: float | None

    def figures(self) -> dict[str, Any]:
        return {name: (round(value, 4) if isinstance(value, float) else value)
                for name, value in self.__dict__.items()}


def stage_number(column: Any) -> Any:
    """A stage name's place in loop order (acquire 0 .. renew 4), in SQL; NULL for no stage."""
    return case(*[(column == stage, number) for number, stage in enumerate(STAGES)], else_=None)


def human_touch() -> Any:
    """When a person first touched a task: its acknowledgement or its close, whichever came first; a task
    cancelled unacknowledged was never touched."""
    return case((Task.outcome == "cancelled", Task.acknowledged_at),
                else_=first_of(Task.acknowledged_at, Task.completed_at))


def changes_scope(scope: Scope, change: Any) -> list[Any]:
    """Conditions narrowing stage changes (`change`: the entity or an alias) to `scope`."""
    # A stage change's playbook is the journey that made it; its team, the account owner's.
    journeys = select(Journey.id).where(*journey_scope(Scope(playbook=scope.playbook)))
    conditions = [change.journey_id.in_(journeys)] if scope.playbook else []
    if scope.team:
        conditions += journey_conditions(Scope(team=scope.team), playbook_id=None, playbook_version_id=None,
                                         account_id=change.account_id)
    return conditions


def _touches(*, since: datetime, until: datetime, scope: Scope) -> Any:
    """Per stage: journeys started by a signal that arrived in the period, those touched by a person
    before `until`, and the nearest-rank median and p90 minutes from the signal to that touch."""
    touch = human_touch()
    first = (select(Task.journey_id, func.min(touch).label("at")).where(touch < until)
             .group_by(Task.journey_id).subquery())
    leads = (select(PlaybookVersion.stage.label("stage"),
                    (seconds_between(first.c.at, Signal.occurred_at) / 60.0).label("minutes"))
             .select_from(Journey)
             .join(Signal, Signal.id == Journey.trigger_signal_id)
             .join(PlaybookVersion, PlaybookVersion.id == Journey.playbook_version_id)
             .outerjoin(first, first.c.journey_id == Journey.id)
             .where(Signal.occurred_at >= since, Signal.occurred_at < until, *journey_scope(scope))).subquery()
    counts = (select(leads.c.stage, func.count().label("journeys"), func.count(leads.c.minutes).label("touched"))
              .group_by(leads.c.stage).subquery())
    timed = select(leads.c.stage, leads.c.minutes).where(leads.c.minutes.is_not(None)).subquery()
    ranks = nearest_rank(timed, keys=["stage"], value="minutes", percents={"median": 50, "p90": 90})
    return (select(counts.c.stage, counts.c.journeys, counts.c.touched, ranks.c.median, ranks.c.p90)
            .outerjoin(ranks, ranks.c.stage == counts.c.stage))


def with_next_change(until: datetime) -> Any:
    """Stage changes before `until`, each with the stage its account's next change (before `until`) left:
    `next_from` equal to `to_stage` means the account moved on from the stage it entered. One window
    pass over (account, time) rather than a self-join, whose cost grows with the square of the changes
    per account."""
    return (select(StageChange.id, StageChange.account_id, StageChange.journey_id, StageChange.from_stage,
                   StageChange.to_stage, StageChange.at,
                   func.lead(StageChange.from_stage).over(partition_by=StageChange.account_id,
                                                          order_by=(StageChange.at, StageChange.id))
                   .label("next_from"))
            .where(StageChange.at < until).subquery())


def loop_report(*, sessions: sessionmaker[Session], since: datetime, until: datetime,
                scope: Scope = EVERYTHING) -> list[LoopRow]:
    """One row per stage in loop order (only `scope.stage`'s when given), from [since, until)."""
    period = and_(StageChange.at >= since, StageChange.at < until, *changes_scope(scope, StageChange))
    entered = (select(StageChange.to_stage, func.count(func.distinct(StageChange.account_id)))
               .where(period).group_by(StageChange.to_stage))
    into = with_next_change(until)
    moved = (select(into.c.to_stage, func.count(func.distinct(into.c.account_id)))
             .where(into.c.at >= since, into.c.next_from == into.c.to_stage, *changes_scope(scope, into.c))
             .group_by(into.c.to_stage))
    jumped = select(*[count_if(and_(stage_number(StageChange.from_stage) < number,
                                    stage_number(StageChange.to_stage) > number)).label(stage)
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
        touches = {row.stage: row for row in session.execute(_touches(since=since, until=until, scope=scope))}
    rows = []
    for stage in STAGES:
        if scope.stage and stage != scope.stage:
            continue
        count, onward = entries.get(stage, 0), moves.get(stage, 0)
        found, touched = percentiles.get(stage), touches.get(stage)
        rows.append(LoopRow(stage=stage, entered=count, moved_on=onward,
                            drop_off=1 - onward / count if count else None, skipped=int(skips[stage] or 0),
                            median_days=float(found.median) if found is not None else None,
                            p90_days=float(found.p90) if found is not None else None,
                            signal_journeys=int(touched.journeys) if touched is not None else 0,
                            touched=int(touched.touched) if touched is not None else 0,
                            touch_median_min=_minutes(touched.median if touched is not None else None),
                            touch_p90_min=_minutes(touched.p90 if touched is not None else None)))
    return rows


def _minutes(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
