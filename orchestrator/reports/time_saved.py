"""The time-saved ledger: minutes of routine work automated against human minutes, per playbook and week.

Automated minutes are the `[estimates]` minutes of each action an automated step ran (the run's
reason names it: "ACTION ran"); human minutes are the playbook's `estimate_minutes` of each human
or hybrid step run that made a task, and the elapsed minutes to done of those tasks closed.
Grouped by playbook (default), team, owner, stage or segment, by ISO week of the run's start, or one
of them and the week (`playbook,week`). Definitions:
README, "Reporting".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, case, func, literal, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db import unit_of_work
from orchestrator.models import Journey, StepRun, StepStatus, Task
from orchestrator.reports._sql import count_if, parse_grouping, seconds_between
from orchestrator.reports.scope import EVERYTHING, RUN_GROUPINGS, Scope, journey_scope, run_dimension, with_run_joins

__all__ = ["GROUPINGS", "automated_ran", "time_saved_report"]

GROUPINGS: tuple[str, ...] = RUN_GROUPINGS

_RAN = " ran"


def automated_ran() -> Any:
    """An automated step run that ran its action (done or overridden; its reason names the action)."""
    return and_(StepRun.kind == "automated", StepRun.status.in_([StepStatus.DONE.value, StepStatus.OVERRIDDEN.value]),
                StepRun.reason.like(f"%{_RAN}"))


def time_saved_report(*, sessions: sessionmaker[Session], since: datetime, until: datetime,
                      estimates: Mapping[str, int], by: str | None = None,
                      scope: Scope = EVERYTHING) -> list[dict[str, Any]]:
    """One row per group with step runs started in [since, until): per playbook most minutes saved
    first; with a week, in week order."""
    keys = parse_grouping(by, allowed=GROUPINGS, default="playbook")
    groups = [run_dimension(key).label(key) for key in keys]
    action = func.substr(StepRun.reason, 1, func.length(StepRun.reason) - len(_RAN))
    ran = automated_ran()
    minutes = case(*[(action == name, literal(value, Integer)) for name, value in sorted(estimates.items())],
                   else_=literal(0, Integer)) if estimates else literal(0, Integer)
    human = StepRun.kind.in_(["human", "hybrid"])
    done = and_(Task.completed_at.is_not(None), Task.outcome.in_(["done", "approved", "published", "rejected"]))
    query = (select(*groups,
                    count_if(ran).label("automated_actions"),
                    func.coalesce(func.sum(case((ran, minutes), else_=0)), 0).label("automated_minutes"),
                    count_if(and_(ran, minutes == 0)).label("unestimated_actions"),
                    func.coalesce(func.sum(case((human, StepRun.outcome["estimate_minutes"].as_integer()),
                                                else_=None)), 0).label("human_estimate_minutes"),
                    func.coalesce(func.sum(case((and_(human, done), seconds_between(Task.completed_at,
                                                                                    Task.created_at) / 60.0),
                                                else_=None)), 0).label("human_elapsed_minutes"))
             .join(Journey, Journey.id == StepRun.journey_id)
             .outerjoin(Task, Task.step_run_id == StepRun.id)
             .where(StepRun.started_at >= since, StepRun.started_at < until, *journey_scope(scope))
             .group_by(*[run_dimension(key) for key in keys]))
    if set(keys) - {"playbook", "week"}:
        query = with_run_joins(query)
    with unit_of_work(sessions, read_only=True) as session:
        found = session.execute(query).all()
    rows = [{**{key: r._mapping[key] for key in keys}, "automated_actions": int(r.automated_actions),
             "unestimated_actions": int(r.unestimated_actions), "automated_minutes": int(r.automated_minutes),
             "human_estimate_minutes": int(r.human_estimate_minutes),
             "human_elapsed_minutes": round(float(r.human_elapsed_minutes), 1),
             "net_minutes_saved": int(r.automated_minutes) - int(r.human_estimate_minutes)} for r in found]
    if "week" in keys:
        return sorted(rows, key=lambda row: tuple(row[key] for key in keys))
    return sorted(rows, key=lambda row: (-row["net_minutes_saved"], *[row[key] for key in keys]))
