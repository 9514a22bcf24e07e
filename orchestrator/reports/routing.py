"""Confidence routing: per `route` step, decisions taken automatically against those sent to a person, and
how often the person overturned the proposed automated path.

Read from what the engine records (`journeys/steps.py`, `journeys/decisions.py`): each route step run
carries its routing (`outcome.routing`: path, reason, score, threshold); a human-routed one made one task,
an approval when the category has an automated path to propose (confirmed: approved; overturned:
rejected), an action for a novel or unscorable input with nothing to propose. Definitions: README,
"Reporting".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from orchestrator.db import unit_of_work
from orchestrator.models import Journey, StepRun, Task, TaskKind
from orchestrator.reports._sql import count_if, parse_grouping, share
from orchestrator.reports.scope import EVERYTHING, RUN_GROUPINGS, Scope, journey_scope, run_dimension, with_run_joins

__all__ = ["FIGURES", "GROUPINGS", "ROUTE", "routing_report", "run_condition", "task_condition"]

ROUTE = "route"  # the step kind a route step's runs record
# step (per playbook step) is the default; the others as in the noise report.
GROUPINGS: tuple[str, ...] = ("step",) + RUN_GROUPINGS
REASONS = ("below_threshold", "novel_category", "unscored")
# The figures that count step runs, and those that count the tasks of human-routed runs.
RUN_FIGURES = ("decisions", "automated", "human") + REASONS
TASK_FIGURES = ("proposed", "confirmed", "overturned", "undecided", "no_proposal")
FIGURES = RUN_FIGURES + TASK_FIGURES


def _routing(key: str) -> Any:
    return StepRun.outcome[("routing", key)].as_string()


def run_condition(which: str) -> ColumnElement[bool]:
    """Which route step runs a run figure counts (every one is a route step run with a recorded path)."""
    path = _routing("path")
    routed = and_(StepRun.kind == ROUTE, path.in_(["automated", "human"]))
    if which == "decisions":
        return routed
    if which in ("automated", "human"):
        return and_(routed, path == which)
    return and_(routed, path == "human", _routing("reason") == which)


def task_condition(which: str) -> ColumnElement[bool]:
    """Which tasks of human-routed runs a task figure counts (joined to their step run)."""
    proposed = and_(StepRun.kind == ROUTE, Task.kind == TaskKind.APPROVAL.value)
    decided = Task.completed_at.is_not(None)
    return {
        "proposed": proposed,
        "confirmed": and_(proposed, decided, Task.outcome == "approved"),
        "overturned": and_(proposed, decided, Task.outcome == "rejected"),
        "undecided": and_(proposed, Task.outcome.not_in(["approved", "rejected"]) | Task.outcome.is_(None)),
        "no_proposal": and_(StepRun.kind == ROUTE, Task.kind == TaskKind.ACTION.value),
    }[which]


def routing_report(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None = None,
                   scope: Scope = EVERYTHING) -> list[dict[str, Any]]:
    """One row per route step (or `by` group) with runs started in [since, until), by playbook then step."""
    keys = ("playbook", "step") if by in (None, "step") else parse_grouping(by, allowed=GROUPINGS[1:],
                                                                           default="playbook")
    groups = ([Journey.playbook_id.label("playbook"), StepRun.step_id.label("step")] if by in (None, "step")
              else [run_dimension(key).label(key) for key in keys])
    counted = [count_if(run_condition(which)).label(which) for which in RUN_FIGURES]
    counted += [count_if(task_condition(which)).label(which) for which in TASK_FIGURES]
    decided = count_if(task_condition("confirmed")) + count_if(task_condition("overturned"))
    # A route step run made at most one task, so the outer join counts each run once.
    query = (select(*groups, *counted,
                    share(count_if(run_condition("human")), count_if(run_condition("decisions"))).label("hs"),
                    share(count_if(task_condition("overturned")), decided).label("orate"))
             .join(Journey, Journey.id == StepRun.journey_id)
             .outerjoin(Task, Task.step_run_id == StepRun.id)
             .where(StepRun.kind == ROUTE, StepRun.started_at >= since, StepRun.started_at < until,
                    *journey_scope(scope))
             .group_by(*[group.element for group in groups])
             .order_by(*[group.element for group in groups]))
    if by not in (None, "step"):
        query = with_run_joins(query)
    with unit_of_work(sessions, read_only=True) as session:
        found = session.execute(query).all()
    rows = []
    for r in found:
        counts = {which: int(r._mapping[which]) for which in FIGURES}
        rows.append({**{key: r._mapping[key] for key in keys}, **{w: counts[w] for w in RUN_FIGURES[:3]},
                     "human_share": _round(r.hs), **{w: counts[w] for w in REASONS + TASK_FIGURES},
                     "overturn_rate": _round(r.orate)})
    return rows


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)
