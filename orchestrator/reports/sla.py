"""The SLA report: adherence, breaches, escalations by rung, times to ack and done, time paused.

Read-only (`unit_of_work(read_only=True)`). Each figure has one definition, here and in the
README ("SLA report"); the period selects tasks by creation time.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db import unit_of_work
from orchestrator.models import Journey, Owner, PlaybookVersion, SlaEvent, SlaEventKind, Task

__all__ = ["GROUPINGS", "SlaRow", "sla_report"]

Grouping = Literal["owner", "team", "stage", "playbook"]
GROUPINGS: tuple[str, ...] = ("owner", "team", "stage", "playbook")
_FINISHED = {"done", "approved", "published", "rejected"}  # cancelled: nobody had to finish it


@dataclass
class SlaRow:
    """One group's figures (see the README for each definition)."""

    group: str
    tasks: int = 0
    ack_met: int = 0
    ack_breached: int = 0
    due_met: int = 0
    due_breached: int = 0
    escalations: dict[int, int] = field(default_factory=dict)  # rung -> times it fired
    ack_minutes: list[float] = field(default_factory=list)
    done_minutes: list[float] = field(default_factory=list)
    paused_seconds: int = 0

    @property
    def breaches(self) -> int:
        return self.ack_breached + self.due_breached

    @staticmethod
    def _share(met: int, breached: int) -> float | None:
        return round(met / (met + breached), 4) if met + breached else None

    def figures(self, rungs: int) -> dict[str, Any]:
        """The row as named figures; times in minutes, adherence as a share, None where undefined."""
        return {
            "group": self.group, "tasks": self.tasks,
            "ack_adherence": self._share(self.ack_met, self.ack_breached),
            "due_adherence": self._share(self.due_met, self.due_breached),
            "breaches": self.breaches,
            **{f"escalations_rung_{n}": self.escalations.get(n, 0) for n in range(1, rungs + 1)},
            "ack_median_min": _median(self.ack_minutes), "ack_p90_min": _p90(self.ack_minutes),
            "done_median_min": _median(self.done_minutes), "done_p90_min": _p90(self.done_minutes),
            "paused_hours": round(self.paused_seconds / 3600, 2),
        }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _p90(values: list[float]) -> float | None:
    # Nearest rank: the smallest value with at least 90% of the values at or below it.
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[math.ceil(0.9 * len(ordered)) - 1], 1)


def sla_report(*, sessions: sessionmaker[Session], since: datetime, until: datetime,
               by: Grouping) -> tuple[list[SlaRow], int]:
    """Rows per group for tasks created in [since, until), largest group first; and the longest chain seen."""
    if by not in GROUPINGS:
        raise ValueError(f"group by one of {', '.join(GROUPINGS)}")
    with unit_of_work(sessions, read_only=True) as session:
        query = (
            select(Task.id, Task.created_at, Task.acknowledged_at, Task.completed_at, Task.outcome,
                   Task.ack_outcome, Task.due_outcome, Task.paused_seconds, Owner.email, Owner.team,
                   Journey.playbook_id, PlaybookVersion.stage)
            .join(Owner, Owner.id == Task.owner_id)
            .outerjoin(Journey, Journey.id == Task.journey_id)
            .outerjoin(PlaybookVersion, PlaybookVersion.id == Journey.playbook_version_id)
            .where(Task.created_at >= since, Task.created_at < until)
        )
        tasks = session.execute(query).all()
        ids = select(Task.id).where(Task.created_at >= since, Task.created_at < until)
        fired: dict[int, dict[int, int]] = defaultdict(dict)
        for task_id, level, count in session.execute(
                select(SlaEvent.task_id, SlaEvent.level, func.count())
                .where(SlaEvent.kind == str(SlaEventKind.ESCALATED), SlaEvent.task_id.in_(ids))
                .group_by(SlaEvent.task_id, SlaEvent.level)):
            fired[task_id][level] = count
    rows: dict[str, SlaRow] = {}
    rungs = 0
    for task in tasks:
        key = {"owner": task.email, "team": task.team or "(no team)", "stage": task.stage or "(no playbook)",
               "playbook": task.playbook_id or "(no playbook)"}[by]
        row = rows.setdefault(key, SlaRow(group=key))
        row.tasks += 1
        row.ack_met += task.ack_outcome == "met"
        row.ack_breached += task.ack_outcome == "breached"
        row.due_met += task.due_outcome == "met"
        row.due_breached += task.due_outcome == "breached"
        for level, count in fired.get(task.id, {}).items():
            row.escalations[level] = row.escalations.get(level, 0) + count
            rungs = max(rungs, level)
        first_response = min((t for t in (task.acknowledged_at, task.completed_at) if t is not None), default=None)
        if first_response is not None and task.outcome != "cancelled":
            row.ack_minutes.append(_minutes(first_response - task.created_at))
        if task.completed_at is not None and task.outcome in _FINISHED:
            row.done_minutes.append(_minutes(task.completed_at - task.created_at))
        row.paused_seconds += task.paused_seconds or 0
    return sorted(rows.values(), key=lambda r: (-r.tasks, r.group)), rungs


def _minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60
