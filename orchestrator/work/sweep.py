"""The SLA sweep: claim the tasks whose next SLA moment has come, and act on each once.

Cost follows what is due: the claim reads the partial index on `sla_check_at`, so a
million open tasks cost what the few due now cost. On PostgreSQL the claim takes the rows
`FOR UPDATE SKIP LOCKED`, so N workers share the due tasks and a worker killed mid-batch
loses its transaction, not the work: the rows go back to being due, watermarks unmoved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import exception_queue
from orchestrator.config import Settings
from orchestrator.db import skip_locked, unit_of_work
from orchestrator.delivery import outbox
from orchestrator.models import (
    OPEN_STATUSES,
    Account,
    Deal,
    Journey,
    Owner,
    PlaybookVersion,
    SlaEventKind,
    SlaState,
    StepRun,
    Task,
    TaskStatus,
)
from orchestrator.models.base import IdMixin
from orchestrator.work import escalations, reminders
from orchestrator.work.sla import TaskSla, buffered_events, finish_pause, record_event, schedule, sla_of, state_at

__all__ = ["SweepReport", "check_task", "claim_due", "sweep_batch", "sweep_sla"]

log = logging.getLogger(__name__)
_OPEN = {str(s) for s in OPEN_STATUSES}
DEFAULT_BATCH = 200


@dataclass
class SweepReport:
    tasks: int = 0
    errors: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def add(self, other: SweepReport) -> None:
        self.tasks += other.tasks
        self.errors += other.errors
        for what, n in other.counts.items():
            self.count(what, n)

    def __str__(self) -> str:
        detail = ", ".join(f"{key} {value}" for key, value in sorted(self.counts.items()))
        return f"{self.tasks} tasks checked" + (f" ({detail})" if detail else "")


def claim_due(session: Session, *, now: datetime, limit: int) -> list[Task]:
    """Tasks whose SLA check is due, soonest first; rows another worker holds are skipped."""
    query = (select(Task).where(Task.sla_check_at.is_not(None), Task.sla_check_at <= now)
             .order_by(Task.sla_check_at, Task.id).limit(limit))
    if skip_locked(session):
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def check_task(session: Session, *, settings: Settings, task: Task, now: datetime,
               report: SweepReport | None = None) -> None:
    """Everything due for one task at `now`: verdicts, state, reminder, rungs; then its next check."""
    report = report if report is not None else SweepReport()
    sla = sla_of(session, settings=settings, task=task)
    if task.status not in _OPEN:
        finish_pause(task, calendar=sla.calendar)
        task.next_escalation_at = None
        return
    if task.paused_at is not None:
        task.sla_check_at = None
        return
    _breaches(session, task=task, now=now, report=report)
    state = state_at(task, settings=settings, calendar=sla.calendar, now=now)
    if state == SlaState.AT_RISK and task.sla_state == SlaState.ON_TRACK:
        record_event(session, task=task, kind=SlaEventKind.AT_RISK, at=now,
                     detail={"share": settings.sla_at_risk_share})
        report.count("at risk")
    task.sla_state = state
    if task.last_reminder_at is None and reminders.reminder_due(task, settings=settings, sla=sla, now=now):
        reminders.send_reminder(session, task=task, sla=sla, now=now)
        report.count("reminders")
    _escalate(session, settings=settings, task=task, sla=sla, now=now, report=report)
    schedule(task, sla=sla_of(session, settings=settings, task=task), settings=settings)
    if task.sla_check_at is not None and task.sla_check_at <= now:
        # Nothing above acts on it any more; looking again at once would spin the sweep.
        log.warning("task %s: SLA check at %s was not cleared; looking again in a minute",
                    task.id, task.sla_check_at.isoformat())
        task.sla_check_at = now + timedelta(minutes=1)


def _breaches(session: Session, *, task: Task, now: datetime, report: SweepReport) -> None:
    if task.status == TaskStatus.OPEN and task.ack_by is not None and task.ack_outcome is None \
            and now >= task.ack_by:
        task.ack_outcome = "breached"
        record_event(session, task=task, kind=SlaEventKind.ACK_BREACHED, at=task.ack_by,
                     detail={"ack_by": task.ack_by.isoformat(), "seen_at": now.isoformat()})
        report.count("ack breached")
    if task.due_outcome is None and now >= task.due_at:
        task.due_outcome = "breached"
        record_event(session, task=task, kind=SlaEventKind.DUE_BREACHED, at=task.due_at,
                     detail={"due_at": task.due_at.isoformat(), "seen_at": now.isoformat()})
        report.count("due breached")


def _escalate(session: Session, *, settings: Settings, task: Task, sla: TaskSla, now: datetime,
              report: SweepReport) -> None:
    # A worker that was down catches up: every rung whose time has come fires, in order, once.
    while True:
        schedule(task, sla=sla, settings=settings)  # passes over ack rungs the ack made moot
        if task.next_escalation_at is None or task.next_escalation_at > now:
            return
        if task.escalation_level < len(sla.rungs):
            escalations.fire_rung(session, settings=settings, task=task, sla=sla, now=now)
            report.count("escalations")
            sla = sla_of(session, settings=settings, task=task)  # a new owner brings their calendar
        else:
            escalations.exhaust_chain(session, settings=settings, task=task, sla=sla, now=now)
            report.count("chains exhausted")


def sweep_sla(*, sessions: sessionmaker[Session], settings: Settings, now: datetime,
              limit: int = DEFAULT_BATCH, max_batches: int | None = None) -> SweepReport:
    """Claim and check due tasks batch by batch (one transaction each) until none are due.

    A batch runs without savepoints. When one of its checks fails, the batch rolls back and
    runs again with a savepoint per task, so the failing task is set aside and the rest
    commit; the failure costs one batch twice, the common case nothing.
    """
    report = SweepReport()
    batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        batch = SweepReport()
        try:
            with unit_of_work(sessions) as session:
                claimed, failed = sweep_batch(session, settings=settings, now=now, limit=limit, report=batch)
        except DBAPIError:
            raise  # the database, not a task: the batch rolled back and stays due
        except Exception:
            log.warning("an SLA check failed; checking that batch again one task at a time", exc_info=True)
            batch = SweepReport()
            with unit_of_work(sessions) as session:
                claimed, failed = sweep_batch(session, settings=settings, now=now, limit=limit, report=batch,
                                              isolate=True)
        report.add(batch)
        if failed:
            _quarantine(sessions=sessions, settings=settings, task_ids=failed, now=now)
            report.errors += len(failed)
        if claimed < limit:
            break
    return report


def sweep_batch(session: Session, *, settings: Settings, now: datetime, limit: int = DEFAULT_BATCH,
                report: SweepReport | None = None, isolate: bool = False) -> tuple[int, list[int]]:
    """One claimed batch in the caller's transaction: (tasks claimed, ids whose check failed).

    Without `isolate` a failing check raises and the caller rolls the batch back; with it,
    each check runs in a savepoint and the ids of those that failed are returned.
    """
    report = report if report is not None else SweepReport()
    tasks = claim_due(session, now=now, limit=limit)
    held = _preload(session, tasks)
    if isolate:
        failed = [task.id for task in tasks if not _check_isolated(session, settings, task, now, report)]
    else:
        failed = []
        with buffered_events(session), outbox.deferred(session), \
                escalations.deferred_exhaustion(session, settings=settings):
            for task in tasks:
                check_task(session, settings=settings, task=task, now=now, report=report)
    report.tasks += len(tasks)
    del held
    return len(tasks), failed


def _preload(session: Session, tasks: list[Task]) -> list[object]:
    """Read what the batch's checks read, one query per table, and hold it until the batch ends.

    The session's identity map holds rows weakly: without these references every check
    read its journey, step run, playbook version, owner and account again, several times.
    """
    journeys = _load(session, Journey, {t.journey_id for t in tasks})
    owners = _load(session, Owner, {t.owner_id for t in tasks})
    held: list[object] = [*journeys, *owners]
    held += _load(session, StepRun, {t.step_run_id for t in tasks})
    held += _load(session, Account, {t.account_id for t in tasks})
    held += _load(session, PlaybookVersion, {j.playbook_version_id for j in journeys})
    held += _load(session, Deal, {j.deal_id for j in journeys})
    held += _load(session, Owner, {o.manager_id for o in owners} - {o.id for o in owners})
    return held


_Row = TypeVar("_Row", bound=IdMixin)


def _load(session: Session, model: type[_Row], ids: set[int | None]) -> list[_Row]:
    wanted = sorted(i for i in ids if i is not None)
    return list(session.scalars(select(model).where(model.id.in_(wanted)))) if wanted else []


def _check_isolated(session: Session, settings: Settings, task: Task, now: datetime,
                    report: SweepReport) -> bool:
    try:
        with session.begin_nested():
            check_task(session, settings=settings, task=task, now=now, report=report)
        return True
    except DBAPIError:
        raise  # the database, not the task: the whole batch rolls back and stays due
    except Exception:  # one task's deterministic failure must not hold up the batch
        log.exception("SLA check of task %s failed", task.id)
        return False


def _quarantine(*, sessions: sessionmaker[Session], settings: Settings, task_ids: list[int],
                now: datetime) -> None:
    """Take tasks whose check fails off the sweep, each as an exception item with an owner."""
    with unit_of_work(sessions) as session:
        for task in session.scalars(select(Task).where(Task.id.in_(task_ids))):
            task.sla_check_at = None
            exception_queue.raise_item(
                session, settings=settings, category=exception_queue.Category.ENGINE_ERROR, at=now,
                message=f"task {task.id}: its SLA check failed; it is no longer watched until fixed",
                account_id=task.account_id, journey_id=task.journey_id, detail={"task_id": task.id})
