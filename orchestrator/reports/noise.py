"""Noise: work the automation made that nobody needed, per playbook step.

Over step runs started in the period: runs, skipped runs, tasks, tasks closed without action
(cancelled: the journey ended before anyone acted) and tasks marked not useful. Task feedback
is not recorded yet, so `not_useful` is None (unknown, not zero) until it is. Definitions:
README, "Reporting".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db import unit_of_work
from orchestrator.models import Journey, StepRun, StepStatus, Task, TaskStatus
from orchestrator.reports._sql import count_if

__all__ = ["NoiseRow", "noise_report"]


@dataclass(frozen=True)
class NoiseRow:
    playbook: str
    step: str
    runs: int
    skipped: int
    tasks: int
    closed_without_action: int
    not_useful: int | None
    noise_rate: float | None

    def figures(self) -> dict[str, Any]:
        return {name: (round(value, 4) if isinstance(value, float) else value)
                for name, value in self.__dict__.items()}


def noise_report(*, sessions: sessionmaker[Session], since: datetime, until: datetime) -> list[NoiseRow]:
    """One row per playbook step with runs in [since, until), noisiest share first."""
    query = (select(Journey.playbook_id, StepRun.step_id,
                    func.count(func.distinct(StepRun.id)).label("runs"),
                    count_if(StepRun.status == StepStatus.SKIPPED.value).label("skipped"),
                    func.count(Task.id).label("tasks"),
                    count_if(Task.status == TaskStatus.CANCELLED.value).label("closed_without_action"))
             .join(Journey, Journey.id == StepRun.journey_id)
             .outerjoin(Task, and_(Task.step_run_id == StepRun.id))
             .where(StepRun.started_at >= since, StepRun.started_at < until)
             .group_by(Journey.playbook_id, StepRun.step_id))
    with unit_of_work(sessions, read_only=True) as session:
        found = session.execute(query).all()
    rows = [NoiseRow(playbook=r.playbook_id, step=r.step_id, runs=r.runs, skipped=r.skipped, tasks=r.tasks,
                     closed_without_action=r.closed_without_action, not_useful=None,
                     noise_rate=(r.skipped + r.closed_without_action) / r.runs if r.runs else None)
             for r in found]
    return sorted(rows, key=lambda row: (-(row.noise_rate or 0), row.playbook, row.step))
