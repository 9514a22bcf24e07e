"""Reminders and digests: the owner hears about a deadline before it passes, and every morning.

All of it goes out through the outbox with an idempotency key per task, per owner and local
day, or per owner and ISO week, so a second worker or a repeated run sends nothing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator import exception_queue
from orchestrator.config import Settings
from orchestrator.delivery import outbox
from orchestrator.models import (
    OPEN_STATUSES,
    Account,
    OutboxMessage,
    Owner,
    PlaybookReview,
    SlaEventKind,
    Task,
)
from orchestrator.work.sla import TaskSla, calendar_for, record_event, reminder_at

__all__ = ["daily_digest_key", "reminder_due", "send_daily_digests", "send_reminder", "send_weekly_digests"]

_DIGEST_TASKS = 25  # shown per digest; the counts cover the rest


def reminder_due(task: Task, *, settings: Settings, sla: TaskSla, now: datetime) -> bool:
    """True when the lead time before due has begun and the task is not yet due."""
    when = reminder_at(task, settings=settings, calendar=sla.calendar)
    return when is not None and when <= now < task.due_at


def send_reminder(session: Session, *, task: Task, sla: TaskSla, now: datetime) -> None:
    """Remind the owner once (the `last_reminder_at` watermark and the outbox key)."""
    owner = session.get_one(Owner, task.owner_id)
    local_due = task.due_at.astimezone(sla.calendar.zone)
    outbox.enqueue_deferred(
        session, kind="notify.email", target="email", at=now, account_id=task.account_id, task_id=task.id,
        idempotency_key=f"task:{task.id}:reminder",
        payload={"to": owner.email, "subject": f"Due soon: {task.title}",
                 "body": f"Task {task.id} is due {local_due:%a %Y-%m-%d %H:%M} ({sla.calendar.timezone}).",
                 "task_id": task.id})
    task.last_reminder_at = now
    record_event(session, task=task, kind=SlaEventKind.REMINDED, at=now, detail={"to": owner.email})


def daily_digest_key(owner: Owner, day: str) -> str:
    return f"digest:daily:{owner.id}:{day}"


def send_daily_digests(session: Session, *, settings: Settings, now: datetime) -> int:
    """Each owner with open tasks gets one digest per working day, once their day has begun.

    "Begun" is their calendar's opening on their clock; a digest not sent by closing time
    (every worker down all day) is skipped rather than sent stale in the evening.
    """
    open_statuses = [str(s) for s in OPEN_STATUSES]
    due: dict[str, tuple[Owner, Any]] = {}
    # People, not tasks, are walked: a million open tasks cost nothing until someone's day begins,
    # and then indexed reads (owner_id, status) of whose tasks are open and of that person's tasks.
    for owner in session.scalars(select(Owner).where(Owner.active.is_(True)).order_by(Owner.id)):
        calendar = calendar_for(owner, settings)
        today = now.astimezone(calendar.zone).date()
        if not calendar.is_business_time(now) or not calendar.is_workday(today):
            continue
        due[daily_digest_key(owner, today.isoformat())] = (owner, calendar)
    if not due:
        return 0
    sent = set(session.scalars(select(OutboxMessage.idempotency_key)
                               .where(OutboxMessage.idempotency_key.in_(list(due)))))
    waiting = {key: value for key, value in due.items() if key not in sent}
    if not waiting:
        return 0
    ids = [owner.id for owner, _ in waiting.values()]
    busy = set(session.scalars(select(Task.owner_id).distinct().where(
        Task.owner_id.in_(ids), Task.status.in_(open_statuses))))
    reviews: dict[int, list[PlaybookReview]] = {}
    for review in session.scalars(select(PlaybookReview).where(
            PlaybookReview.owner_id.in_(ids), PlaybookReview.status == "open").order_by(PlaybookReview.due_at)):
        reviews.setdefault(review.owner_id or 0, []).append(review)
    count = 0
    for key, (owner, calendar) in waiting.items():
        if owner.id not in busy and owner.id not in reviews:
            continue
        tasks = list(session.execute(
            select(Task, Account.name).join(Account, Account.id == Task.account_id)
            .where(Task.owner_id == owner.id, Task.status.in_(open_statuses))
            .order_by(Task.due_at, Task.id))) if owner.id in busy else []
        own_reviews = reviews.get(owner.id, [])
        if not tasks and not own_reviews:
            continue
        counts = {state: sum(1 for task, _ in tasks if task.sla_state == state)
                  for state in ("on_track", "at_risk", "breached", "paused")}
        lines = [f"- [{task.sla_state}] {task.title} ({name}), due "
                 f"{task.due_at.astimezone(calendar.zone):%a %d %b %H:%M}" for task, name in tasks[:_DIGEST_TASKS]]
        if len(tasks) > _DIGEST_TASKS:
            lines.append(f"... and {len(tasks) - _DIGEST_TASKS} more")
        lines += [f"- [review] playbook {review.playbook_id} v{review.version}, due "
                  f"{review.due_at.astimezone(calendar.zone):%a %d %b %H:%M} (handoff reviews show {review.id})"
                  for review in own_reviews if review.due_at is not None]
        outbox.enqueue(
            session, kind="notify.email", target="email", at=now, idempotency_key=key,
            payload={"to": owner.email,
                     "subject": (f"Your Handoff day: {len(tasks)} open, {counts['at_risk']} at risk, "
                                 f"{counts['breached']} breached"
                                 + (f", {len(own_reviews)} playbook review" if own_reviews else "")
                                 + ("s" if len(own_reviews) > 1 else "")),
                     "body": "\n".join(lines), "digest": "daily", "counts": counts})
        count += 1
    return count


def send_weekly_digests(session: Session, *, settings: Settings, now: datetime) -> int:
    """Each category owner gets last week's fallback log, once per ISO week, at its first business hour.

    That is Monday morning on the default calendar; a Monday missed (a holiday, every worker
    down) sends it at the next business hour of the week, once, with the same week's log.
    """
    calendar = settings.calendar()
    local = now.astimezone(calendar.zone)
    if not calendar.is_business_time(now):
        return 0
    year, week, _ = local.isocalendar()
    this_monday = datetime.combine(local.date() - timedelta(days=local.weekday()), time(0), tzinfo=calendar.zone)
    week_start = this_monday.astimezone(UTC)
    rows = exception_queue.fallback_report(session, since=week_start - timedelta(days=7), until=week_start)
    owners = {settings.exception_owner: list(rows)}
    for name, category in settings.exception_categories.items():
        owners.setdefault(category.owner, [])
        owners[category.owner].extend(row for row in rows if row.category == name)
    keys = {email: f"digest:weekly:{email}:{year}-W{week:02d}" for email in owners}
    sent = set(session.scalars(select(OutboxMessage.idempotency_key)
                               .where(OutboxMessage.idempotency_key.in_(list(keys.values())))))
    count = 0
    for email, own_rows in sorted(owners.items()):
        if keys[email] in sent:
            continue
        lines = [f"- {row.category}: {row.count} raised" + (
            f", oldest open since {row.oldest_open:%Y-%m-%d}" if row.oldest_open else "") for row in own_rows]
        outbox.enqueue(
            session, kind="notify.email", target="email", at=now, idempotency_key=keys[email],
            payload={"to": email,
                     "subject": f"Handoff exceptions, week of {this_monday.date() - timedelta(days=7):%Y-%m-%d}",
                     "body": "\n".join(lines) or "No exception items last week.",
                     "digest": "weekly"})
        count += 1
    return count
