"""Journey stages: moving an account around the loop, with time in stage recorded."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from orchestrator import audit
from orchestrator.audit import AuditAction
from orchestrator.errors import HandoffError
from orchestrator.models import Account, Journey, JourneyStage, StageChange


class StageError(HandoffError):
    """A stage name that is not one of the loop's five (e.g. rendered from CRM data)."""


def change_stage(session: Session, *, account: Account, to: str, at: datetime, reason: str,
                 journey: Journey | None = None, playbook_version: int | None = None,
                 rule: str = "", actor: str = "system") -> StageChange | None:
    """Move `account` to stage `to`; None if it is already there (no event, no audit)."""
    try:
        target = JourneyStage(to)
    except ValueError:
        stages = ", ".join(stage.value for stage in JourneyStage)
        raise StageError(f'"{to}" is not a journey stage; use one of {stages}') from None
    if account.stage == target:
        return None
    seconds = int((at - account.stage_entered_at).total_seconds())
    change = StageChange(account_id=account.id, from_stage=account.stage, to_stage=target, at=at,
                         seconds_in_previous=max(seconds, 0),
                         journey_id=journey.id if journey else None, reason=reason)
    session.add(change)
    audit.record(session, at=at, action=AuditAction.STAGE_CHANGED, rule=rule, actor=actor,
                 reason=f"{account.stage} -> {target}: {reason}", account_id=account.id,
                 journey_id=journey.id if journey else None,
                 playbook_id=journey.playbook_id if journey else None,
                 playbook_version=playbook_version,
                 detail={"from": account.stage, "to": str(target), "seconds_in_previous": seconds})
    account.stage = target
    account.stage_entered_at = at
    return change
