"""The email suppression list: addresses that get no mail (bounced, unsubscribed, complained).

The smtp connector asks `suppressed` before every send; a hit makes the message dead
with the reason, never retried. Operators add and remove entries with
`handoff email suppress|unsuppress`; a hard bounce at send time adds one itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from orchestrator.db import dialect_insert
from orchestrator.errors import Invalid
from orchestrator.models import EmailSuppression, SuppressionReason

__all__ = ["add", "entries", "normalize", "remove", "suppressed"]


def normalize(address: str) -> str:
    """The form addresses are stored and compared in: trimmed, lower-cased; Invalid when not an address."""
    text = address.strip().lower()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or " " in text or "." not in domain:
        raise Invalid(f'"{address.strip()}" is not an email address', field="address")
    return text


def add(session: Session, *, address: str, reason: str, at: datetime, note: str | None = None,
        by: str = "system") -> bool:
    """Suppress `address`; False when it already was (the first entry and its reason stay)."""
    if reason not in {r.value for r in SuppressionReason}:
        choices = ", ".join(r.value for r in SuppressionReason)
        raise Invalid(f'"{reason}" is not a suppression reason; use {choices}', field="reason")
    statement = (dialect_insert(session, EmailSuppression)
                 .values(address=normalize(address), reason=reason, note=note, created_by=by, created_at=at)
                 .on_conflict_do_nothing(index_elements=["address"])
                 .returning(EmailSuppression.id))
    return session.execute(statement).scalar() is not None


def remove(session: Session, *, address: str) -> bool:
    """Lift the suppression; False when the address was not suppressed."""
    result = session.execute(delete(EmailSuppression).where(EmailSuppression.address == normalize(address)))
    return bool(getattr(result, "rowcount", 0))


def suppressed(session: Session, *, addresses: Iterable[str]) -> dict[str, EmailSuppression]:
    """The entries among `addresses`, keyed by normalized address."""
    wanted = set()
    for address in addresses:
        try:
            wanted.add(normalize(address))
        except Invalid:
            continue
    if not wanted:
        return {}
    rows = session.scalars(select(EmailSuppression).where(EmailSuppression.address.in_(sorted(wanted))))
    return {row.address: row for row in rows}


def entries(session: Session, *, limit: int = 1000) -> list[EmailSuppression]:
    """The list, newest first."""
    return list(session.scalars(select(EmailSuppression)
                                .order_by(EmailSuppression.created_at.desc(), EmailSuppression.id.desc())
                                .limit(limit)))
