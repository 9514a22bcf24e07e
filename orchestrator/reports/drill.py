"""What lies behind a report's number: the tasks, step runs, exception items or stage changes it counts.

Each `which` names a figure of a report and selects with the same conditions that figure is
counted by (README, "Reporting"), within the same period and scope, so a drill-down lists exactly
the rows its number counted. At most LIMIT rows, oldest id first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db import unit_of_work
from orchestrator.models import (
    ExceptionItem,
    Journey,
    Owner,
    PlaybookVersion,
    Signal,
    StageChange,
    StepRun,
    StepStatus,
    Task,
    TaskFeedback,
    TaskKind,
    TaskStatus,
)
from orchestrator.reports import experiments, routing
from orchestrator.reports.automation import KINDS
from orchestrator.reports.exceptions import GROUPINGS as ITEM_GROUPINGS
from orchestrator.reports.exceptions import item_group, open_condition, raised_condition, with_item_owner
from orchestrator.reports.loop import STAGES, changes_scope, human_touch, with_next_change
from orchestrator.reports.oversight import QUICK_SECONDS, decide_seconds
from orchestrator.reports.scope import RUN_GROUPINGS, Scope, journey_scope, run_dimension, with_run_joins
from orchestrator.reports.sla import GROUPINGS, sla_tasks
from orchestrator.reports.time_saved import automated_ran

__all__ = ["EXPERIMENT_FIGURES", "LEVELS", "LIMIT", "RUN_FIGURES", "SLA_FIGURES", "TASK_FIGURES", "changes",
           "items", "journeys", "runs", "tasks"]

LIMIT = 500
# Figures of the step-run reports (oversight, noise) that count tasks.
TASK_FIGURES = ("tasks", "decisions", "approved", "rejected", "quick", "closed_without_action", "rated",
                "not_useful", "human_tasks") + tuple(f"route_{which}" for which in routing.TASK_FIGURES)
# Figures of the SLA report (tasks created in the period, in one group).
SLA_FIGURES = ("tasks", "ack_breached", "due_breached", "breaches", "paused", "escalated")
# Figures that count step runs (oversight, noise, automation, time saved).
RUN_FIGURES = ("runs", "skipped", "overridden", "automated", "human", "hybrid", "automated_actions",
               "automation_runs") + tuple(f"routed_{which}" for which in routing.RUN_FIGURES)
# The oversight levels a run drill-down may keep: one, or both (the grouped oversight report's runs).
LEVELS = {"in_the_loop": ("in_the_loop",), "on_the_loop": ("on_the_loop",), "loop": ("in_the_loop", "on_the_loop")}
# Figures of the experiments report: journeys (by how they stand) and their tasks.
EXPERIMENT_FIGURES = ("journeys", "completed", "dropped", "stalled", "open", "converted")
EXPERIMENT_TASK_FIGURES = ("tasks", "rated", "useful", "not_useful")
CHANGE_FIGURES = ("entered", "moved_on", "skipped", "signal_journeys", "touched")
ITEM_FIGURES = ("raised", "open", "overdue")

Rows = list[dict[str, Any]]


def _run_tasks_query(*, since: datetime, until: datetime, scope: Scope, step: str) -> Any:
    query = (select(Task.id).join(StepRun, StepRun.id == Task.step_run_id)
             .join(Journey, Journey.id == StepRun.journey_id)
             .where(StepRun.started_at >= since, StepRun.started_at < until, *journey_scope(scope)))
    return query.where(StepRun.step_id == step) if step else query


def _in_group(query: Any, *, group_by: str, group: str, level: str) -> Any:
    """`query` (over StepRun joined to Journey) narrowed to one group of a step-run report grouped by
    `group_by` (as `run_dimension` and the automation report's `kind` compute it) and to the oversight
    `level` ("" any)."""
    if level:
        if level not in LEVELS:
            raise ValueError(f"level: one of {', '.join(LEVELS)}")
        query = query.where(StepRun.oversight.in_(LEVELS[level]))
    if not group_by:
        return query
    if group_by == "kind":
        return query.where(StepRun.kind == group)
    if group_by not in RUN_GROUPINGS:
        raise ValueError(f"group_by: one of {', '.join(RUN_GROUPINGS + ('kind',))}")
    return with_run_joins(query).where(run_dimension(group_by) == group)


def _task_condition(which: str) -> Any:
    decided = and_(Task.outcome.in_(("approved", "published", "rejected")), Task.completed_at.is_not(None),
                   Task.kind.in_([TaskKind.APPROVAL.value, TaskKind.REVIEW.value]))
    verdicts = select(TaskFeedback.id).where(TaskFeedback.task_id == Task.id)
    return {
        "tasks": None,
        "decisions": decided,
        "approved": and_(decided, Task.outcome.in_(("approved", "published"))),
        "rejected": and_(decided, Task.outcome == "rejected"),
        "quick": and_(decided, decide_seconds() < QUICK_SECONDS),
        "closed_without_action": Task.status == TaskStatus.CANCELLED.value,
        "rated": exists(verdicts),
        "not_useful": exists(verdicts.where(TaskFeedback.useful.is_(False))),
        "human_tasks": StepRun.kind.in_(["human", "hybrid"]),  # time saved's human minutes
        **{f"route_{name}": routing.task_condition(name) for name in routing.TASK_FIGURES},
    }[which]


def tasks(*, sessions: sessionmaker[Session], since: datetime, until: datetime, scope: Scope, which: str,
          step: str = "", by: str = "", group: str = "", rung: int | None = None, group_by: str = "",
          level: str = "", experiment: str = "", variant: str = "") -> Rows:
    """The tasks behind a number: of the SLA report when `by` is given (its group `group`); of the journeys
    that entered an experiment's variant when `experiment` is; else of the step runs of `step` (every step
    when "") started in the period, within the group `group` of `group_by` when given."""
    if by:
        if by not in GROUPINGS or which not in SLA_FIGURES:
            raise ValueError(f"which: one of {', '.join(SLA_FIGURES)}; by: one of {', '.join(GROUPINGS)}")
        ids = sla_tasks(since=since, until=until, scope=scope, by=by, group=group, which=which, rung=rung)
    elif experiment:
        ids = _experiment_tasks(since=since, until=until, scope=scope, which=which, experiment=experiment,
                                variant=variant)
    else:
        if which not in TASK_FIGURES:
            raise ValueError(f"which: one of {', '.join(TASK_FIGURES)}")
        ids = _in_group(_run_tasks_query(since=since, until=until, scope=scope, step=step),
                        group_by=group_by, group=group, level=level)
        condition = _task_condition(which)
        if condition is not None:
            ids = ids.where(condition)
    query = (select(Task.id, Task.title, Task.kind, Task.status, Task.outcome, Task.created_at, Task.completed_at,
                    Owner.email, Journey.playbook_id, StepRun.step_id)
             .join(Owner, Owner.id == Task.owner_id)
             .outerjoin(Journey, Journey.id == Task.journey_id).outerjoin(StepRun, StepRun.id == Task.step_run_id)
             .where(Task.id.in_(ids)).order_by(Task.id).limit(LIMIT))
    with unit_of_work(sessions, read_only=True) as session:
        return [dict(row._mapping) for row in session.execute(query)]


def runs(*, sessions: sessionmaker[Session], since: datetime, until: datetime, scope: Scope, which: str,
         step: str = "", stage: str = "", group_by: str = "", group: str = "", level: str = "") -> Rows:
    """The step runs behind a number of the oversight, noise, automation, time-saved or routing report (within
    the group `group` of `group_by` when given)."""
    if which not in RUN_FIGURES:
        raise ValueError(f"which: one of {', '.join(RUN_FIGURES)}")
    condition = {
        "runs": None,
        "skipped": StepRun.status == StepStatus.SKIPPED.value,
        "overridden": StepRun.status == StepStatus.OVERRIDDEN.value,
        "automated": StepRun.kind == "automated",
        "human": StepRun.kind == "human",
        "hybrid": StepRun.kind == "hybrid",
        "automated_actions": automated_ran(),
        "automation_runs": StepRun.kind.in_(KINDS),  # the automation mix counts these kinds only
        **{f"routed_{name}": routing.run_condition(name) for name in routing.RUN_FIGURES},
    }[which]
    narrowed = Scope(team=scope.team, stage=stage or scope.stage, playbook=scope.playbook)
    query = (select(StepRun.id, Journey.playbook_id, StepRun.step_id, StepRun.kind, StepRun.oversight,
                    StepRun.status, StepRun.reason, StepRun.started_at, Journey.account_id)
             .join(Journey, Journey.id == StepRun.journey_id)
             .where(StepRun.started_at >= since, StepRun.started_at < until, *journey_scope(narrowed)))
    if step:
        query = query.where(StepRun.step_id == step)
    if condition is not None:
        query = query.where(condition)
    query = _in_group(query, group_by=group_by, group=group, level=level)
    with unit_of_work(sessions, read_only=True) as session:
        return [dict(row._mapping) for row in session.execute(query.order_by(StepRun.id).limit(LIMIT))]


def items(*, sessions: sessionmaker[Session], since: datetime, until: datetime, scope: Scope, which: str,
          category: str = "", group_by: str = "", group: str = "") -> Rows:
    """The exception items behind a number of the exceptions report (of its group `group` under `group_by`,
    owner or team, when given)."""
    if which not in ITEM_FIGURES:
        raise ValueError(f"which: one of {', '.join(ITEM_FIGURES)}")
    condition = {"raised": raised_condition(since=since, until=until, scope=scope),
                 "open": open_condition(until=until, scope=scope),
                 "overdue": and_(open_condition(until=until, scope=scope), ExceptionItem.respond_by < until)}[which]
    query = (select(ExceptionItem.id, ExceptionItem.category, ExceptionItem.owner, ExceptionItem.status,
                    ExceptionItem.occurrences, ExceptionItem.created_at, ExceptionItem.respond_by,
                    ExceptionItem.account_id)
             .where(condition))
    if category:
        query = query.where(ExceptionItem.category == category)
    if group_by:
        if group_by not in ITEM_GROUPINGS:
            raise ValueError(f"group_by: one of {', '.join(ITEM_GROUPINGS)}")
        query = with_item_owner(query, group_by).where(item_group(group_by) == group)
    with unit_of_work(sessions, read_only=True) as session:
        return [dict(row._mapping) for row in session.execute(query.order_by(ExceptionItem.id).limit(LIMIT))]


def changes(*, sessions: sessionmaker[Session], since: datetime, until: datetime, scope: Scope, which: str,
            stage: str) -> Rows:
    """The stage changes (or, for signal_journeys and touched, the journeys) behind a number of the Loop."""
    if which not in CHANGE_FIGURES or stage not in STAGES:
        raise ValueError(f"which: one of {', '.join(CHANGE_FIGURES)}; stage: one of {', '.join(STAGES)}")
    if which in ("signal_journeys", "touched"):
        return _signal_journeys(sessions=sessions, since=since, until=until, scope=scope, stage=stage,
                                touched=which == "touched")
    period = and_(StageChange.at >= since, StageChange.at < until, *changes_scope(scope, StageChange))
    number = STAGES.index(stage)
    if which == "entered":
        condition = StageChange.to_stage == stage
    elif which == "moved_on":
        onward = with_next_change(until)
        condition = and_(StageChange.to_stage == stage, StageChange.id.in_(
            select(onward.c.id).where(onward.c.next_from == onward.c.to_stage)))
    else:  # skipped: changes that jumped over the stage
        earlier, later = STAGES[:number], STAGES[number + 1:]
        condition = and_(StageChange.from_stage.in_(earlier), StageChange.to_stage.in_(later))
    columns = (StageChange.id, StageChange.account_id, StageChange.from_stage, StageChange.to_stage,
               StageChange.at, StageChange.journey_id)
    if which == "skipped":  # the figure counts changes
        query = select(*columns).where(period, condition).order_by(StageChange.id).limit(LIMIT)
    else:  # entered and moved_on count accounts: each account's latest such change, once
        latest = (select(*columns, func.row_number().over(partition_by=StageChange.account_id,
                                                          order_by=(StageChange.at.desc(), StageChange.id.desc()))
                         .label("nth"))
                  .where(period, condition).subquery())
        query = (select(*[latest.c[column.key] for column in columns]).where(latest.c.nth == 1)
                 .order_by(latest.c.id).limit(LIMIT))
    with unit_of_work(sessions, read_only=True) as session:
        return [dict(row._mapping) for row in session.execute(query)]


def _signal_journeys(*, sessions: sessionmaker[Session], since: datetime, until: datetime, scope: Scope,
                     stage: str, touched: bool) -> Rows:
    touch = human_touch()
    first = (select(Task.journey_id, touch.label("at")).where(touch < until)).subquery()
    query = (select(Journey.id, Journey.playbook_id, Journey.account_id, Signal.occurred_at.label("signal_at"))
             .join(Signal, Signal.id == Journey.trigger_signal_id)
             .join(PlaybookVersion, PlaybookVersion.id == Journey.playbook_version_id)
             .where(Signal.occurred_at >= since, Signal.occurred_at < until, PlaybookVersion.stage == stage,
                    *journey_scope(scope)))
    if touched:
        query = query.where(Journey.id.in_(select(first.c.journey_id)))
    with unit_of_work(sessions, read_only=True) as session:
        return [dict(row._mapping) for row in session.execute(query.order_by(Journey.id).limit(LIMIT))]



def _entered(*, since: datetime, until: datetime, scope: Scope, experiment: str, variant: str) -> Any:
    found = experiments.entered(since=since, until=until, scope=scope)
    return found, [found.c.experiment == experiment, found.c.variant == variant]


def _experiment_tasks(*, since: datetime, until: datetime, scope: Scope, which: str, experiment: str,
                      variant: str) -> Any:
    if which not in EXPERIMENT_TASK_FIGURES:
        raise ValueError(f"which: one of {', '.join(EXPERIMENT_TASK_FIGURES)}")
    found, conditions = _entered(since=since, until=until, scope=scope, experiment=experiment, variant=variant)
    verdicts = select(TaskFeedback.id).where(TaskFeedback.task_id == Task.id)
    not_useful = exists(verdicts.where(TaskFeedback.useful.is_(False)))
    condition = {"tasks": None, "rated": exists(verdicts), "useful": and_(exists(verdicts), ~not_useful),
                 "not_useful": not_useful}[which]
    ids = select(Task.id).where(Task.journey_id.in_(select(found.c.journey_id).where(*conditions)))
    return ids if condition is None else ids.where(condition)


def journeys(*, sessions: sessionmaker[Session], since: datetime, until: datetime, scope: Scope, which: str,
             experiment: str, variant: str) -> Rows:
    """The journeys behind a number of the experiments report: those that entered `variant` of `experiment`
    in the period, by how they stand."""
    if which not in EXPERIMENT_FIGURES:
        raise ValueError(f"which: one of {', '.join(EXPERIMENT_FIGURES)}")
    found, conditions = _entered(since=since, until=until, scope=scope, experiment=experiment, variant=variant)
    condition = experiments.journey_condition(found, which)
    query = select(found.c.journey_id.label("id"), found.c.playbook, found.c.experiment, found.c.variant,
                   found.c.account_id, found.c.status, found.c.at.label("entered_at"), found.c.converted_at)
    query = query.where(*conditions, *([] if condition is None else [condition]))
    with unit_of_work(sessions, read_only=True) as session:
        return [dict(row._mapping) for row in session.execute(query.order_by(found.c.journey_id).limit(LIMIT))]
