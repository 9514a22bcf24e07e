"""Noise: work the automation made that nobody needed, per playbook step.

Over step runs started in the period: runs, skipped runs, tasks, tasks closed without action
(cancelled: the journey ended before anyone acted), tasks someone rated (`task_feedback`),
tasks someone marked not useful, and reviews published and of those the ones whose draft the
reviewer edited first (the `published` audit event keeps both texts). Definitions: README, "Reporting".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.audit import AuditAction
from orchestrator.db import unit_of_work
from orchestrator.models import AuditEvent, Journey, StepRun, StepStatus, Task, TaskFeedback, TaskStatus
from orchestrator.reports._sql import count_if, parse_grouping
from orchestrator.reports.scope import EVERYTHING, RUN_GROUPINGS, Scope, journey_scope, run_dimension, with_run_joins

__all__ = ["NoiseRow", "noise_report", "noise_rows"]


@dataclass(frozen=True)
class NoiseRow:
    playbook: str
    step: str
    runs: int
    skipped: int
    tasks: int
    closed_without_action: int
    rated: int
    not_useful: int
    published: int
    edited: int
    noise_rate: float | None

    def figures(self) -> dict[str, Any]:
        return {name: (round(value, 4) if isinstance(value, float) else value)
                for name, value in self.__dict__.items()}


def noise_report(*, sessions: sessionmaker[Session], since: datetime, until: datetime,
                 scope: Scope = EVERYTHING) -> list[NoiseRow]:
    """One row per playbook step with runs in [since, until), noisiest share first."""
    return [NoiseRow(playbook=r["playbook"], step=r["step"], **{k: v for k, v in r.items()
                                                                if k not in ("playbook", "step")})
            for r in noise_rows(sessions=sessions, since=since, until=until, scope=scope, by=None)]


def noise_rows(*, sessions: sessionmaker[Session], since: datetime, until: datetime, scope: Scope = EVERYTHING,
               by: str | None) -> list[dict[str, Any]]:
    """The noise figures per playbook step (`by` None), or per RUN_GROUPINGS group (`team`, `team,week`)."""
    if by is None:
        keys: tuple[str, ...] = ()
        groups = [Journey.playbook_id.label("playbook"), StepRun.step_id.label("step")]
    else:
        keys = parse_grouping(by, allowed=RUN_GROUPINGS, default="playbook")
        groups = [run_dimension(key).label(key) for key in keys]
    # Per task: whether anyone found it not useful (the verdicts as they stand now; one row per rated task).
    verdicts = (select(TaskFeedback.task_id, func.max(case((TaskFeedback.useful.is_(False), 1), else_=0))
                       .label("not_useful"))
                .group_by(TaskFeedback.task_id).subquery())
    # Reviews whose published text differs from the draft: the audit event of the publish says so.
    edits = (select(AuditEvent.detail["task_id"].as_integer().label("task_id"))
             .where(AuditEvent.action == AuditAction.PUBLISHED.value, AuditEvent.detail["edited"].as_boolean())
             .distinct().subquery())
    cancelled = Task.status == TaskStatus.CANCELLED.value
    not_useful = verdicts.c.not_useful == 1
    query = (select(*groups,
                    func.count(func.distinct(StepRun.id)).label("runs"),
                    count_if(StepRun.status == StepStatus.SKIPPED.value).label("skipped"),
                    func.count(Task.id).label("tasks"),
                    count_if(cancelled).label("closed_without_action"),
                    func.count(verdicts.c.task_id).label("rated"),
                    count_if(not_useful).label("not_useful"),
                    count_if(Task.outcome == "published").label("published"),
                    func.count(edits.c.task_id).label("edited"),
                    count_if(or_(cancelled, not_useful)).label("noisy_tasks"))
             .join(Journey, Journey.id == StepRun.journey_id)
             .outerjoin(Task, Task.step_run_id == StepRun.id)
             .outerjoin(verdicts, verdicts.c.task_id == Task.id)
             .outerjoin(edits, edits.c.task_id == Task.id)
             .where(StepRun.started_at >= since, StepRun.started_at < until, *journey_scope(scope))
             .group_by(*[group.element for group in groups]))
    if keys:
        query = with_run_joins(query)
    with unit_of_work(sessions, read_only=True) as session:
        found = session.execute(query).all()
    names = [group.name for group in groups]
    rows = [{**{name: r._mapping[name] for name in names}, "runs": r.runs, "skipped": r.skipped, "tasks": r.tasks,
             "closed_without_action": r.closed_without_action, "rated": r.rated, "not_useful": r.not_useful,
             "published": r.published, "edited": r.edited,
             "noise_rate": round((r.skipped + r.noisy_tasks) / r.runs, 4) if r.runs else None} for r in found]
    if "week" in keys:
        return sorted(rows, key=lambda row: tuple(row[name] for name in names))
    return sorted(rows, key=lambda row: (-(row["noise_rate"] or 0), *[row[name] for name in names]))
