"""Task feedback: was this task worth a person's time? Useful or not, with a note; one per person per task.

The noise report counts the "not useful" verdicts per playbook step, so a playbook writer
learns which tasks people would rather not get. Giving feedback again replaces the first
verdict (people change their minds once they have worked the task); both are in the audit trail.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator import audit
from orchestrator.errors import Invalid
from orchestrator.models import Owner, Task, TaskFeedback
from orchestrator.work.entitlements import check_decider
from orchestrator.work.tasks import task_provenance

__all__ = ["MAX_NOTE", "feedback_for", "give_feedback"]

MAX_NOTE = 2000


def give_feedback(session: Session, *, task: Task, actor: Owner | None, by: str, useful: bool, note: str = "",
                  now: datetime, admin: bool = False) -> TaskFeedback:
    """Record (or replace) `by`'s verdict on `task`, audited; only its owner, their managers or an admin.

    `actor` is the person acting (None only for an admin key bound to nobody, which must pass
    `admin=True`); `by` is how the feedback and the audit trail name them.
    """
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise Invalid(f"a note is at most {MAX_NOTE} characters, not {len(note)}", field="note")
    if actor is not None:
        check_decider(session, task=task, actor=actor, admin=admin)
    elif not admin:
        raise Invalid("name who gives the feedback: an owner's email", field="by")
    # The task's row lock: one person's two verdicts sent at once become one row, the later one.
    session.execute(select(Task.id).where(Task.id == task.id).with_for_update())
    found = session.scalar(select(TaskFeedback).where(TaskFeedback.task_id == task.id, TaskFeedback.by == by))
    before = found.useful if found is not None else None
    if found is None:
        found = TaskFeedback(task_id=task.id, by=by, owner_id=actor.id if actor is not None else None,
                             useful=useful, note=note, created_at=now, updated_at=now)
        session.add(found)
    else:
        found.useful, found.note, found.updated_at = useful, note, now
    session.flush()
    playbook_id, version, step_id = task_provenance(session, task)
    verdict = "useful" if useful else "not useful"
    audit.record(session, at=now, action=audit.AuditAction.TASK_FEEDBACK, actor=by, rule="task",
                 reason=f"{by} found task {task.id} {verdict}" + (f": {note}" if note else ""),
                 account_id=task.account_id, journey_id=task.journey_id, playbook_id=playbook_id,
                 playbook_version=version, step_id=step_id,
                 detail={"task_id": task.id, "useful": useful, "note": note, "previous": before})
    return found


def feedback_for(session: Session, *, task_id: int) -> list[TaskFeedback]:
    """Everyone's verdict on one task, oldest first."""
    query = select(TaskFeedback).where(TaskFeedback.task_id == task_id).order_by(TaskFeedback.id)
    return list(session.scalars(query))
