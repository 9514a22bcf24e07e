"""Human tasks: deadlines on the owner's business calendar, a priority, and the CRM task via the outbox.

These services record a task's life (created, acknowledged, completed) with its
outbox message and audit event in the caller's transaction; they never commit and
never advance a journey: the engine calls them and decides what happens next.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from orchestrator import audit
from orchestrator.config import Settings
from orchestrator.db import NO_AUTOFLUSH, flush_only
from orchestrator.delivery import outbox
from orchestrator.errors import Conflict
from orchestrator.models import (
    OPEN_STATUSES,
    OUTCOME_STATUS,
    Account,
    Deal,
    Journey,
    Owner,
    PlaybookVersion,
    Priority,
    Signal,
    StepRun,
    Task,
    TaskKind,
    TaskStatus,
)
from orchestrator.work import sla as sla_clock
from orchestrator.work.briefs import Brief, description_limit
from orchestrator.work.sla import calendar_for, deadlines, escalation_time
from orchestrator.work.task_contact import contact_crm_ref

if TYPE_CHECKING:
    from orchestrator.playbook.model import Sla

__all__ = [
    "OUTCOMES", "TaskStateError", "acknowledge_task", "calendar_for", "complete_task", "create_task",
    "deadlines", "escalation_time", "list_tasks", "open_task_count", "priority_for", "priority_score",
    "reassign_task", "task_provenance",
]

OUTCOMES = OUTCOME_STATUS  # the one table lives with the Task model
# The task's own life; what an approval or rejection does to a journey the engine records.
_COMPLETION_ACTIONS = {
    "done": audit.AuditAction.TASK_COMPLETED,
    "published": audit.AuditAction.TASK_COMPLETED,
    "approved": audit.AuditAction.TASK_COMPLETED,
    "rejected": audit.AuditAction.TASK_COMPLETED,
    "cancelled": audit.AuditAction.TASK_CANCELLED,
}


class TaskStateError(Conflict):
    """A task change that its current state does not allow (e.g. completing it twice differently)."""


# -- priority ---------------------------------------------------------------------

# Severity words found in signal payloads (`severity`, `priority`), scored 0..3.
_SEVERITY_WORDS = {"critical": 3, "urgent": 3, "blocker": 3, "high": 2, "major": 2, "medium": 1,
                   "moderate": 1, "low": 0, "minor": 0}
# Signal types that are bad news on their own, whatever the payload says.
_SEVERE_TYPES = {"support.escalation": 2, "sentiment.negative": 2, "account.churn_risk": 3,
                 "churn.risk": 3, "renewal.at_risk": 3}


@dataclass(frozen=True)
class PriorityScore:
    score: int
    reasons: tuple[str, ...]

    @property
    def priority(self) -> Priority:
        if self.score >= 4:
            return Priority.URGENT
        if self.score >= 2:
            return Priority.HIGH
        if self.score >= 0:
            return Priority.NORMAL
        return Priority.LOW


def priority_score(*, account: Account, signal: Signal | None, due_in: timedelta,
                   deal: Deal | None = None) -> PriorityScore:
    """The points behind a task's priority, with a reason for each.

    account value: ARR, or the deal's amount while the account has no ARR yet (none, or 0):
        under $10k -1; $100k+ +1; $500k+ +2 (neither known: 0)
    signal severity (the strongest of): payload `severity`/`priority` critical|urgent +3,
        high|major +2, medium +1; negative `sentiment` (the word or a score below 0) +2;
        a bad-news type (support.escalation, sentiment.negative +2; churn/renewal risk +3)
    SLA urgency: due within 4 hours +2; within 24 hours +1
    Total: 4+ urgent, 2-3 high, 0-1 normal, below 0 low.
    """
    points = 0
    reasons: list[str] = []

    value, what = _account_value(account, deal)
    if value is not None:
        if value >= 500_000:
            points += 2
            reasons.append(f"{what} ${value:,.0f} is $500k+ (+2)")
        elif value >= 100_000:
            points += 1
            reasons.append(f"{what} ${value:,.0f} is $100k+ (+1)")
        elif value < 10_000:
            points -= 1
            reasons.append(f"{what} ${value:,.0f} is under $10k (-1)")
        else:
            reasons.append(f"{what} ${value:,.0f} is between $10k and $100k (0)")

    severity, why = _signal_severity(signal)
    if severity:
        points += severity
        reasons.append(f"{why} (+{severity})")

    if due_in <= timedelta(hours=4):
        points += 2
        reasons.append("due within 4 hours (+2)")
    elif due_in <= timedelta(hours=24):
        points += 1
        reasons.append("due within 24 hours (+1)")
    return PriorityScore(points, tuple(reasons))


def priority_for(*, account: Account, signal: Signal | None, due_in: timedelta,
                 deal: Deal | None = None) -> Priority:
    """The task priority from account value, signal severity and SLA urgency (see `priority_score`)."""
    return priority_score(account=account, signal=signal, due_in=due_in, deal=deal).priority


def _account_value(account: Account, deal: Deal | None) -> tuple[Decimal | None, str]:
    """What the account is worth for priority: its ARR, else (no ARR yet) the deal's amount."""
    if account.arr is not None and Decimal(account.arr) > 0:
        return Decimal(account.arr), "ARR"
    if deal is not None and deal.amount is not None and Decimal(deal.amount) > 0:
        return Decimal(deal.amount), "deal amount (account ARR not known yet)"
    if account.arr is not None:
        return Decimal(account.arr), "ARR"
    return None, ""


def _signal_severity(signal: Signal | None) -> tuple[int, str]:
    if signal is None:
        return 0, ""
    payload = signal.payload or {}
    found: list[tuple[int, str]] = [(_SEVERE_TYPES.get(signal.type, 0), f"signal {signal.type}")]
    for key in ("severity", "priority"):
        word = payload.get(key)
        if isinstance(word, str) and word.strip().lower() in _SEVERITY_WORDS:
            found.append((_SEVERITY_WORDS[word.strip().lower()], f"{key} {word}"))
    sentiment = payload.get("sentiment")
    if (isinstance(sentiment, str) and sentiment.strip().lower() == "negative") or (
        isinstance(sentiment, (int, float)) and not isinstance(sentiment, bool) and sentiment < 0
    ):
        found.append((2, f"sentiment {sentiment}"))
    return max(found, key=lambda item: item[0])


# -- the task's life --------------------------------------------------------------


def list_tasks(session: Session, *, owner_id: int | None = None, account_id: int | None = None,
               include_closed: bool = False) -> list[tuple[Task, str, str]]:
    """(task, owner email, account name), the soonest due first; open tasks unless asked otherwise."""
    query = (select(Task, Owner.email, Account.name).join(Owner, Owner.id == Task.owner_id)
             .join(Account, Account.id == Task.account_id).order_by(Task.due_at, Task.id))
    if not include_closed:
        query = query.where(Task.status.in_([str(s) for s in OPEN_STATUSES]))
    if owner_id is not None:
        query = query.where(Task.owner_id == owner_id)
    if account_id is not None:
        query = query.where(Task.account_id == account_id)
    return [(task, email, name) for task, email, name in session.execute(query)]


def open_task_count(session: Session, owner_id: int) -> int:
    """Tasks the person still has to work (open or acknowledged)."""
    flush_only(session, Task)  # the count reads tasks alone
    return session.scalar(_OPEN_TASK_COUNT, {"owner_id": owner_id}, execution_options=NO_AUTOFLUSH) or 0


# Built once: asked for every assignment to a person with a cap.
_OPEN_TASK_COUNT = select(func.count(Task.id)).where(
    Task.owner_id == bindparam("owner_id"), Task.status.in_([str(s) for s in OPEN_STATUSES]))


def create_task(
    session: Session,
    *,
    settings: Settings,
    account: Account,
    owner: Owner,
    kind: TaskKind | str,
    title: str,
    recommendation: str,
    brief: Brief,
    sla: Sla,
    now: datetime,
    journey: Journey | None = None,
    step_run: StepRun | None = None,
    signal: Signal | None = None,
    draft: str | None = None,
    calendar_name: str | None = None,
    deal: Deal | None = None,
) -> Task:
    """Store a task with its deadlines and priority, its CRM outbox message and its audit event.

    The brief gets the priority's reasons and is fitted to the description limit of the CRM
    the task goes to. All three join the caller's transaction; nothing is committed here.
    """
    calendar = calendar_for(owner, settings, calendar_name or sla.calendar)
    ack_by, due_at = deadlines(sla=sla, calendar=calendar, start=now)
    if deal is None:
        deal_id = (journey.deal_id if journey is not None else None) or (signal.deal_id if signal else None)
        deal = session.get(Deal, deal_id) if deal_id is not None else None
    score = priority_score(account=account, signal=signal, due_in=due_at - now, deal=deal)
    brief = brief.finished(priority=str(score.priority), reasons=score.reasons,
                           limit=description_limit(session, account_id=account.id))
    task = Task(
        account_id=account.id,
        journey_id=journey.id if journey is not None else None,
        step_run_id=step_run.id if step_run is not None else None,
        owner_id=owner.id,
        kind=str(TaskKind(kind)),
        title=_clip(title, 255),
        recommendation=recommendation,
        brief=brief.data,
        brief_text=brief.text,
        draft=draft,
        status=TaskStatus.OPEN,
        priority=score.priority,
        created_at=now,
        ack_by=ack_by,
        due_at=due_at,
        escalation_level=0,
        paused_seconds=0,
        sla_state=sla_clock.SlaState.ON_TRACK,
    )
    playbook_id, version, step_id = _provenance(session, journey, step_run)
    sla_clock.schedule(task, settings=settings, sla=sla_clock.TaskSla(
        calendar=calendar, rungs=sla.escalate, playbook_id=playbook_id, playbook_version=version,
        step_id=step_id))
    session.add(task)
    session.flush()  # the id names the outbox message

    local_due = due_at.astimezone(calendar.zone)
    outbox.enqueue(
        session,
        kind="crm.create_task",
        target="crm",
        idempotency_key=f"task:{task.id}:create",
        at=now,
        account_id=account.id,
        task_id=task.id,
        payload={
            "task_id": task.id,
            "account_id": account.id,
            "account_name": account.name,
            "kind": task.kind,
            "subject": task.title,
            "description": brief.text,
            "owner_email": owner.email,
            "owner_name": owner.name,
            # CRMs want a date (Salesforce ActivityDate): the owner's local date of the deadline.
            "due_date": local_due.date().isoformat(),
            "due_at": due_at.isoformat(),
            "ack_by": ack_by.isoformat() if ack_by is not None else None,
            "priority": str(task.priority),
            "status": str(task.status),
            # Who the task is about, per CRM (source -> contact id): Salesforce WhoId, HubSpot type 204.
            "contact_crm_ref": contact_crm_ref(session, account_id=account.id, signal=signal),
        },
    )
    audit.record(
        session,
        at=now,
        action=audit.AuditAction.TASK_CREATED,
        reason=(f"{task.kind} task for {owner.name} <{owner.email}>, due {due_at:%Y-%m-%d %H:%M} UTC, "
                f"priority {task.priority}"),
        rule=f"{playbook_id}/{step_id}" if playbook_id and step_id else "task",
        account_id=account.id,
        journey_id=task.journey_id,
        playbook_id=playbook_id,
        playbook_version=version,
        step_id=step_id,
        detail={
            "task_id": task.id,
            "owner": owner.email,
            "assigned_how": brief.data.get("assigned", ""),
            "priority": str(task.priority),
            "priority_reasons": list(score.reasons),
            "ack_by": ack_by.isoformat() if ack_by is not None else None,
            "due_at": due_at.isoformat(),
            "calendar": calendar_name or sla.calendar or f"owner ({calendar.timezone})",
        },
    )
    return task


def acknowledge_task(session: Session, *, task: Task, actor: str, now: datetime) -> Task:
    """Mark an open task acknowledged (stops the ack clock); a repeat changes nothing."""
    if task.status != TaskStatus.OPEN:
        if task.status == TaskStatus.ACKNOWLEDGED:
            return task
        raise TaskStateError(f"task {task.id} is {task.status}; only an open task can be acknowledged")
    task.status = TaskStatus.ACKNOWLEDGED
    task.acknowledged_at = now
    sla_clock.on_acknowledged(session, task=task, now=now)
    session.flush()
    playbook_id, version, step_id = _provenance(session, _journey(session, task), _step_run(session, task))
    audit.record(session, at=now, action=audit.AuditAction.TASK_ACKNOWLEDGED, actor=actor, rule="task",
                 reason=f"{actor} acknowledged task {task.id}", account_id=task.account_id,
                 journey_id=task.journey_id, playbook_id=playbook_id, playbook_version=version,
                 step_id=step_id, detail={"task_id": task.id})
    return task


def complete_task(
    session: Session, *, task: Task, actor: str, outcome: str, now: datetime, sync_crm: bool = True
) -> Task:
    """Close a task with an outcome: done, approved, rejected, published or cancelled.

    Writes `crm.complete_task` to the outbox unless the completion came from the CRM
    itself (`sync_crm=False`). Repeating the same outcome is a no-op, so a replayed
    CRM sync is harmless; a different outcome on a closed task is refused.
    """
    if outcome not in OUTCOMES:
        raise TaskStateError(f'"{outcome}" is not a task outcome; use one of {", ".join(OUTCOMES)}')
    if task.status not in OPEN_STATUSES:
        if task.outcome == outcome:
            return task
        raise TaskStateError(f"task {task.id} is already {task.status} ({task.outcome}); cannot mark it {outcome}")
    task.status = OUTCOMES[outcome]
    task.outcome = outcome
    task.completed_at = now
    task.completed_by = actor
    sla_clock.on_closed(session, task=task, now=now)  # verdicts; nothing left to escalate
    session.flush()
    if sync_crm:
        outbox.enqueue(
            session, kind="crm.complete_task", target="crm", idempotency_key=f"task:{task.id}:complete",
            at=now, account_id=task.account_id, task_id=task.id,
            payload={"task_id": task.id, "crm_source": task.crm_source, "crm_id": task.crm_id,
                     "status": str(task.status), "outcome": outcome, "completed_by": actor,
                     "completed_at": now.isoformat()},
        )
    playbook_id, version, step_id = _provenance(session, _journey(session, task), _step_run(session, task))
    audit.record(session, at=now, action=_COMPLETION_ACTIONS[outcome], actor=actor, rule="task",
                 reason=f"{actor} closed task {task.id} as {outcome}", account_id=task.account_id,
                 journey_id=task.journey_id, playbook_id=playbook_id, playbook_version=version,
                 step_id=step_id, detail={"task_id": task.id, "outcome": outcome})
    return task


def reassign_task(session: Session, *, settings: Settings, task: Task, to: Owner, actor: str, reason: str,
                  now: datetime) -> Task:
    """Give an open task to another active person, as an escalation's reassign rung does.

    The SLA clock is the task's, not the person's: deadlines, verdicts and the escalation
    watermark stay; the next look is rescheduled on the new owner's calendar, and the CRM
    task gets its new owner through the outbox. The caller holds the task's row (or account) lock.
    """
    if task.status not in OPEN_STATUSES:
        raise TaskStateError(f"task {task.id} is {task.status}; only an open task can be reassigned")
    if not to.active:
        raise TaskStateError(f"{to.email} is inactive")
    if to.id == task.owner_id:
        raise TaskStateError(f"task {task.id} is already {to.email}'s")
    before = session.get_one(Owner, task.owner_id)
    task.owner_id = to.id
    task.owner = to
    sla = sla_clock.sla_of(session, settings=settings, task=task)
    sla_clock.schedule(task, sla=sla, settings=settings)
    session.flush()
    outbox.enqueue(
        session, kind="crm.update_task", target="crm", at=now, account_id=task.account_id, task_id=task.id,
        idempotency_key=f"task:{task.id}:reassign:{now.isoformat()}:{to.id}",
        payload={"task_id": task.id, "crm_source": task.crm_source, "crm_id": task.crm_id,
                 "owner_email": to.email, "owner_name": to.name, "reason": "reassigned"})
    audit.record(session, at=now, action=audit.AuditAction.TASK_REASSIGNED, actor=actor, rule="task",
                 reason=f"{actor} reassigned task {task.id} from {before.email} to {to.email}: {reason}",
                 account_id=task.account_id, journey_id=task.journey_id, playbook_id=sla.playbook_id,
                 playbook_version=sla.playbook_version, step_id=sla.step_id,
                 detail={"task_id": task.id, "from": before.email, "to": to.email})
    return task


# -- helpers ----------------------------------------------------------------------


def task_provenance(session: Session, task: Task) -> tuple[str | None, int | None, str | None]:
    """(playbook id, version number, step id) a task came from, for the audit trail."""
    return _provenance(session, _journey(session, task), _step_run(session, task))


def _provenance(
    session: Session, journey: Journey | None, step_run: StepRun | None
) -> tuple[str | None, int | None, str | None]:
    """(playbook id, version number, step id) for the audit trail."""
    if journey is None:
        return None, None, step_run.step_id if step_run is not None else None
    version = session.get(PlaybookVersion, journey.playbook_version_id)
    step_id = step_run.step_id if step_run is not None else journey.current_step_id
    return journey.playbook_id, version.version if version is not None else None, step_id


def _journey(session: Session, task: Task) -> Journey | None:
    return session.get(Journey, task.journey_id) if task.journey_id is not None else None


def _step_run(session: Session, task: Task) -> StepRun | None:
    return session.get(StepRun, task.step_run_id) if task.step_run_id is not None else None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
