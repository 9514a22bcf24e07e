"""Exception items escalate too: past its response window an item's owner is told, then the default owner.

Kept apart from `orchestrator.exception_queue` (raising, listing, the fallback report): this
is the sweep over open items whose next escalation is due, read from a partial index.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import audit
from orchestrator.config import Settings
from orchestrator.db import skip_locked, unit_of_work
from orchestrator.delivery import outbox
from orchestrator.durations import parse_duration
from orchestrator.models import ExceptionItem

__all__ = ["claim_due_items", "escalate_item", "sweep_exceptions"]

OWNER_TOLD = 1
DEFAULT_OWNER_TOLD = 2


def claim_due_items(session: Session, *, now: datetime, limit: int) -> list[ExceptionItem]:
    """Open items whose next escalation has come, oldest first; rows other workers hold are skipped."""
    query = (select(ExceptionItem)
             .where(ExceptionItem.status == "open", ExceptionItem.next_escalation_at.is_not(None),
                    ExceptionItem.next_escalation_at <= now)
             .order_by(ExceptionItem.next_escalation_at, ExceptionItem.id).limit(limit))
    if skip_locked(session):
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def escalate_item(session: Session, *, settings: Settings, item: ExceptionItem, now: datetime) -> str:
    """Take the item's next rung: its owner first, one window later the default owner. Returns who was told."""
    level = item.escalation_level + 1
    window = settings.exception_category(item.category).respond_within
    if level == OWNER_TOLD:
        to = item.owner
        # The owner gets one more window before it goes over their head.
        item.next_escalation_at = settings.calendar().add(now, parse_duration(window))
    else:
        to = settings.exception_owner or item.owner  # an item exists only where an owner was configured
        item.next_escalation_at = None
    item.escalation_level = level
    outbox.enqueue(
        session, kind="notify.email", target="email", at=now, account_id=item.account_id,
        idempotency_key=f"exception:{item.id}:escalate:{level}",
        payload={"to": to, "subject": f"Exception {item.id} ({item.category}) is past its response window",
                 "body": (f"Exception item {item.id} was due a response by {item.respond_by:%Y-%m-%d %H:%M} UTC "
                          f"(window {window}) and is still open. Owner: {item.owner}."),
                 "exception_id": item.id})
    audit.record(session, at=now, action=audit.AuditAction.EXCEPTION_ESCALATED,
                 rule=f"exception:{item.category}/escalate[{level}]",
                 reason=f"exception {item.id} past its {window} window: told {to}",
                 account_id=item.account_id, journey_id=item.journey_id,
                 detail={"exception_id": item.id, "level": level, "to": to})
    return to


def sweep_exceptions(*, sessions: sessionmaker[Session], settings: Settings, now: datetime,
                     limit: int = 200) -> int:
    """Escalate every item whose time has come, batch by batch; returns rungs taken."""
    taken = 0
    while True:
        with unit_of_work(sessions) as session:
            items = claim_due_items(session, now=now, limit=limit)
            for item in items:
                escalate_item(session, settings=settings, item=item, now=now)
            taken += len(items)
        if len(items) < limit:
            return taken
