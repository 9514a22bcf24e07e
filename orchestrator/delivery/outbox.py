"""The outbox: outside writes recorded in the deciding transaction, claimed later by delivery workers.

Nothing here commits: `enqueue` joins the caller's transaction, so a decision and the
write it causes are stored together or not at all.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator import exception_queue
from orchestrator.config import Settings
from orchestrator.db import dialect_insert, skip_locked
from orchestrator.models import OutboxMessage, OutboxStatus

__all__ = ["DEFAULT_MAX_ATTEMPTS", "backoff_delay", "enqueue", "mark_delivered", "mark_failed", "pending"]

DEFAULT_MAX_ATTEMPTS = 10
_BASE_DELAY = timedelta(seconds=30)
_MAX_DELAY = timedelta(hours=6)


def enqueue(
    session: Session,
    *,
    kind: str,
    target: str,
    payload: dict[str, Any],
    idempotency_key: str,
    at: datetime,
    account_id: int | None = None,
    task_id: int | None = None,
    not_before: datetime | None = None,
) -> OutboxMessage:
    """Record an outside write once per idempotency key; a repeated key returns the first row unchanged.

    `not_before` holds delivery back (quiet hours) without holding back the decision.
    """
    statement = (
        dialect_insert(session, OutboxMessage)
        .values(kind=kind, target=target, payload=payload, idempotency_key=idempotency_key,
                account_id=account_id, task_id=task_id, status=OutboxStatus.PENDING,
                attempts=0, next_attempt_at=not_before or at, created_at=at)
        # A concurrent writer of the same key makes this a no-op instead of an IntegrityError,
        # which would otherwise abort the caller's whole transaction on PostgreSQL.
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(OutboxMessage.id)
    )
    new_id = session.execute(statement).scalar()
    if new_id is not None:
        return session.get_one(OutboxMessage, new_id)
    return session.scalars(select(OutboxMessage).where(OutboxMessage.idempotency_key == idempotency_key)).one()


def pending(session: Session, *, now: datetime, limit: int) -> list[OutboxMessage]:
    """Claim up to `limit` due messages, earliest first; on PostgreSQL rows other workers hold are skipped."""
    query = (select(OutboxMessage)
             .where(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.next_attempt_at <= now)
             .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
             .limit(limit))
    if skip_locked(session):
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def backoff_delay(attempts: int, *, base: timedelta = _BASE_DELAY, cap: timedelta = _MAX_DELAY) -> timedelta:
    """Exponential backoff after `attempts` failures: base, 2*base, 4*base, ... up to `cap`."""
    if attempts < 1:
        return timedelta(0)
    # Bound the exponent before multiplying so a huge attempt count cannot overflow timedelta.
    exponent = min(attempts - 1, 32)
    return min(base * (2 ** exponent), cap)


def mark_delivered(*, message: OutboxMessage, at: datetime, remote_id: str | None = None) -> OutboxMessage:
    """The remote side accepted the write."""
    message.status = OutboxStatus.DELIVERED
    message.delivered_at = at
    message.attempts += 1
    message.last_error = None
    if remote_id is not None:
        message.remote_id = remote_id
    return message


def mark_failed(
    *,
    session: Session,
    settings: Settings,
    message: OutboxMessage,
    at: datetime,
    error: str,
    retry_at: datetime | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> OutboxMessage:
    """Schedule a retry with backoff (or at `retry_at`, e.g. a Retry-After); past the budget it goes dead.

    A dead message raises a `delivery_failed` exception item so the lost write has an owner.
    """
    message.attempts += 1
    message.last_error = error
    if message.attempts >= max_attempts:
        message.status = OutboxStatus.DEAD
        exception_queue.raise_item(
            session, settings=settings, category=exception_queue.Category.DELIVERY_FAILED, at=at,
            message=f"{message.kind} to {message.target} failed {message.attempts} times: {error}",
            account_id=message.account_id,
            detail={"outbox_id": message.id, "idempotency_key": message.idempotency_key},
        )
    else:
        message.next_attempt_at = retry_at or at + backoff_delay(message.attempts)
    session.flush()
    return message
