"""The protected human zone: after a sensitive signal, a person handles the account's customer contact.

One query and one wording, shared by the engine (which holds customer-facing automations back)
and the decision brief (which tells the rep so, naming the signal and its date).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.models import Signal

__all__ = ["SENSITIVE_LOOKBACK", "protection_reason", "sensitive_signal"]

# A customer-facing automation is held back for this long after a sensitive signal.
SENSITIVE_LOOKBACK = timedelta(days=30)


def sensitive_signal(session: Session, *, account_id: int, types: Sequence[str], now: datetime) -> Signal | None:
    """The newest of `types` on the account within the lookback (indexed: account, type, time), or None."""
    if not types:
        return None
    return session.scalar(
        select(Signal).where(Signal.account_id == account_id, Signal.type.in_(list(types)),
                             Signal.occurred_at >= now - SENSITIVE_LOOKBACK, Signal.occurred_at <= now)
        .order_by(Signal.occurred_at.desc(), Signal.id.desc()).limit(1))


def protection_reason(signal: Signal) -> str:
    """Why customer-facing automation is held back, in the words the audit trail and the brief share."""
    return (f"protected human zone: {signal.type} on {signal.occurred_at:%Y-%m-%d}; "
            "a person handles this account's customer contact")
