"""Governance for automated customer-facing actions: touch caps and quiet hours.

Caps count `CustomerTouch` rows, one per automated customer-facing action, so the
limit holds across every playbook that talks to the same account. The engine asks
`touch_block_reason` before such an action and calls `record_touch` after it, in
the same transaction; on PostgreSQL the check locks the account row so two workers
cannot both take the last free touch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.durations import GovernanceError, parse_quiet_hours, parse_touch_cap
from orchestrator.models import Account, CustomerTouch, Journey
from orchestrator.playbook.model import TouchLimit

if TYPE_CHECKING:
    from orchestrator.config import Settings

__all__ = [
    "GovernanceError",
    "in_quiet_hours",
    "parse_quiet_hours",
    "parse_touch_cap",
    "quiet_hours_end",
    "give_back_touch",
    "record_touch",
    "touch_block_reason",
]

def touch_block_reason(
    session: Session,
    *,
    account_id: int,
    now: datetime,
    settings: Settings,
    playbook_limit: TouchLimit | None = None,
    playbook_id: str | None = None,
) -> str | None:
    """Why an automated customer touch must not happen now, or None when it may.

    The global cap (`settings.customer_touch_cap`) counts the account's touches from
    every playbook. A playbook's own limit counts the touches that playbook's journeys
    made to this account, or all of them when no playbook id is given.
    """
    # Serialise cap checks per account: the count below and the caller's
    # record_touch must not interleave with another worker's (no-op on SQLite,
    # which has a single writer anyway).
    session.execute(select(Account.id).where(Account.id == account_id).with_for_update())

    if settings.touch_cap is not None:
        count, period = settings.touch_cap
        used = _touches_since(session, account_id=account_id, since=now - period.calendar, until=now)
        if used >= count:
            return (
                f"customer-touch cap reached: {used} automated touches in the last {period} "
                f"(limit {count} per {period}, all playbooks)"
            )
    if playbook_limit is not None:
        count, period = playbook_limit.count, playbook_limit.period
        used = _touches_since(session, account_id=account_id, since=now - period.calendar, until=now,
                              playbook_id=playbook_id)
        if used >= count:
            scope = f"playbook {playbook_id}" if playbook_id else "playbook limit"
            return (
                f"customer-touch cap reached: {used} automated touches in the last {period} "
                f"(limit {count} per {period}, {scope})"
            )
    return None


def record_touch(
    session: Session, *, account_id: int, journey_id: int | None, step_id: str, action: str, at: datetime
) -> CustomerTouch:
    """Count one automated customer-facing action against the account's caps."""
    touch = CustomerTouch(account_id=account_id, journey_id=journey_id, step_id=step_id, action=action, at=at)
    session.add(touch)
    return touch


def give_back_touch(session: Session, *, journey_id: int, step_id: str, action: str, at: datetime) -> None:
    """Take back the touch a held action counted when it was decided: it was cancelled unsent."""
    touch = session.scalar(select(CustomerTouch).where(
        CustomerTouch.journey_id == journey_id, CustomerTouch.step_id == step_id,
        CustomerTouch.action == action, CustomerTouch.at == at).limit(1))
    if touch is not None:
        session.delete(touch)


def _touches_since(
    session: Session, *, account_id: int, since: datetime, until: datetime, playbook_id: str | None = None
) -> int:
    query = select(func.count(CustomerTouch.id)).where(
        CustomerTouch.account_id == account_id, CustomerTouch.at > since, CustomerTouch.at <= until
    )
    if playbook_id is not None:
        query = query.join(Journey, Journey.id == CustomerTouch.journey_id).where(
            Journey.playbook_id == playbook_id
        )
    return session.scalar(query) or 0


# -- quiet hours ------------------------------------------------------------------


def in_quiet_hours(at: datetime, settings: Settings) -> bool:
    """True when `at` falls inside the configured quiet hours (local to `quiet_hours_timezone`)."""
    if settings.quiet_window is None:
        return False
    start, end = settings.quiet_window
    local = at.astimezone(settings.quiet_zone).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end  # wraps midnight


def quiet_hours_end(at: datetime, settings: Settings) -> datetime:
    """When the quiet hours around `at` end (in UTC); `at` itself when it is not quiet."""
    if not in_quiet_hours(at, settings):
        return at
    assert settings.quiet_window is not None  # in_quiet_hours said so
    _, end = settings.quiet_window
    zone = settings.quiet_zone
    local = at.astimezone(zone)
    candidate = datetime.combine(local.date(), end, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=zone)
    return candidate.astimezone(UTC)
