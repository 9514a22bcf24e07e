"""SLA enforcement for tasks: deadlines, states, verdicts, pause and resume, and when to look next.

A task's SLA clock runs on its owner's business calendar. The sweep (`orchestrator.work.sweep`)
looks at a task only when `sla_check_at` says something can change: it turns at risk, its ack
or due deadline passes, its reminder is due, or the next escalation rung comes up. Everything
here joins the caller's transaction; nothing commits.

Definitions (the README's SLA section repeats them):
- window: business time from creation to `due_at`, less business time spent paused.
- at risk: `settings.sla_at_risk_share` of the window has elapsed, nothing breached yet.
- ack met/breached: acknowledged (or closed) by `ack_by`, or not.
- due met/breached: closed (done, approved, published, rejected) by `due_at`, or not.
- paused: waiting on the customer; the deadlines move by the business time spent waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ColumnElement, Table, and_, func, or_, select
from sqlalchemy.orm import Session

from orchestrator import audit
from orchestrator.calendars import BusinessCalendar, calendar_from_config
from orchestrator.config import Settings
from orchestrator.db import collecting, insert_ignoring
from orchestrator.delivery import outbox
from orchestrator.durations import Duration, parse_duration
from orchestrator.errors import Conflict
from orchestrator.intake import records
from orchestrator.models import (
    OPEN_STATUSES,
    Journey,
    Owner,
    PlaybookVersion,
    SlaEvent,
    SlaEventKind,
    SlaState,
    StepRun,
    Task,
    TaskStatus,
)

if TYPE_CHECKING:
    from orchestrator.playbook.model import Escalation, Sla

__all__ = [
    "TaskSla", "apply_crm_status", "buffered_events", "calendar_for", "deadlines", "escalation_time", "finish_pause",
    "on_acknowledged", "on_closed", "pause_task", "record_event", "resume_task", "schedule", "sla_of", "state_at",
    "state_condition",
]

_OPEN = {str(s) for s in OPEN_STATUSES}


# -- calendars and deadlines ------------------------------------------------------


def calendar_for(owner: Owner, settings: Settings, name: str | None = None) -> BusinessCalendar:
    """The business calendar for the owner's deadlines.

    A calendar named by the playbook (`sla.calendar`) wins. Otherwise the configured
    "default" calendar, overlaid with the owner's own working hours, on the owner's
    time zone: people work their hours on their own clock.
    """
    if name:
        return settings.calendar(name)
    config: dict[str, Any] = dict(settings.calendars.get("default") or {})
    config.update(owner.working_hours or {})
    if owner.timezone:
        config["timezone"] = owner.timezone
    return calendar_from_config(config)


def deadlines(*, sla: Sla, calendar: BusinessCalendar, start: datetime) -> tuple[datetime | None, datetime]:
    """(ack_by, due_at) for a task started at `start`; ack_by is None without an ack SLA."""
    ack_by = calendar.add(start, sla.ack) if sla.ack is not None else None
    return ack_by, calendar.add(start, sla.due)


def escalation_time(
    *, rung: Escalation, ack_by: datetime | None, due_at: datetime, calendar: BusinessCalendar
) -> datetime:
    """When an escalation rung fires: its anchor (ack, else due) plus its offset, in business time if so written."""
    anchor = ack_by if rung.anchor == "ack" and ack_by is not None else due_at
    return calendar.add(anchor, rung.offset) if rung.offset is not None else anchor


def business_amount(duration: Duration, calendar: BusinessCalendar) -> timedelta:
    """A configured lead time as working time: business days count as full working days."""
    return (duration.calendar + timedelta(minutes=duration.business_minutes)
            + duration.business_days * calendar.day_length)


# -- what a task's SLA is -----------------------------------------------------------


@dataclass(frozen=True)
class TaskSla:
    """A task's SLA as its playbook version wrote it, with the calendar it runs on."""

    calendar: BusinessCalendar
    rungs: tuple[Escalation, ...]
    playbook_id: str | None
    playbook_version: int | None
    step_id: str | None

    def rule(self, level: int) -> str:
        """The audit rule naming rung `level` (from 1) of the chain."""
        where = f"{self.playbook_id}/{self.step_id}" if self.playbook_id else "task"
        return f"{where}/sla.escalate[{level}]"


def sla_of(session: Session, *, settings: Settings, task: Task) -> TaskSla:
    """The SLA of `task`: escalation rungs from the step that created it, on the owner's calendar."""
    from orchestrator.playbook.model import AutomatedStep, HumanStep, HybridStep, RouteStep
    from orchestrator.playbook.store import compiled

    sla: Sla | None = None
    playbook_id = version_number = step_id = None
    journey = session.get(Journey, task.journey_id) if task.journey_id is not None else None
    step_run = session.get(StepRun, task.step_run_id) if task.step_run_id is not None else None
    if journey is not None:
        version = session.get(PlaybookVersion, journey.playbook_version_id)
        playbook_id = journey.playbook_id
        if version is not None:
            version_number = version.version
            step_id = step_run.step_id if step_run is not None else None
            if step_id is not None:
                try:
                    step = compiled(version).step(step_id)
                except KeyError:
                    step = None
                if isinstance(step, (HumanStep, HybridStep, RouteStep)):
                    sla = step.sla
                elif isinstance(step, AutomatedStep):
                    sla = step.approval_sla
    owner = session.get_one(Owner, task.owner_id)
    calendar = calendar_for(owner, settings, sla.calendar if sla is not None else None)
    return TaskSla(calendar=calendar, rungs=sla.escalate if sla is not None else (),
                   playbook_id=playbook_id, playbook_version=version_number, step_id=step_id)


# -- times and states -------------------------------------------------------------


def _paused(task: Task) -> timedelta:
    return timedelta(seconds=task.paused_seconds or 0)


def window(task: Task, calendar: BusinessCalendar) -> timedelta:
    """Business time from creation to due, less the business time spent paused."""
    return max(calendar.business_time_between(task.created_at, task.due_at) - _paused(task), timedelta(0))


def at_risk_at(task: Task, *, settings: Settings, calendar: BusinessCalendar) -> datetime:
    """When the task turns at risk: the configured share of its window elapsed."""
    share = window(task, calendar) * settings.sla_at_risk_share
    return calendar.add_business_time(task.created_at, share + _paused(task))


def reminder_at(task: Task, *, settings: Settings, calendar: BusinessCalendar) -> datetime | None:
    """When to remind the owner (the lead time before due); None when the window is shorter."""
    lead = business_amount(parse_duration(settings.sla_reminder_lead), calendar)
    span = window(task, calendar)
    if span <= lead:
        return None
    return calendar.add_business_time(task.created_at, span - lead + _paused(task))


def rung_time(task: Task, *, sla: TaskSla, settings: Settings, level: int) -> datetime | None:
    """When rung `level` (0-based) fires; one past the last is when the chain runs out; None after that."""
    if level < len(sla.rungs):
        return escalation_time(rung=sla.rungs[level], ack_by=task.ack_by, due_at=task.due_at,
                               calendar=sla.calendar)
    if level == len(sla.rungs) and sla.rungs:
        last = escalation_time(rung=sla.rungs[-1], ack_by=task.ack_by, due_at=task.due_at,
                               calendar=sla.calendar)
        return sla.calendar.add(max(last, task.due_at), parse_duration(settings.sla_exhausted_after))
    return None


def state_at(task: Task, *, settings: Settings, calendar: BusinessCalendar, now: datetime) -> SlaState:
    """The task's SLA state at `now` (a closed task keeps the state its verdicts give it)."""
    if task.paused_at is not None:
        return SlaState.PAUSED
    if "breached" in (task.ack_outcome, task.due_outcome):
        return SlaState.BREACHED
    if task.status in _OPEN:
        if now >= task.due_at or (task.status == TaskStatus.OPEN and task.ack_by is not None
                                  and now >= task.ack_by):
            return SlaState.BREACHED
        if now >= at_risk_at(task, settings=settings, calendar=calendar):
            return SlaState.AT_RISK
    return SlaState(task.sla_state) if task.sla_state != SlaState.PAUSED else SlaState.ON_TRACK


def state_condition(state: SlaState, *, now: datetime) -> ColumnElement[bool]:
    """A WHERE clause for tasks in `state` at `now`, as `state_at` decides it, for list filters.

    Paused and breached are read from the deadlines themselves, so a breach shows the moment
    it happens. Turning at risk needs the business calendar, so that one is read from the
    `sla_state` the sweep keeps (it changes at the sweep's next look, `sla_check_at`).
    """
    paused = Task.paused_at.is_not(None)
    open_ = Task.status.in_(sorted(_OPEN))
    breached = and_(~paused, or_(
        # NULL outcomes must read as "not breached", never as unknown (NOT of unknown drops the row).
        func.coalesce(Task.ack_outcome, "") == "breached", func.coalesce(Task.due_outcome, "") == "breached",
        Task.sla_state == str(SlaState.BREACHED),
        and_(open_, or_(Task.due_at <= now, and_(Task.status == str(TaskStatus.OPEN), Task.ack_by.is_not(None),
                                                 Task.ack_by <= now)))))
    if state == SlaState.PAUSED:
        return paused
    if state == SlaState.BREACHED:
        return breached
    rest = and_(~paused, ~breached)
    if state == SlaState.AT_RISK:
        return and_(rest, Task.sla_state == str(SlaState.AT_RISK))
    return and_(rest, Task.sla_state.in_([str(SlaState.ON_TRACK), str(SlaState.PAUSED)]))


def schedule(task: Task, *, sla: TaskSla, settings: Settings) -> datetime | None:
    """Set `next_escalation_at` and `sla_check_at` from the task's watermarks; returns the next check.

    Rungs anchored on the ack are passed over (without firing) once the task was acknowledged
    before they came up: the ack they chase happened.
    """
    if task.status not in _OPEN or task.paused_at is not None:
        task.next_escalation_at = None
        task.sla_check_at = None
        return None
    while task.escalation_level < len(sla.rungs):
        rung = sla.rungs[task.escalation_level]
        when = rung_time(task, sla=sla, settings=settings, level=task.escalation_level)
        if rung.anchor == "ack" and task.acknowledged_at is not None and when is not None \
                and task.acknowledged_at <= when:
            task.escalation_level += 1
            continue
        break
    task.next_escalation_at = rung_time(task, sla=sla, settings=settings, level=task.escalation_level)
    candidates: list[datetime] = []
    if task.next_escalation_at is not None:
        candidates.append(task.next_escalation_at)
    if task.status == TaskStatus.OPEN and task.ack_by is not None and task.ack_outcome is None:
        candidates.append(task.ack_by)
    if task.due_outcome is None:
        candidates.append(task.due_at)
    if task.sla_state == SlaState.ON_TRACK:
        candidates.append(at_risk_at(task, settings=settings, calendar=sla.calendar))
    if task.last_reminder_at is None and task.due_outcome is None:
        remind = reminder_at(task, settings=settings, calendar=sla.calendar)
        if remind is not None and remind < task.due_at:
            candidates.append(remind)
    task.sla_check_at = min(candidates) if candidates else None
    return task.sla_check_at


# -- events -----------------------------------------------------------------------


_BUFFER = "handoff.sla.events"


def record_event(session: Session, *, task: Task, kind: SlaEventKind, at: datetime, level: int = 0,
                 detail: dict[str, Any] | None = None) -> None:
    """Record an SLA event once per (task, kind, level); a second record of the same is a no-op.

    The unique key makes a second worker's record a no-op even if two ever raced past
    their row locks (they cannot on PostgreSQL; SQLite has one writer). Inside
    `buffered_events` the row waits for the batch's one INSERT instead of costing its own.
    """
    row = {"task_id": task.id, "kind": str(kind), "level": level, "at": at, "detail": dict(detail or {})}
    buffer = session.info.get(_BUFFER)
    if buffer is not None:
        buffer.append(row)
    else:
        _insert_events(session, [row])


@contextmanager
def buffered_events(session: Session) -> Iterator[None]:
    """SLA events recorded in the block are written together when it ends without an error."""
    with collecting(session, _BUFFER, lambda rows: _insert_events(session, rows)):
        yield


def _insert_events(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        table = cast(Table, SlaEvent.__table__)
        session.execute(insert_ignoring(session, table, conflict=["task_id", "kind", "level"]), rows)


def _in_time(task: Task, at: datetime, deadline: datetime) -> bool:
    # While paused the clock stands still: a deadline not yet passed when the pause began is kept.
    if task.paused_at is not None:
        return task.paused_at <= deadline
    return at <= deadline


def _verdicts(session: Session, *, task: Task, at: datetime) -> None:
    """Ack and due met, for a task acknowledged or closed at `at` (breaches come from the sweep)."""
    if task.ack_by is not None and task.ack_outcome is None:
        met = _in_time(task, at, task.ack_by)
        task.ack_outcome = "met" if met else "breached"
        record_event(session, task=task, kind=SlaEventKind.ACK_MET if met else SlaEventKind.ACK_BREACHED,
                     at=at if met else task.ack_by, detail={"ack_by": task.ack_by.isoformat()})


def on_acknowledged(session: Session, *, task: Task, now: datetime) -> None:
    """The task was acknowledged: the ack verdict; the next sweep passes over ack rungs no longer due."""
    _verdicts(session, task=task, at=now)
    if task.paused_at is None:
        task.sla_check_at = now


def on_closed(session: Session, *, task: Task, now: datetime) -> None:
    """The task was closed: ack (closing counts as acknowledging) and due verdicts; nothing left to watch."""
    if task.outcome != "cancelled":
        _verdicts(session, task=task, at=now)
        if task.due_outcome is None:
            met = _in_time(task, now, task.due_at)
            task.due_outcome = "met" if met else "breached"
            record_event(session, task=task, kind=SlaEventKind.DUE_MET if met else SlaEventKind.DUE_BREACHED,
                         at=now if met else task.due_at, detail={"due_at": task.due_at.isoformat()})
    task.next_escalation_at = None
    task.sla_check_at = None
    if task.paused_at is not None:
        # Closed while waiting: the next sweep, which knows the calendar, books the business
        # time spent waiting up to the close (`finish_pause`).
        task.sla_check_at = now
        return
    if task.due_outcome == "breached" or task.ack_outcome == "breached":
        task.sla_state = SlaState.BREACHED
    elif task.sla_state == SlaState.PAUSED:
        task.sla_state = SlaState.ON_TRACK


def finish_pause(task: Task, *, calendar: BusinessCalendar) -> None:
    """A task closed while paused: count its waiting time up to the close, and the clock is done."""
    if task.paused_at is not None:
        end = task.completed_at or task.paused_at
        task.paused_seconds += int(calendar.business_time_between(task.paused_at, end).total_seconds())
        task.paused_at = None
    task.sla_state = SlaState.BREACHED if "breached" in (task.ack_outcome, task.due_outcome) \
        else SlaState.ON_TRACK
    task.sla_check_at = None


# -- waiting on the customer --------------------------------------------------------


def _pause_count(session: Session, task: Task) -> int:
    return session.scalar(select(func.count(SlaEvent.id)).where(
        SlaEvent.task_id == task.id, SlaEvent.kind == str(SlaEventKind.PAUSED))) or 0


def pause_task(session: Session, *, settings: Settings, task: Task, actor: str, now: datetime,
               reason: str = "waiting on the customer", origin: str = "manual") -> bool:
    """Stop the task's SLA clock; False when it was already paused. Closed tasks cannot pause.

    `origin` ("manual" or "crm") says who may end the pause: a CRM status resumes only its own.
    """
    if task.status not in _OPEN:
        raise Conflict(f"task {task.id} is {task.status}; only an open task can wait on the customer")
    if task.paused_at is not None:
        return False
    task.paused_at = now
    task.sla_state = SlaState.PAUSED
    task.next_escalation_at = None
    task.sla_check_at = None
    level = _pause_count(session, task) + 1
    record_event(session, task=task, kind=SlaEventKind.PAUSED, level=level, at=now,
                 detail={"by": actor, "reason": reason, "origin": origin})
    _audit(session, task=task, at=now, actor=actor, action=audit.AuditAction.TASK_PAUSED,
           reason=f"{actor} paused task {task.id}'s SLA clock: {reason}",
           sla=sla_of(session, settings=settings, task=task))
    session.flush()
    return True


def resume_task(session: Session, *, settings: Settings, task: Task, actor: str, now: datetime,
                from_crm: bool = False) -> bool:
    """Restart the clock with the business time that was left; False when the task was not paused.

    Each open deadline moves by the business time spent waiting, so what remained at the
    pause remains now. The CRM task gets its new due date through the outbox. A pause that a
    CRM waiting status started and a person ends by hand also sends the task's own status:
    otherwise the CRM task still says "waiting", and the next sync that reads it (our own
    due-date write changes it) would pause the clock again.
    """
    if task.paused_at is None:
        return False
    clear_crm_wait = not from_crm and _paused_by_crm(session, task)
    sla = sla_of(session, settings=settings, task=task)
    calendar = sla.calendar
    paused_at = task.paused_at

    def moved(deadline: datetime) -> datetime:
        if deadline <= paused_at:
            return deadline  # already past when the pause began: it stays breached
        return calendar.add_business_time(now, calendar.business_time_between(paused_at, deadline))

    if task.ack_by is not None and task.ack_outcome is None:
        task.ack_by = moved(task.ack_by)
    if task.due_outcome is None:
        task.due_at = moved(task.due_at)
    task.paused_seconds += int(calendar.business_time_between(paused_at, now).total_seconds())
    task.paused_at = None
    task.sla_state = SlaState.ON_TRACK
    task.sla_state = state_at(task, settings=settings, calendar=calendar, now=now)
    level = _pause_count(session, task)
    record_event(session, task=task, kind=SlaEventKind.RESUMED, level=level, at=now,
                 detail={"by": actor, "due_at": task.due_at.isoformat(),
                         "paused_seconds": task.paused_seconds})
    schedule(task, sla=sla, settings=settings)
    owner = session.get_one(Owner, task.owner_id)
    outbox.enqueue(
        session, kind="crm.update_task", target="crm", idempotency_key=f"task:{task.id}:resume:{level}",
        at=now, account_id=task.account_id, task_id=task.id,
        payload={"task_id": task.id, "crm_source": task.crm_source, "crm_id": task.crm_id,
                 "due_date": task.due_at.astimezone(calendar.zone).date().isoformat(),
                 "due_at": task.due_at.isoformat(), "owner_email": owner.email,
                 "priority": str(task.priority), "reason": "resumed after waiting on the customer",
                 **({"status": str(task.status)} if clear_crm_wait else {})},
    )
    _audit(session, task=task, at=now, actor=actor, action=audit.AuditAction.TASK_RESUMED,
           reason=f"{actor} resumed task {task.id}; due {task.due_at:%Y-%m-%d %H:%M} UTC", sla=sla)
    session.flush()
    return True


def _paused_by_crm(session: Session, task: Task) -> bool:
    """Whether the task's current pause came from a CRM status (not from a rep's `wait`)."""
    detail = session.scalar(select(SlaEvent.detail).where(
        SlaEvent.task_id == task.id, SlaEvent.kind == str(SlaEventKind.PAUSED))
        .order_by(SlaEvent.level.desc()).limit(1)) or {}
    return bool(detail.get("origin") == "crm" or str(detail.get("by", "")).startswith("crm status"))


def apply_crm_status(session: Session, *, settings: Settings, task: Task, status: str, now: datetime) -> bool:
    """A CRM task status seen by a sync or webhook: a waiting status pauses, another resumes. True if it changed.

    Only a pause the CRM started is resumed by the CRM: a rep who paused the clock by hand
    (`POST /tasks/{id}/wait`, `handoff tasks wait`) ends it by hand, whatever the CRM task says.
    """
    if task.status not in _OPEN:
        return False
    waiting = status.strip().casefold() in {s.casefold() for s in settings.sla_waiting_statuses}
    actor = f"crm status {status!r}"
    if waiting:
        return pause_task(session, settings=settings, task=task, actor=actor, now=now,
                          reason=f"CRM status {status}", origin="crm")
    if task.paused_at is None or not _paused_by_crm(session, task):
        return False
    return resume_task(session, settings=settings, task=task, actor=actor, now=now, from_crm=True)


def _audit(session: Session, *, task: Task, at: datetime, actor: str, action: audit.AuditAction,
           reason: str, rule: str = "sla", detail: dict[str, Any] | None = None,
           sla: TaskSla | None = None) -> None:
    playbook_id = sla.playbook_id if sla else None
    version = sla.playbook_version if sla else None
    step_id = sla.step_id if sla else None
    audit.record(session, at=at, action=action, actor=actor, rule=rule, reason=reason,
                 account_id=task.account_id, journey_id=task.journey_id, playbook_id=playbook_id,
                 playbook_version=version, step_id=step_id, detail={"task_id": task.id, **(detail or {})})


records.on_crm_status(apply_crm_status)  # a synced CRM task status pauses or resumes its clock
