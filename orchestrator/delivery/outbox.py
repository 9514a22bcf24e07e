"""The outbox: outside writes recorded in the deciding transaction, claimed later by delivery workers.

Nothing here commits: `enqueue` joins the caller's transaction, so a decision and the
write it causes are stored together or not at all. `enqueue` also names the connector
that will deliver the message (`delivery.routing`).

Delivery workers (`delivery.deliver`) take messages by lease: `claim` stamps `claimed_by`
and `claimed_until` in a short transaction the caller commits before any remote call, so
no row lock is ever held across an HTTP request; a worker that dies leaves its messages to
be claimed again when the lease runs out. The remote side is idempotent on the message's
key, so a message pushed by a worker that died before recording it is not doubled.

A *held* message (`payload["held"]`, an on-the-loop customer email waiting out its override
window) is looked at again when it is first claimed: the check its payload names (registered
by the layer that held it, `register_release_check`) says whether it may still go. If not, it
is cancelled unsent in the claiming transaction, under the same row lock, so it is never both
leased and cancelled.
"""

from __future__ import annotations

import importlib
import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, or_, select
from sqlalchemy.orm import Session

from orchestrator import audit, exception_queue
from orchestrator.config import Settings
from orchestrator.db import NO_AUTOFLUSH, SavepointBuffer, collecting, insert_ignoring, skip_locked
from orchestrator.delivery.routing import route_for
from orchestrator.errors import Conflict, NotFound
from orchestrator.models import Journey, OutboxMessage, OutboxStatus, PlaybookVersion

__all__ = ["DEFAULT_MAX_ATTEMPTS", "HELD", "ReleaseCheck", "backoff_delay", "cancel", "claim", "deferred", "enqueue",
           "enqueue_deferred", "jittered", "mark_delivered", "mark_failed", "pending", "register_release_check",
           "requeue"]

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 10
_BASE_DELAY = timedelta(seconds=30)
_UNCHECKED_RETRY = timedelta(hours=1)
_MAX_DELAY = timedelta(hours=6)

# payload["held"] = {"check": NAME, ...}: a message that must be re-checked before it leaves.
HELD = "held"
# (session, message, now) -> why it must not go now (it is cancelled), or None (it goes).
ReleaseCheck = Callable[[Session, OutboxMessage, datetime], str | None]
_RELEASE_CHECKS: dict[str, ReleaseCheck] = {}
# Modules that register release checks; imported by name on first need (as the job registry
# does), so delivery depends on none of the layers that hold messages.
RELEASE_CHECK_MODULES = ["orchestrator.journeys.held_sends"]


def register_release_check(name: str, check: ReleaseCheck) -> None:
    """Name the check a held message's payload refers to (`payload["held"]["check"]`)."""
    _RELEASE_CHECKS[name] = check


def _release_check(name: str) -> ReleaseCheck | None:
    if name not in _RELEASE_CHECKS:
        for module in RELEASE_CHECK_MODULES:
            importlib.import_module(module)
    return _RELEASE_CHECKS.get(name)


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
    connector: str | None = None,
) -> OutboxMessage:
    """Record an outside write once per idempotency key; a repeated key returns the first row unchanged.

    `not_before` holds delivery back (quiet hours) without holding back the decision. The
    connector is chosen here, from the account's source system and the deployment's routing,
    unless the caller names one.
    """
    connector = connector or route_for(session, target=target, account_id=account_id)
    waiting: SavepointBuffer | None = session.info.get(_DEFERRED)
    if waiting is not None:
        _write_deferred(session, waiting.take())  # messages keep their ids in the order they were made
    statement = (
        # Cacheable ON CONFLICT DO NOTHING: a concurrent writer of the same key makes this a
        # no-op instead of an IntegrityError, which would abort the caller's whole transaction
        # on PostgreSQL. RETURNING the row saves reading it back.
        insert_ignoring(session, OutboxMessage, conflict=["idempotency_key"])
        .values(kind=kind, target=target, payload=payload, idempotency_key=idempotency_key, connector=connector,
                account_id=account_id, task_id=task_id, status=OutboxStatus.PENDING,
                attempts=0, next_attempt_at=not_before or at, created_at=at)
        .returning(OutboxMessage)
    )
    # The row names only rows already written (its account, its task); the session's other
    # changes wait for their own flush instead of being written ahead of this insert.
    new = session.scalars(statement, execution_options=NO_AUTOFLUSH).first()
    if new is not None:
        return new
    return session.scalars(select(OutboxMessage).where(OutboxMessage.idempotency_key == idempotency_key)).one()


_DEFERRED = "handoff.outbox.deferred"


def enqueue_deferred(
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
    connector: str | None = None,
) -> None:
    """`enqueue` for callers that need no row back: inside `deferred` it waits for the block's one INSERT."""
    buffer = session.info.get(_DEFERRED)
    if buffer is None:
        enqueue(session, kind=kind, target=target, payload=payload, idempotency_key=idempotency_key, at=at,
                account_id=account_id, task_id=task_id, not_before=not_before, connector=connector)
        return
    buffer.append({
        "kind": kind, "target": target, "payload": payload, "idempotency_key": idempotency_key,
        "connector": connector or route_for(session, target=target, account_id=account_id),
        "account_id": account_id, "task_id": task_id, "status": str(OutboxStatus.PENDING), "attempts": 0,
        "next_attempt_at": not_before or at, "created_at": at,
    })


@contextmanager
def deferred(session: Session) -> Iterator[None]:
    """Messages from `enqueue_deferred` in the block are written together (one executemany) when it succeeds.

    The same key twice is still one message: ON CONFLICT DO NOTHING covers rows of the same statement.
    Messages collected inside a savepoint that rolls back are dropped with it.
    """
    with collecting(session, _DEFERRED, lambda rows: _write_deferred(session, rows)):
        yield


def _write_deferred(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        table = cast(Table, OutboxMessage.__table__)
        session.execute(insert_ignoring(session, table, conflict=["idempotency_key"]), rows)


def pending(session: Session, *, now: datetime, limit: int) -> list[OutboxMessage]:
    """Claim up to `limit` due messages, earliest first; on PostgreSQL rows other workers hold are skipped."""
    query = (select(OutboxMessage)
             .where(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.next_attempt_at <= now)
             .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
             .limit(limit))
    if skip_locked(session):
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def claim(
    session: Session,
    *,
    now: datetime,
    worker_id: str,
    lease: timedelta,
    limit: int,
    connector: str | None = None,
) -> list[OutboxMessage]:
    """Lease up to `limit` due messages to `worker_id` until `now + lease`, earliest first.

    Due: pending, past `next_attempt_at`, and not under someone else's live lease. The
    caller commits right away; on PostgreSQL the row locks (SKIP LOCKED) last only for this
    short transaction, on SQLite the write lock taken at BEGIN serialises claims.
    """
    query = (select(OutboxMessage)
             .where(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.next_attempt_at <= now,
                    or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until <= now))
             .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
             .limit(limit))
    if connector is not None:
        query = query.where(OutboxMessage.connector == connector)
    if skip_locked(session):
        query = query.with_for_update(skip_locked=True)
    messages = [m for m in session.scalars(query) if _may_leave(session, message=m, now=now)]
    for message in messages:
        message.claimed_by = worker_id
        message.claimed_until = now + lease
    session.flush()
    return messages


def _may_leave(session: Session, *, message: OutboxMessage, now: datetime) -> bool:
    """A held message's first claim asks its release check; one that must not go is cancelled here."""
    held = (message.payload or {}).get(HELD)
    # A lease that ran out may mean it was pushed already: only a never-claimed message is re-checked.
    if not isinstance(held, dict) or message.claimed_by is not None:
        return True
    check = _release_check(str(held.get("check")))
    if check is None:
        # Fail closed: an email must not leave unchecked. It stays pending (a deployment fault, logged).
        log.error("outbox message %s names release check %r, which nothing registers", message.id,
                  held.get("check"))
        # Asked again later, not on every claim: stuck rows at the head must not starve the rest.
        message.next_attempt_at = now + _UNCHECKED_RETRY
        return False
    why = check(session, message, now)
    if why is None:
        return True
    _cancel(session, message=message, actor="system", at=now, rule="outbox.release_check",
            reason=f"held {message.kind} (outbox message {message.id}) cancelled unsent at release: {why}")
    return False


def jittered(delay: timedelta, *, rng: random.Random | None = None) -> timedelta:
    """`delay` spread over [delay/2, delay] so workers that failed together do not retry together."""
    fraction = (rng or random).uniform(0.5, 1.0)
    return delay * fraction


def backoff_delay(attempts: int, *, base: timedelta = _BASE_DELAY, cap: timedelta = _MAX_DELAY) -> timedelta:
    """Exponential backoff after `attempts` failures: base, 2*base, 4*base, ... up to `cap`."""
    if attempts < 1:
        return timedelta(0)
    # Bound the exponent before multiplying so a huge attempt count cannot overflow timedelta.
    exponent = min(attempts - 1, 32)
    return min(base * (2 ** exponent), cap)


def mark_delivered(*, message: OutboxMessage, at: datetime, remote_id: str | None = None) -> OutboxMessage:
    """The remote side accepted the write."""
    _release(message)
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
    permanent: bool = False,
) -> OutboxMessage:
    """Schedule a retry with backoff (or at `retry_at`, e.g. a Retry-After); past the budget it goes dead.

    A `permanent` failure (the remote side refused the item itself) goes dead at once. A dead
    message raises a `delivery_failed` exception item so the lost write has an owner.
    """
    _release(message)
    message.attempts += 1
    message.last_error = error
    if permanent or message.attempts >= max_attempts:
        message.status = OutboxStatus.DEAD
        why = "was refused" if permanent else f"failed {message.attempts} times"
        via = f" via {message.connector}" if message.connector else ""
        exception_queue.raise_item(
            session, settings=settings, category=exception_queue.Category.DELIVERY_FAILED, at=at,
            message=f"{message.kind} to {message.target}{via} {why}: {error}",
            account_id=message.account_id,
            detail={"outbox_id": message.id, "idempotency_key": message.idempotency_key,
                    "connector": message.connector, "permanent": permanent},
        )
    else:
        message.next_attempt_at = retry_at or at + backoff_delay(message.attempts)
    session.flush()
    return message


def _release(message: OutboxMessage) -> None:
    message.claimed_by = None
    message.claimed_until = None


def requeue(session: Session, *, message_id: int, actor: str, at: datetime) -> OutboxMessage:
    """Put a dead (or cancelled) message back on the queue, due now, with a fresh retry budget (audited)."""
    message = _get(session, message_id)
    if message.status not in (OutboxStatus.DEAD, OutboxStatus.CANCELLED):
        raise Conflict(f"outbox message {message_id} is {message.status}; only dead or cancelled ones are retried")
    before = message.status
    message.status = OutboxStatus.PENDING
    message.attempts = 0
    message.next_attempt_at = at
    _release(message)
    audit.record(session, at=at, action="outbox_requeued", actor=actor, rule="outbox",
                 reason=f"{actor} requeued {before} outbox message {message_id} ({message.kind})",
                 account_id=message.account_id, detail={"outbox_id": message_id, "was": before})
    session.flush()
    return message


def cancel(session: Session, *, message_id: int, actor: str, at: datetime) -> OutboxMessage:
    """Take a pending or dead message off the queue for good (audited); a delivered one cannot be."""
    message = _get(session, message_id)
    if message.status not in (OutboxStatus.PENDING, OutboxStatus.DEAD):
        raise Conflict(f"outbox message {message_id} is {message.status}; only pending or dead ones are cancelled")
    if message.claimed_until is not None and message.claimed_until > at:
        raise Conflict(f"outbox message {message_id} is being delivered right now; try again in a minute")
    _cancel(session, message=message, actor=actor, at=at, rule="outbox",
            reason=f"{actor} cancelled {message.status} outbox message {message_id} ({message.kind})")
    session.flush()
    return message


def _cancel(session: Session, *, message: OutboxMessage, actor: str, at: datetime, rule: str, reason: str) -> None:
    before = message.status
    message.status = OutboxStatus.CANCELLED
    _release(message)
    journey_id = (message.payload or {}).get("journey_id")
    journey = session.get(Journey, journey_id) if isinstance(journey_id, int) else None
    # A journey's events name the playbook version that ran it, so its timeline says which rule and why.
    version = session.get(PlaybookVersion, journey.playbook_version_id) if journey else None
    audit.record(session, at=at, action="outbox_cancelled", actor=actor, rule=rule, reason=reason,
                 account_id=message.account_id, journey_id=journey.id if journey else None,
                 playbook_id=journey.playbook_id if journey else None,
                 playbook_version=version.version if version else None,
                 detail={"outbox_id": message.id, "was": before})


def _get(session: Session, message_id: int) -> OutboxMessage:
    query = select(OutboxMessage).where(OutboxMessage.id == message_id)
    if skip_locked(session):
        query = query.with_for_update()
    message = session.scalars(query).first()
    if message is None:
        raise NotFound(f"no outbox message {message_id}")
    return message
