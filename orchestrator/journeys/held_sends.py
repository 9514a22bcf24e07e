"""Held sends, at release: may an on-the-loop customer email still go once its override window ends?

The engine holds the email in the outbox (`steps._hold`) and checks the account when it
decides. Hours can pass before the window ends: a sensitive signal (the playbook's
`sensitive_signals`: the protected human zone) or the journey leaving early (an `exit_on`
signal such as a churn, or an operator ending it) means a person now owns that contact, so
the email must not leave. Delivery asks this check when it first claims the row, inside the
claiming transaction (`outbox.claim`), so the row is either leased for sending or cancelled,
never both; here the journey side is tidied (the step run says why, the touch is given back).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator import audit
from orchestrator.audit import AuditAction
from orchestrator.delivery import outbox
from orchestrator.journeys import governance
from orchestrator.models import AuditEvent, Journey, JourneyStatus, OutboxMessage, PlaybookVersion, StepRun, StepStatus
from orchestrator.playbook.store import compiled
from orchestrator.work.protection import protection_reason, sensitive_signal

__all__ = ["CHECK", "release_check"]

CHECK = "journeys.held_send"


def release_check(session: Session, message: OutboxMessage, now: datetime) -> str | None:
    """Why the held message must not go now (and the journey side tidied), or None: it goes."""
    step_run = session.get(StepRun, int(message.payload[outbox.HELD]["step_run_id"]))
    if step_run is None:
        return "its journey no longer exists"
    journey = step_run.journey
    why = _why_not(session, journey=journey, now=now)
    if why is None:
        return None
    step_run.status = StepStatus.SKIPPED
    step_run.override_until = None
    step_run.reason = f"held {message.kind} cancelled unsent at release: {why}"
    step_run.outcome = {**step_run.outcome, "cancelled_at_release": now.isoformat(), "cancel_reason": why}
    governance.give_back_touch(session, journey_id=journey.id, step_id=step_run.step_id, action=message.kind,
                               at=step_run.started_at)
    version = session.get(PlaybookVersion, journey.playbook_version_id)
    audit.record(session, at=now, action=AuditAction.STEP_SKIPPED, rule="oversight.on_the_loop",
                 reason=f"{message.kind} held in the outbox (message {message.id}) was not sent: {why}",
                 account_id=journey.account_id, journey_id=journey.id, playbook_id=journey.playbook_id,
                 playbook_version=version.version if version else None, step_id=step_run.step_id)
    return why


def _why_not(session: Session, *, journey: Journey, now: datetime) -> str | None:
    left = _left_early(session, journey=journey)
    if left is not None:
        return left
    version = session.get(PlaybookVersion, journey.playbook_version_id)
    if version is None:
        return None
    signal = sensitive_signal(session, account_id=journey.account_id, types=compiled(version).sensitive_signals,
                              now=now)
    return protection_reason(signal) if signal is not None else None


def _left_early(session: Session, *, journey: Journey) -> str | None:
    """The journey was ended from outside its flow (exit_on signal, an operator): its emails stay unsent.

    Reaching an exit step or the end right after the held step is the flow going on as
    planned (the email is part of it), so only an exit whose rule is not "flow" counts.
    """
    if journey.ended_at is None or journey.status != JourneyStatus.EXITED:
        return None
    rule = session.scalar(select(AuditEvent.rule).where(
        AuditEvent.journey_id == journey.id, AuditEvent.action == AuditAction.EXITED)
        .order_by(AuditEvent.id.desc()).limit(1))
    if rule is None or rule == "flow":
        return None
    return f"the journey ended on {journey.ended_at:%Y-%m-%d} ({journey.end_reason})"


outbox.register_release_check(CHECK, release_check)
