"""Reading journeys: where accounts stand in their playbooks (the engine moves them)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.models import Account, Journey, PlaybookVersion


def list_journeys(session: Session, *, account_id: int | None = None, status: str | None = None,
                  playbook_id: str | None = None, limit: int = 100) -> list[tuple[Journey, str, int]]:
    """(journey, account name, playbook version), most recently enrolled first."""
    query = (select(Journey, Account.name, PlaybookVersion.version)
             .join(Account, Account.id == Journey.account_id)
             .join(PlaybookVersion, PlaybookVersion.id == Journey.playbook_version_id)
             .order_by(Journey.enrolled_at.desc(), Journey.id.desc()).limit(limit))
    if account_id is not None:
        query = query.where(Journey.account_id == account_id)
    if status is not None:
        query = query.where(Journey.status == status)
    if playbook_id is not None:
        query = query.where(Journey.playbook_id == playbook_id)
    return [(journey, name, version) for journey, name, version in session.execute(query)]
