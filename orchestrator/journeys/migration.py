"""Journey migration: move running journeys to another version of their playbook.

Modelled on Camunda's process instance migration: a journey moves when the step it stands on
exists in the target version under the same id and of the same kind, so whatever it waits on
(a signal, a task, an approval, a timeout) still means the same thing; everything else about
the journey (its context, its deadline, its open tasks) is kept. A journey that cannot move is
reported with the reason and left exactly as it is. Each move is audited as
`journey_migrated` with both versions. Nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator import audit
from orchestrator.errors import NotFound
from orchestrator.journeys.steps import fresh, lock_accounts
from orchestrator.models import Journey, JourneyStatus, PlaybookVersion
from orchestrator.playbook.model import WaitStep
from orchestrator.playbook.store import compiled

__all__ = ["Migration", "MigrationReport", "migrate_journey", "migrate_journeys", "target_version"]


@dataclass(frozen=True)
class Migration:
    """One journey considered for a move: moved (or movable, in a dry run) or not, and why."""

    journey_id: int
    account_id: int
    step_id: str | None
    status: str
    from_version: int
    moved: bool
    reason: str = ""


@dataclass
class MigrationReport:
    playbook_id: str
    to_version: int
    dry_run: bool
    journeys: list[Migration] = field(default_factory=list)

    @property
    def moved(self) -> list[Migration]:
        return [m for m in self.journeys if m.moved]

    @property
    def blocked(self) -> list[Migration]:
        return [m for m in self.journeys if not m.moved]


def target_version(session: Session, *, playbook_id: str, version: int | None) -> PlaybookVersion:
    """The stored version `version` of the playbook, or its active one when `version` is None."""
    query = select(PlaybookVersion).where(PlaybookVersion.playbook_id == playbook_id)
    query = query.where(PlaybookVersion.active) if version is None else \
        query.where(PlaybookVersion.version == version)
    found = session.scalars(query).first()
    if found is None:
        known = session.scalars(select(PlaybookVersion.version).where(PlaybookVersion.playbook_id == playbook_id)
                                .order_by(PlaybookVersion.version)).all()
        if not known:
            raise NotFound(f"no playbook {playbook_id!r} has been applied")
        wanted = "an active version" if version is None else f"version {version}"
        raise NotFound(f"playbook {playbook_id!r} has no {wanted} (stored: {', '.join(map(str, known))})")
    return found


def migrate_journeys(*, session: Session, playbook_id: str, to_version: int, actor: str, now: datetime,
                     dry_run: bool = False) -> MigrationReport:
    """Move every open journey of the playbook to `to_version` where its current step exists there.

    With `dry_run`, nothing changes: the report says what would move and what would not.
    """
    target = target_version(session, playbook_id=playbook_id, version=to_version)
    report = MigrationReport(playbook_id=playbook_id, to_version=target.version, dry_run=dry_run)
    rows = session.execute(
        select(Journey.id, Journey.account_id)
        .where(Journey.playbook_id == playbook_id, Journey.ended_at.is_(None),
               Journey.playbook_version_id != target.id)
        .order_by(Journey.id)).all()
    for journey_id, account_id in rows:
        if not dry_run:
            lock_accounts(session, [account_id])
        journey = fresh(session, Journey, journey_id)
        if journey is None or journey.ended_at is not None or journey.playbook_version_id == target.id:
            continue  # moved on (or ended) since the query above
        report.journeys.append(_move(session, journey, target, actor=actor, now=now, dry_run=dry_run))
    return report


def migrate_journey(*, session: Session, journey: Journey, target: PlaybookVersion, actor: str,
                    now: datetime) -> Migration:
    """Move one journey (the caller holds its account's lock); a journey already there is left alone."""
    return _move(session, journey, target, actor=actor, now=now, dry_run=False)


def _move(session: Session, journey: Journey, target: PlaybookVersion, *, actor: str, now: datetime,
          dry_run: bool) -> Migration:
    source = session.get_one(PlaybookVersion, journey.playbook_version_id)
    why_not = _why_not(journey, source, target)
    result = Migration(journey_id=journey.id, account_id=journey.account_id, step_id=journey.current_step_id,
                       status=journey.status, from_version=source.version, moved=why_not is None,
                       reason=why_not or "")
    if why_not is not None or dry_run or source.id == target.id:
        return result
    step = compiled(target).step(journey.current_step_id or "")
    journey.playbook_version_id = target.id
    if isinstance(step, WaitStep) and journey.status == JourneyStatus.WAITING:
        journey.wait_signal = step.signal  # the new version may wait for another signal at that step
    audit.record(session, at=now, action=audit.AuditAction.JOURNEY_MIGRATED, actor=actor, rule="operator",
                 account_id=journey.account_id, journey_id=journey.id, playbook_id=journey.playbook_id,
                 playbook_version=target.version, step_id=journey.current_step_id,
                 reason=f"{actor} moved the journey from version {source.version} to {target.version} "
                        f"at step {journey.current_step_id}",
                 detail={"from_version": source.version, "to_version": target.version})
    session.flush()
    return result


def _why_not(journey: Journey, source: PlaybookVersion, target: PlaybookVersion) -> str | None:
    step_id = journey.current_step_id
    if step_id is None:
        return "the journey has not reached a step yet"
    new_steps = {step.id: step for step in compiled(target).steps}
    if step_id not in new_steps:
        return f'step "{step_id}" does not exist in version {target.version}'
    old_steps = {step.id: step for step in compiled(source).steps}
    old, new = old_steps.get(step_id), new_steps[step_id]
    if old is not None and old.kind != new.kind:
        return (f'step "{step_id}" changed kind from {old.kind} (version {source.version}) to {new.kind} '
                f"(version {target.version}); what the journey waits on would change meaning")
    return None
