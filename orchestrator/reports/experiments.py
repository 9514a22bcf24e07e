"""Play experiments: per experiment and variant of a `split` step, the journeys that entered it and what
followed (how they ended, conversion to a later stage and how long it took, the tasks they made and whether
people found them useful).

A journey enters a variant when its split step runs (`journeys/steps.py` records the assignment on the run:
`outcome.variant` with the experiment, the variant and the bucket). Definitions: README, "Reporting".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, and_, case, cast, func, literal, null, select, union_all
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db import unit_of_work
from orchestrator.models import Journey, JourneyStatus, PlaybookVersion, StageChange, StepRun, Task, TaskFeedback
from orchestrator.reports._sql import count_if, nearest_rank, seconds_between, share
from orchestrator.reports.loop import stage_number
from orchestrator.reports.scope import EVERYTHING, Scope, journey_scope

__all__ = ["KEYS", "SPLIT", "assignments", "entered", "experiments_report", "journey_condition"]

SPLIT = "split"  # the step kind a split step's runs record
KEYS = ("playbook", "experiment", "variant")
_OPEN = (JourneyStatus.ACTIVE.value, JourneyStatus.WAITING.value)


def assignments(*, since: datetime, until: datetime, scope: Scope) -> Any:
    """Per journey and variant it entered in [since, until): playbook, experiment, variant and when it entered
    (its first split run of that experiment; a journey that passes the split again is counted once)."""
    experiment = StepRun.outcome[("variant", "experiment")].as_string()
    variant = StepRun.outcome[("variant", "variant")].as_string()
    return (select(StepRun.journey_id, Journey.playbook_id.label("playbook"), experiment.label("experiment"),
                   variant.label("variant"), func.min(StepRun.started_at).label("at"))
            .join(Journey, Journey.id == StepRun.journey_id)
            .where(StepRun.kind == SPLIT, StepRun.started_at >= since, StepRun.started_at < until,
                   *journey_scope(scope))
            .group_by(StepRun.journey_id, Journey.playbook_id, experiment, variant)).cte("assigned")


def entered(*, since: datetime, until: datetime, scope: Scope) -> Any:
    """Per journey that entered a variant in [since, until): its playbook, experiment, variant, account,
    status now, when it entered, when it converted (None: not before `until`) and its task counts."""
    assigned = assignments(since=since, until=until, scope=scope)
    journeys = _with_conversions(assigned, since=since, until=until)
    verdicts = (select(TaskFeedback.task_id, func.max(case((TaskFeedback.useful.is_(False), 1), else_=0))
                       .label("not_useful"))
                .group_by(TaskFeedback.task_id).subquery())
    tasks = (select(Task.journey_id, func.count(Task.id).label("tasks"), func.count(verdicts.c.task_id).label("rated"),
                    count_if(verdicts.c.not_useful == 1).label("not_useful"))
             .outerjoin(verdicts, verdicts.c.task_id == Task.id)
             .where(Task.journey_id.in_(select(assigned.c.journey_id)))
             .group_by(Task.journey_id).subquery())
    rows = (select(journeys.c.journey_id, *[journeys.c[key] for key in KEYS], journeys.c.account_id,
                   journeys.c.status, journeys.c.at, journeys.c.converted_at,
                   func.coalesce(tasks.c.tasks, 0).label("tasks"), func.coalesce(tasks.c.rated, 0).label("rated"),
                   func.coalesce(tasks.c.not_useful, 0).label("not_useful"))
            .outerjoin(tasks, tasks.c.journey_id == journeys.c.journey_id))
    return rows.cte("entered").prefix_with("MATERIALIZED")  # read twice: computed once


def _with_conversions(assigned: Any, *, since: datetime, until: datetime) -> Any:
    """The assignments with their journey's account and status, and when each converted: the account's first
    move out of the playbook's stage to a later stage at or after it entered, before `until` (None: not yet).

    One pass over the period's stage changes and the assignments, as one timeline per account and stage read
    newest first: an assignment's conversion is the earliest change at or after it, a running minimum. (A
    lookup per journey read the account's later changes once for every journey: quadratic in an account's
    history.) The assignments go through the timeline whole, so nothing joins back to it (a join the planner
    could not estimate).
    """
    def nothing(kind: Any) -> Any:
        return cast(null(), kind)

    changes = (select(StageChange.account_id.label("account_id"), StageChange.from_stage.label("stage"),
                      StageChange.at.label("at"), literal(0).label("tie"), nothing(Integer).label("journey_id"),
                      nothing(String).label("playbook"), nothing(String).label("experiment"),
                      nothing(String).label("variant"), nothing(String).label("status"),
                      StageChange.at.label("change_at"))
               .where(StageChange.at >= since, StageChange.at < until,
                      stage_number(StageChange.to_stage) > stage_number(StageChange.from_stage)))
    entries = (select(Journey.account_id, PlaybookVersion.stage, assigned.c.at,
                      literal(1),  # after a change at the same moment, which so counts for it
                      assigned.c.journey_id, assigned.c.playbook, assigned.c.experiment, assigned.c.variant,
                      Journey.status, nothing(StageChange.__table__.c.at.type))
               .join(Journey, Journey.id == assigned.c.journey_id)
               .join(PlaybookVersion, PlaybookVersion.id == Journey.playbook_version_id))
    timeline = union_all(changes, entries).subquery("timeline")
    first_after = func.min(timeline.c.change_at).over(
        partition_by=(timeline.c.account_id, timeline.c.stage), order_by=(timeline.c.at.desc(), timeline.c.tie),
        rows=(None, 0))
    marked = select(*[column for column in timeline.c if column.key not in ("tie", "change_at", "stage")],
                    first_after.label("converted_at")).subquery("marked")
    return select(marked).where(marked.c.journey_id.is_not(None)).subquery("with_conversions")


def journey_condition(found: Any, which: str) -> Any:
    """Which of the `entered` journeys a journey figure counts (None: every one)."""
    return {"journeys": None,
            "completed": found.c.status == JourneyStatus.COMPLETED.value,
            "dropped": found.c.status == JourneyStatus.EXITED.value,
            "stalled": found.c.status == JourneyStatus.STALLED.value,
            "open": found.c.status.in_(_OPEN),
            "converted": found.c.converted_at.is_not(None)}[which]


def experiments_report(*, sessions: sessionmaker[Session], since: datetime, until: datetime,
                       scope: Scope = EVERYTHING) -> list[dict[str, Any]]:
    """One row per playbook, experiment and variant entered in [since, until), in that order."""
    found = entered(since=since, until=until, scope=scope)
    group = [found.c[key] for key in KEYS]
    converted = journey_condition(found, "converted")
    waits = (select(*group, (seconds_between(found.c.converted_at, found.c.at) / 86400.0).label("days"))
             .where(converted).subquery())
    median = nearest_rank(waits, keys=list(KEYS), value="days", percents={"median": 50})
    counts = (select(*group, func.count().label("journeys"),
                     *[count_if(journey_condition(found, which)).label(which)
                       for which in ("completed", "dropped", "stalled", "open", "converted")],
                     share(count_if(converted), func.count()).label("conversion"),
                     func.sum(found.c.tasks).label("tasks"), func.sum(found.c.rated).label("rated"),
                     func.sum(found.c.not_useful).label("not_useful"))
              .group_by(*group).subquery())
    query = (select(counts, median.c.median)
             .outerjoin(median, and_(*[median.c[key] == counts.c[key] for key in KEYS]))
             .order_by(*[counts.c[key] for key in KEYS]))
    with unit_of_work(sessions, read_only=True) as session:
        rows = session.execute(query).all()
    return [{**{key: r._mapping[key] for key in KEYS}, "journeys": r.journeys, "completed": r.completed,
             "dropped": r.dropped, "stalled": r.stalled, "open": r.open, "converted": r.converted,
             "conversion_rate": _round(r.conversion),
             "convert_median_days": _round(r.median),
             "tasks": int(r.tasks), "rated": int(r.rated), "useful": int(r.rated) - int(r.not_useful),
             "not_useful": int(r.not_useful)} for r in rows]


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)
