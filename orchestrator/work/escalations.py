"""Escalation rungs: notify a person, reassign through the assignment rules, raise the priority.

Each rung runs once: the caller holds the task's row and `escalation_level` is the
watermark, moved in the same transaction as the SLA event, the audit event and the
outbox messages the rung writes. A chain that runs out of rungs hands the task to the
exception queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from orchestrator import audit, exception_queue
from orchestrator.config import Settings
from orchestrator.delivery import outbox
from orchestrator.models import Account, Deal, Journey, Owner, Priority, SlaEventKind, Task
from orchestrator.playbook.model import Escalation
from orchestrator.work.assignment import UnknownReference, resolve_assignee, resolve_person
from orchestrator.work.sla import TaskSla, record_event

__all__ = ["deferred_exhaustion", "exhaust_chain", "fire_rung", "raised"]

_LADDER = (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT)


def raised(priority: str) -> Priority:
    """One step up the priority ladder; urgent stays urgent."""
    current = Priority(priority)
    return _LADDER[min(_LADDER.index(current) + 1, len(_LADDER) - 1)]


def fire_rung(session: Session, *, settings: Settings, task: Task, sla: TaskSla, now: datetime) -> dict[str, Any]:
    """Run rung number `task.escalation_level + 1` of the chain and move the watermark past it."""
    level = task.escalation_level + 1
    rung = sla.rungs[task.escalation_level]
    account = session.get_one(Account, task.account_id)
    deal = _deal(session, task)
    owner = session.get_one(Owner, task.owner_id)
    done: dict[str, Any] = {"rung": level, "anchor": rung.anchor, "offset": str(rung.offset or "")}
    problems: list[str] = []

    if rung.notify:
        person = _notify_target(session, rung=rung, owner=owner, account=account, deal=deal)
        if person is None:
            problems.append(f"nobody to notify for {rung.notify}")
        else:
            done["notified"] = person.email
            outbox.enqueue_deferred(
                session, kind="notify.email", target="email", at=now, account_id=task.account_id,
                task_id=task.id, idempotency_key=f"task:{task.id}:escalate:{level}:notify",
                payload={"to": person.email,
                         "subject": f"Escalation: task {task.id} for {account.name} is overdue",
                         "body": (f"{owner.name}'s task \"{task.title}\" was due {task.due_at:%Y-%m-%d %H:%M} UTC "
                                  f"and is still {task.status}. Rung {level} of its escalation chain "
                                  f"({sla.rule(level)}) asks you to step in."),
                         "task_id": task.id})
    crm_changes: dict[str, Any] = {}
    if rung.reassign is not None:
        chosen = resolve_assignee(session, assignment=rung.reassign, account=account, deal=deal, now=now)
        if chosen is None or chosen.owner.id == owner.id:
            problems.append("nobody else available to reassign to" if chosen is None
                            else f"reassignment picked the current owner {owner.email}")
        else:
            done["reassigned"] = {"from": owner.email, "to": chosen.owner.email, "how": chosen.how}
            task.owner_id = chosen.owner.id
            task.owner = chosen.owner
            crm_changes.update(owner_email=chosen.owner.email, owner_name=chosen.owner.name)
    if rung.raise_priority:
        new = raised(task.priority)
        if new != task.priority:
            done["priority"] = {"from": task.priority, "to": str(new)}
            task.priority = new
            crm_changes["priority"] = str(new)
    if crm_changes:
        outbox.enqueue_deferred(
            session, kind="crm.update_task", target="crm", at=now, account_id=task.account_id, task_id=task.id,
            idempotency_key=f"task:{task.id}:escalate:{level}:update",
            payload={"task_id": task.id, "crm_source": task.crm_source, "crm_id": task.crm_id,
                     "reason": f"escalation rung {level}", **crm_changes})
    if problems:
        done["problems"] = problems
    done.update(playbook_id=sla.playbook_id, playbook_version=sla.playbook_version, rule=sla.rule(level))

    task.escalation_level = level
    record_event(session, task=task, kind=SlaEventKind.ESCALATED, level=level, at=now, detail=done)
    audit.record(
        session, at=now, action=audit.AuditAction.TASK_ESCALATED, rule=sla.rule(level),
        reason=_sentence(task, level, done), account_id=task.account_id, journey_id=task.journey_id,
        playbook_id=sla.playbook_id, playbook_version=sla.playbook_version, step_id=sla.step_id,
        detail={"task_id": task.id, **done},
    )
    if problems:
        # A rung that could do nothing still counts as taken; its failure has an owner.
        exception_queue.raise_item(
            session, settings=settings, category=exception_queue.Category.NO_ASSIGNEE, at=now,
            message=f"task {task.id}: escalation rung {level} ({sla.rule(level)}): {'; '.join(problems)}",
            account_id=task.account_id, journey_id=task.journey_id,
            detail={"task_id": task.id, "rung": level},
            playbook_id=sla.playbook_id, playbook_version=sla.playbook_version, step_id=sla.step_id,
        )
    return done


def exhaust_chain(session: Session, *, settings: Settings, task: Task, sla: TaskSla, now: datetime) -> None:
    """The last rung fired and the task is still open: an exception item takes it over, once.

    Inside `deferred_exhaustion` the item (and the SLA event naming it) waits for the batch's
    one INSERT; the watermark moves at once either way.
    """
    level = task.escalation_level + 1
    task.escalation_level = level
    pending = session.info.get(_EXHAUSTED)
    if pending is None:
        _exhaust(session, settings=settings, entries=[(task, sla, now, level)])
    else:
        pending.append((task, sla, now, level))


_EXHAUSTED = "handoff.escalations.exhausted"
_Entry = tuple[Task, TaskSla, datetime, int]


@contextmanager
def deferred_exhaustion(session: Session, *, settings: Settings) -> Iterator[None]:
    """Chains that run out in the block open their exception items together when it ends without an error."""
    if _EXHAUSTED in session.info:
        yield
        return
    pending: list[_Entry] = []
    session.info[_EXHAUSTED] = pending
    try:
        yield
    finally:
        session.info.pop(_EXHAUSTED, None)
    _exhaust(session, settings=settings, entries=pending)


def _exhaust(session: Session, *, settings: Settings, entries: list[_Entry]) -> None:
    ids = exception_queue.raise_items(session, settings=settings, items=[
        exception_queue.NewItem(
            category=exception_queue.Category.SLA_EXHAUSTED, at=now,
            message=(f"task {task.id} ({task.title}) is still {task.status} after all {len(sla.rungs)} "
                     f"escalation rungs; it was due {task.due_at:%Y-%m-%d %H:%M} UTC"),
            account_id=task.account_id, journey_id=task.journey_id,
            detail={"task_id": task.id, "rungs": len(sla.rungs)},
            playbook_id=sla.playbook_id, playbook_version=sla.playbook_version, step_id=sla.step_id)
        for task, sla, now, _level in entries])
    for (task, sla, now, level), item_id in zip(entries, ids, strict=True):
        record_event(session, task=task, kind=SlaEventKind.EXHAUSTED, level=level, at=now,
                     detail={"exception_id": item_id, "rule": sla.rule(len(sla.rungs)),
                             "playbook_version": sla.playbook_version})


def _notify_target(session: Session, *, rung: Escalation, owner: Owner, account: Account,
                   deal: Deal | None) -> Owner | None:
    reference = rung.notify or ""
    if reference == "owner.manager":
        return owner.manager  # the manager of the task's current owner, not the account's
    try:
        return resolve_person(session, reference=reference, account=account, deal=deal)
    except UnknownReference:
        return None


def _deal(session: Session, task: Task) -> Deal | None:
    journey = session.get(Journey, task.journey_id) if task.journey_id is not None else None
    return session.get(Deal, journey.deal_id) if journey is not None and journey.deal_id else None


def _sentence(task: Task, level: int, done: dict[str, Any]) -> str:
    parts = []
    if "notified" in done:
        parts.append(f"notified {done['notified']}")
    if "reassigned" in done:
        parts.append(f"reassigned to {done['reassigned']['to']} ({done['reassigned']['how']})")
    if "priority" in done:
        parts.append(f"priority {done['priority']['from']} -> {done['priority']['to']}")
    if done.get("problems"):
        parts.append("; ".join(done["problems"]))
    return f"task {task.id} escalation rung {level}: " + (", ".join(parts) or "nothing to do")
