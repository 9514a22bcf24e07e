"""The audit trail: record every decision with its rule, actor and reason; read an account's timeline."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from orchestrator.db import collecting
from orchestrator.models import AuditEvent

__all__ = ["AuditAction", "batched", "record", "record_after_flush", "record_many", "render_line", "render_timeline",
           "row", "timeline"]


class AuditAction(StrEnum):
    ENROLLED = "enrolled"
    NOT_ENROLLED = "not_enrolled"
    STEP_RAN = "step_ran"
    STEP_SKIPPED = "step_skipped"
    STEP_WAITING = "step_waiting"
    STEP_TIMED_OUT = "step_timed_out"
    STEP_FAILED = "step_failed"
    TASK_CREATED = "task_created"
    TASK_ACKNOWLEDGED = "task_acknowledged"
    TASK_COMPLETED = "task_completed"
    TASK_CANCELLED = "task_cancelled"
    TASK_ESCALATED = "task_escalated"
    TASK_PAUSED = "task_paused"
    TASK_RESUMED = "task_resumed"
    TASK_REASSIGNED = "task_reassigned"
    TASK_FEEDBACK = "task_feedback"
    EXCEPTION_ESCALATED = "exception_escalated"
    APPROVED = "approved"
    REJECTED = "rejected"
    OVERRIDDEN = "overridden"
    PUBLISHED = "published"
    RETRIED = "retried"
    STAGE_CHANGED = "stage_changed"
    EXITED = "exited"
    COMPLETED = "completed"
    EXCEPTION_RAISED = "exception_raised"
    EXCEPTION_RESOLVED = "exception_resolved"
    EXCEPTION_ASSIGNED = "exception_assigned"
    SIGNAL_RECEIVED = "signal_received"
    SIGNAL_REJECTED = "signal_rejected"
    PLAYBOOK_ACTIVATED = "playbook_activated"
    PLAYBOOK_PAUSED = "playbook_paused"
    PLAYBOOK_RESUMED = "playbook_resumed"
    JOURNEY_MIGRATED = "journey_migrated"
    ROUTED = "routed"  # a route step's decision: detail has score, threshold, category and path
    ROUTE_CONFIRMED = "route_confirmed"  # a person took the proposed automated path
    ROUTE_OVERTURNED = "route_overturned"  # a person decided otherwise than the proposal
    REVIEW_OPENED = "review_opened"
    REVIEW_OVERDUE = "review_overdue"
    REVIEW_DONE = "review_done"
    VARIANT_ASSIGNED = "variant_assigned"  # a split step: detail has experiment, variant, bucket
    HEALTH_DROPPED = "health_dropped"  # a health score fell by the model's rule; detail has scores and reasons
    MONITOR_FIRED = "monitor_fired"  # once per monitor, account and window; detail has the figures


def record(
    session: Session,
    *,
    at: datetime,
    action: AuditAction | str,
    reason: str,
    rule: str = "",
    actor: str = "system",
    account_id: int | None = None,
    journey_id: int | None = None,
    playbook_id: str | None = None,
    playbook_version: int | None = None,
    step_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one audit event to the caller's transaction (not flushed: events are written in batches).

    Inside `batched(session)` the event is only collected; the block writes all of them with
    one statement when it ends.
    """
    buffer = session.info.get(_BUFFER)
    if buffer is not None:
        buffer.append(row(at=at, action=action, reason=reason, rule=rule, actor=actor, account_id=account_id,
                               journey_id=journey_id, playbook_id=playbook_id, playbook_version=playbook_version,
                               step_id=step_id, detail=detail))
        return
    session.add(AuditEvent(**row(
        at=at, action=action, reason=reason, rule=rule, actor=actor, account_id=account_id,
        journey_id=journey_id, playbook_id=playbook_id, playbook_version=playbook_version,
        step_id=step_id, detail=detail,
    )))


def record_after_flush(session: Session, make_row: Callable[[], dict[str, Any]]) -> bool:
    """Inside `batched`, add the event `make_row()` returns once the block has flushed; False outside one.

    For an event that names a row's id before the row is written (an exception item added
    to the session unflushed): the id is read when the block writes its events, after its flush.
    """
    buffer = session.info.get(_BUFFER)
    if buffer is None:
        return False
    buffer.append(make_row)
    return True


def row(
    *,
    at: datetime,
    action: AuditAction | str,
    reason: str,
    rule: str = "",
    actor: str = "system",
    account_id: int | None = None,
    journey_id: int | None = None,
    playbook_id: str | None = None,
    playbook_version: int | None = None,
    step_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One audit event as a row for `record_many` (every column given, so a batch is one executemany)."""
    return {"at": at, "action": str(action), "reason": reason, "rule": rule, "actor": actor,
            "account_id": account_id, "journey_id": journey_id, "playbook_id": playbook_id,
            "playbook_version": playbook_version, "step_id": step_id, "detail": dict(detail or {})}


def record_many(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Write these events (`row(...)`) now, with one executemany, in the caller's transaction."""
    if rows:
        session.execute(insert(cast(Table, AuditEvent.__table__)), list(rows))


_BUFFER = "handoff.audit_buffer"


@contextmanager
def batched(session: Session) -> Iterator[None]:
    """Collect the events recorded in the block and write them with one executemany at its end.

    They keep the order they were recorded in; events recorded inside a savepoint that is
    rolled back are dropped with it, as if they had been flushed. Nobody may read the
    audit trail inside the block (the events are not in the database yet). Nested blocks
    join the outer one.
    """
    def write(rows: list[dict[str, Any] | Callable[[], dict[str, Any]]]) -> None:
        session.flush()  # what the events name (journeys, items) is in the database first
        record_many(session, [event() if callable(event) else event for event in rows])

    with collecting(session, _BUFFER, write):
        yield


def timeline(session: Session, *, account_id: int) -> list[AuditEvent]:
    """An account's audit events, oldest first (ties in the order they were recorded)."""
    query = (select(AuditEvent).where(AuditEvent.account_id == account_id)
             .order_by(AuditEvent.at, AuditEvent.id))
    return list(session.scalars(query))


def render_line(event: AuditEvent) -> str:
    """One event as `2026-11-23 14:00Z  onboard-kickoff v1  kickoff-call  task_created  by system  [rule] reason`."""
    when = event.at.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")
    playbook = event.playbook_id or "-"
    if event.playbook_id and event.playbook_version is not None:
        playbook = f"{event.playbook_id} v{event.playbook_version}"
    parts = [when, playbook, event.step_id or "-", event.action, f"by {event.actor}"]
    tail = " ".join(p for p in (f"[{event.rule}]" if event.rule else "", event.reason) if p)
    if tail:
        parts.append(tail)
    return "  ".join(parts)


def render_timeline(events: Iterable[AuditEvent]) -> list[str]:
    """Plain-text lines, one per event, for terminals and CRM notes."""
    return [render_line(event) for event in events]
