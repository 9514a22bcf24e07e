"""Oversight calibration: is each human checkpoint adding judgment, or only latency?

Per in-the-loop and on-the-loop step (playbook, step) over the step runs started in the
period: approval, rejection and override rates, median time to decide and the share of
decisions made in under `quick_seconds`. Every figure is a SQL aggregate; the flags are read
off the aggregated row. Definitions: README, "Reporting".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db import unit_of_work
from orchestrator.models import Journey, StepRun, StepStatus, Task, TaskKind
from orchestrator.reports._sql import count_if, nearest_rank, parse_grouping, seconds_between
from orchestrator.reports.scope import EVERYTHING, Scope, journey_scope, run_dimension, with_run_joins

__all__ = ["CONSIDER_IN_THE_LOOP", "GROUPINGS", "QUICK_SECONDS", "RUBBER_STAMP", "decide_seconds", "oversight_report",
           "oversight_rows"]

# step (per playbook step, with the flags) is the default; the others as in the noise report.
GROUPINGS: tuple[str, ...] = ("step", "playbook", "team", "owner", "stage", "segment")

QUICK_SECONDS = 30          # a decision faster than this had no time to read the brief
MIN_DECISIONS = 5           # below this many, no flag: too few to judge
RUBBER_STAMP_APPROVAL = 0.95
RUBBER_STAMP_QUICK = 0.8
OVERRIDE_FLAG = 0.2
RUBBER_STAMP = "rubber stamp: consider on the loop"
CONSIDER_IN_THE_LOOP = "consider in the loop"

_APPROVED = ("approved", "published")
_DECIDED = ("approved", "published", "rejected")


@dataclass(frozen=True)
class OversightRow:
    playbook: str
    step: str
    oversight: str
    runs: int
    decisions: int
    approval_rate: float | None
    rejection_rate: float | None
    override_rate: float | None
    decide_median_s: float | None
    quick_share: float | None
    flag: str

    def figures(self) -> dict[str, Any]:
        return {name: (round(value, 4) if isinstance(value, float) else value)
                for name, value in self.__dict__.items()}


def decide_seconds() -> Any:
    """Seconds a decision took: the task's creation to its close, less any time it waited paused."""
    return seconds_between(Task.completed_at, Task.created_at) - func.coalesce(Task.paused_seconds, 0)


def oversight_report(*, sessions: sessionmaker[Session], since: datetime, until: datetime,
                     quick_seconds: int = QUICK_SECONDS, scope: Scope = EVERYTHING) -> list[OversightRow]:
    """One row per in/on-the-loop step with runs in [since, until), by playbook then step."""
    return [_row(r) for r in _aggregate(sessions=sessions, since=since, until=until, quick_seconds=quick_seconds,
                                        scope=scope, keys=("playbook", "step", "oversight"))]


def oversight_rows(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None,
                   quick_seconds: int = QUICK_SECONDS, scope: Scope = EVERYTHING) -> list[dict[str, Any]]:
    """The figures per step (`by` None or `step`, with flags) or per GROUPINGS group (no flags).

    A group mixes steps of both levels: approval, rejection, time to decide and the quick share
    are over its in-the-loop decisions, the override rate over its on-the-loop runs that ran.
    """
    if by in (None, "step"):
        return [row.figures() for row in oversight_report(sessions=sessions, since=since, until=until,
                                                          quick_seconds=quick_seconds, scope=scope)]
    keys = parse_grouping(by, allowed=GROUPINGS, default="playbook")
    rows = []
    for r in _aggregate(sessions=sessions, since=since, until=until, quick_seconds=quick_seconds, scope=scope,
                        keys=keys):
        rows.append({**{key: r._mapping[key] for key in keys}, "runs": r.runs, "decisions": r.decisions,
                     "approval_rate": _round(_rate(r.approved, r.decisions)),
                     "rejection_rate": _round(_rate(r.rejected, r.decisions)),
                     "override_rate": _round(_rate(r.overridden, r.ran)),
                     "decide_median_s": float(r.median) if r.median is not None else None,
                     "quick_share": _round(_rate(r.quick, r.decisions))})
    return rows


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def _aggregate(*, sessions: sessionmaker[Session], since: datetime, until: datetime, quick_seconds: int,
               scope: Scope, keys: tuple[str, ...]) -> list[Any]:
    per_step = "step" in keys
    decide = decide_seconds()
    groups: list[Any] = ([Journey.playbook_id.label("playbook"), StepRun.step_id.label("step"),
               StepRun.oversight.label("oversight")] if per_step
              else [run_dimension(key).label(key) for key in keys])
    runs = (select(*groups, StepRun.oversight.label("level"), StepRun.id.label("run_id"),
                   StepRun.status.label("status"), Task.outcome.label("outcome"),
                   Task.completed_at.label("completed_at"), decide.label("decide_s"), Task.id.label("task_id"))
            .join(Journey, Journey.id == StepRun.journey_id)
            .outerjoin(Task, and_(Task.step_run_id == StepRun.id,
                                  Task.kind.in_([TaskKind.APPROVAL.value, TaskKind.REVIEW.value])))
            .where(StepRun.oversight.in_(["in_the_loop", "on_the_loop"]),
                   StepRun.started_at >= since, StepRun.started_at < until, *journey_scope(scope)))
    if not per_step:
        runs = with_run_joins(runs)
    base = runs.cte("oversight_runs").prefix_with("MATERIALIZED")  # read twice: joined once
    decided: Any = and_(base.c.outcome.in_(_DECIDED), base.c.completed_at.is_not(None))
    ran: Any = base.c.status.in_([StepStatus.DONE.value, StepStatus.OVERRIDDEN.value])
    overridden: Any = base.c.status == StepStatus.OVERRIDDEN.value
    if not per_step:  # a group mixes levels: decisions are in-the-loop ones, overrides on-the-loop ones
        decided = and_(decided, base.c.level == "in_the_loop")
        ran = and_(ran, base.c.level == "on_the_loop")
        overridden = and_(overridden, base.c.level == "on_the_loop")
    columns = [base.c[key] for key in keys]
    times = select(*columns, base.c.decide_s).where(decided).subquery()
    median = nearest_rank(times, keys=list(keys), value="decide_s", percents={"median": 50})
    counts = (select(*columns,
                     func.count(func.distinct(base.c.run_id)).label("runs"),
                     count_if(decided).label("decisions"),
                     count_if(and_(decided, base.c.outcome.in_(_APPROVED))).label("approved"),
                     count_if(and_(decided, base.c.outcome == "rejected")).label("rejected"),
                     count_if(ran).label("ran"),
                     count_if(overridden).label("overridden"),
                     count_if(and_(decided, base.c.decide_s < quick_seconds)).label("quick"))
              .group_by(*columns).subquery())
    query = (select(counts, median.c.median)
             .outerjoin(median, and_(*[median.c[k] == counts.c[k] for k in keys]))
             .order_by(*[counts.c[k] for k in keys if k != "oversight"]))
    with unit_of_work(sessions, read_only=True) as session:
        return list(session.execute(query).all())


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _row(r: Any) -> OversightRow:
    in_loop = r.oversight == "in_the_loop"
    approval = _rate(r.approved, r.decisions) if in_loop else None
    quick = _rate(r.quick, r.decisions) if in_loop else None
    override = None if in_loop else _rate(r.overridden, r.ran)
    flag = ""
    if in_loop and r.decisions >= MIN_DECISIONS and approval is not None and quick is not None \
            and approval >= RUBBER_STAMP_APPROVAL and quick >= RUBBER_STAMP_QUICK:
        flag = RUBBER_STAMP
    if not in_loop and r.ran >= MIN_DECISIONS and override is not None and override >= OVERRIDE_FLAG:
        flag = CONSIDER_IN_THE_LOOP
    return OversightRow(
        playbook=r.playbook, step=r.step, oversight=r.oversight, runs=r.runs, decisions=r.decisions,
        approval_rate=approval, rejection_rate=_rate(r.rejected, r.decisions) if in_loop else None,
        override_rate=override, decide_median_s=float(r.median) if r.median is not None else None,
        quick_share=quick, flag=flag)
