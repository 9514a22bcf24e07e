"""The audit trail: record every decision with its rule, actor and reason; read an account's timeline."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from orchestrator.models import AuditEvent

__all__ = ["AuditAction", "record", "record_many", "render_line", "render_timeline", "row", "timeline"]


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
) -> AuditEvent:
    """Add one audit event to the caller's transaction (not flushed: events are written in batches)."""
    event = AuditEvent(
        at=at, action=str(action), reason=reason, rule=rule, actor=actor,
        account_id=account_id, journey_id=journey_id, playbook_id=playbook_id,
        playbook_version=playbook_version, step_id=step_id, detail=dict(detail or {}),
    )
    session.add(event)
    return event


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
