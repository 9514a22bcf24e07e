"""Pausing a playbook: no new enrollments; running journeys continue, or are parked, by choice.

A pause is a `playbook_pauses` row; the engine leaves paused playbooks out of enrollment
(`steps.Run.playbooks`), whichever version is active, so applying or activating a version does
not lift it. With `park_running`, every open journey of the playbook is parked in the exception
queue (category configuration) and remembered on the pause with the wait each had; `resume`
puts exactly those back where they were. Both are audited. Nothing here
commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator import audit, exception_queue
from orchestrator.config import Settings
from orchestrator.errors import Conflict
from orchestrator.exception_queue import Category
from orchestrator.journeys.steps import Run, fresh, lock_accounts, park, playbook_of
from orchestrator.models import OPEN_STATUSES, Journey, JourneyStatus, PlaybookPause, StepRun, StepStatus, Task
from orchestrator.playbook.store import playbook_history

__all__ = ["PauseReport", "pause_playbook", "paused_ids", "resume_playbook"]


@dataclass
class PauseReport:
    playbook_id: str
    parked: list[int] = field(default_factory=list)  # journeys parked by the pause
    resumed: list[int] = field(default_factory=list)  # journeys waiting again after resume
    left: list[int] = field(default_factory=list)  # parked journeys resume could not put back (see resume)
    running: int = 0  # open journeys left running


def paused_ids(session: Session) -> set[str]:
    """The ids of the playbooks that are paused now."""
    return set(session.scalars(select(PlaybookPause.playbook_id)))


def pause_playbook(*, session: Session, settings: Settings, playbook_id: str, actor: str, now: datetime,
                   reason: str = "", park_running: bool = False) -> PauseReport:
    """Stop new enrollments in the playbook; with `park_running`, park its open journeys too (audited)."""
    version = next(v for v in playbook_history(session=session, playbook_id=playbook_id))  # NotFound if none
    if session.scalar(select(PlaybookPause.id).where(PlaybookPause.playbook_id == playbook_id)) is not None:
        raise Conflict(f"playbook {playbook_id!r} is already paused; resume it first")
    report = PauseReport(playbook_id=playbook_id)
    held: list[dict[str, Any]] = []
    open_journeys = session.execute(select(Journey.id, Journey.account_id).where(
        Journey.playbook_id == playbook_id, Journey.ended_at.is_(None)).order_by(Journey.id)).all()
    if park_running:
        run = Run(session, settings, now)
        for journey_id, account_id in open_journeys:
            lock_accounts(session, [account_id])
            journey = fresh(session, Journey, journey_id)
            if journey is None or journey.ended_at is not None or journey.status == JourneyStatus.STALLED \
                    or journey.current_step_id is None:
                continue  # ended meanwhile, already parked for its own reason, or not started
            journey_version, _ = playbook_of(run, journey)
            held.append({"id": journey.id, "status": journey.status, "wait_signal": journey.wait_signal,
                         "wait_until": journey.wait_until.isoformat() if journey.wait_until else None})
            park(run, journey, journey_version, Category.CONFIGURATION,
                 f"paused by {actor}" + (f": {reason}" if reason else "") + "; resume the playbook to move it on")
            report.parked.append(journey.id)
    else:
        report.running = len(open_journeys)
    session.add(PlaybookPause(playbook_id=playbook_id, paused_at=now, paused_by=actor, reason=reason,
                              parked_journey_ids=held))
    running = f"{len(report.parked)} running journeys parked" if park_running else \
        f"{report.running} running journeys continue"
    audit.record(session, at=now, action=audit.AuditAction.PLAYBOOK_PAUSED, actor=actor, rule="operator",
                 playbook_id=playbook_id, playbook_version=version.version,
                 reason=f"{actor} paused {playbook_id}: no new enrollments; {running}"
                        + (f" ({reason})" if reason else ""),
                 detail={"park_running": park_running, "parked_journey_ids": report.parked})
    session.flush()
    return report


def resume_playbook(*, session: Session, playbook_id: str, actor: str, now: datetime,
                    restore_parked: bool = True) -> PauseReport:
    """Let the playbook enroll again; the journeys its pause parked wait again where they were.

    A parked journey gets back exactly the wait it had (signal and deadline; a deadline that
    passed meanwhile times out on the next sweep), so nothing is run twice. One whose task a
    person closed while it was parked stays parked, with its exception item, for a person.
    """
    pause = session.scalars(select(PlaybookPause).where(PlaybookPause.playbook_id == playbook_id)
                            .with_for_update()).first()
    if pause is None:
        playbook_history(session=session, playbook_id=playbook_id)  # NotFound for an unknown id
        raise Conflict(f"playbook {playbook_id!r} is not paused")
    report = PauseReport(playbook_id=playbook_id)
    if restore_parked:
        for held in pause.parked_journey_ids:
            if _restore(session, held, actor=actor, now=now, playbook_id=playbook_id):
                report.resumed.append(int(held["id"]))
            else:
                report.left.append(int(held["id"]))
    session.delete(pause)
    audit.record(session, at=now, action=audit.AuditAction.PLAYBOOK_RESUMED, actor=actor, rule="operator",
                 playbook_id=playbook_id,
                 reason=f"{actor} resumed {playbook_id}: enrollments open again"
                        + (f"; {len(report.resumed)} parked journeys wait again" if report.resumed else "")
                        + (f"; {len(report.left)} left parked for a person" if report.left else ""),
                 detail={"resumed_journey_ids": report.resumed, "left_parked_journey_ids": report.left})
    session.flush()
    return report


def _restore(session: Session, held: dict[str, Any], *, actor: str, now: datetime, playbook_id: str) -> bool:
    journey = session.get(Journey, int(held["id"]))
    if journey is None:
        return False
    lock_accounts(session, [journey.account_id])
    journey = fresh(session, Journey, journey.id)
    if journey is None or journey.status != JourneyStatus.STALLED:
        return False  # someone retried or ended it by hand meanwhile
    if held["status"] == JourneyStatus.WAITING:
        waiting = session.scalar(select(StepRun).where(
            StepRun.journey_id == journey.id, StepRun.step_id == journey.current_step_id,
            StepRun.status == StepStatus.WAITING).order_by(StepRun.id.desc()).limit(1))
        task_id = waiting.outcome.get("task_id") if waiting is not None else None
        task = session.get(Task, task_id) if task_id else None
        if waiting is None or (task is not None and task.status not in OPEN_STATUSES):
            return False  # its task was closed while it was parked: a person decides what happens next
    journey.status = held["status"]
    journey.wait_signal = held["wait_signal"]
    journey.wait_until = datetime.fromisoformat(held["wait_until"]) if held["wait_until"] else None
    for item in exception_queue.list_items(session, journey_id=journey.id):
        exception_queue.resolve_item(session, item_id=item.id, by=actor, at=now, note=f"{playbook_id} resumed")
    return True
