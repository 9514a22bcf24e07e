"""Configuration reviews: when a playbook's `review_every` comes due, a named person reviews it.

A review is opened once per playbook per period: the `playbook_reviews` unique key on
(playbook, period) makes a second worker's or a repeated run's insert a no-op, and a period
missed while every worker was down opens one review, not one per missed period. The period
starts at the playbook's last review (its completion) or its last apply, whichever is later:
applying a new version is a look at it too. The review goes to the maintainer, unless the
maintainer applied the active version themselves and someone else on their team can take
it (nobody reviews their own change where the team allows). It has its own deadline on the
reviewer's business calendar; past it, the reviewer's manager is told, once. Its brief lists
what changed since the last review: versions applied, exception categories seen, and the
override and rejection rates of each step.

A `reviewed_on: YYYY-MM-DD` written in the playbook file counts as a review on that day.

Reviews are not rows in `tasks`: a task belongs to an account and goes to the CRM, and a
playbook review is about configuration, not a customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import Table, case, func, or_, select
from sqlalchemy.orm import Session

from orchestrator import audit, exception_queue
from orchestrator.config import Settings
from orchestrator.db import insert_ignoring, skip_locked
from orchestrator.delivery import outbox
from orchestrator.durations import Duration, parse_duration
from orchestrator.errors import Conflict, NotFound
from orchestrator.models import ExceptionItem, Journey, Owner, PlaybookReview, PlaybookVersion, StepRun, Task
from orchestrator.work.sla import calendar_for

__all__ = ["DEFAULT_EVERY", "REVIEW_DUE", "ReviewBrief", "check_overdue_reviews", "complete_review",
           "open_due_reviews", "review_brief", "review_due_at"]

DEFAULT_EVERY = "90d"  # quarterly, as the seeds say, for a playbook that names no review_every
REVIEW_DUE = "5 business days"  # the review's own SLA, on the reviewer's calendar
_DECIDED = ("approved", "published", "rejected")


def _approximate(every: Duration) -> timedelta:
    # A review cycle is calendar time; business days read as working weeks (as the linter reads them).
    return every.calendar + timedelta(days=every.business_days * 7 / 5, minutes=every.business_minutes)


def _last_done(session: Session, playbook_id: str) -> datetime | None:
    return session.scalar(select(func.max(PlaybookReview.completed_at)).where(
        PlaybookReview.playbook_id == playbook_id, PlaybookReview.status == "done"))


def review_due_at(session: Session, *, version: PlaybookVersion, every: Duration | None,
                  reviewed_on: date | None = None) -> datetime:
    """When the playbook's next review comes due: `review_every` after the latest of its last apply, its
    last review done here, and the `reviewed_on:` day written in the file (its start, UTC)."""
    written = datetime.combine(reviewed_on, time(0), tzinfo=UTC) if reviewed_on is not None else None
    baseline = max(filter(None, [version.applied_at, _last_done(session, version.playbook_id), written]))
    return baseline + _approximate(every or parse_duration(DEFAULT_EVERY))


# -- the brief --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewBrief:
    data: dict[str, Any]
    text: str


def review_brief(session: Session, *, playbook_id: str, since: datetime | None, now: datetime) -> ReviewBrief:
    """What changed since the last review (or ever, for a first one): versions, exceptions, step rates."""
    start = since or datetime.min.replace(tzinfo=now.tzinfo)
    versions = [{"version": v.version, "applied_at": v.applied_at.isoformat(), "applied_by": v.applied_by}
                for v in session.scalars(select(PlaybookVersion).where(
                    PlaybookVersion.playbook_id == playbook_id, PlaybookVersion.applied_at > start)
                    .order_by(PlaybookVersion.version))]
    of_playbook = or_(ExceptionItem.journey_id.in_(select(Journey.id).where(Journey.playbook_id == playbook_id)),
                      ExceptionItem.group_key.like(f"%|{playbook_id}|%"))
    exceptions = {category: count for category, count in session.execute(
        select(ExceptionItem.category, func.count()).where(of_playbook, ExceptionItem.created_at >= start)
        .group_by(ExceptionItem.category).order_by(ExceptionItem.category))}
    runs = (select(StepRun.step_id, func.count().label("runs"),
                   func.sum(case((StepRun.status.in_(("done", "overridden")), 1), else_=0)).label("ran"),
                   func.sum(case((StepRun.status == "overridden", 1), else_=0)).label("overridden"))
            .join(Journey, Journey.id == StepRun.journey_id)
            .where(Journey.playbook_id == playbook_id, StepRun.started_at >= start)
            .group_by(StepRun.step_id))
    decisions = (select(StepRun.step_id, func.count().label("decisions"),
                        func.sum(case((Task.outcome == "rejected", 1), else_=0)).label("rejected"))
                 .join(StepRun, StepRun.id == Task.step_run_id).join(Journey, Journey.id == StepRun.journey_id)
                 .where(Journey.playbook_id == playbook_id, StepRun.started_at >= start,
                        Task.kind.in_(("approval", "review")), Task.outcome.in_(_DECIDED))
                 .group_by(StepRun.step_id))
    decided = {row.step_id: row for row in session.execute(decisions)}
    steps = []
    for row in session.execute(runs.order_by(StepRun.step_id)):
        d = decided.get(row.step_id)
        steps.append({
            "step": row.step_id, "runs": row.runs,
            "override_rate": round(row.overridden / row.ran, 4) if row.ran else None,
            "decisions": d.decisions if d else 0,
            "rejection_rate": round(d.rejected / d.decisions, 4) if d and d.decisions else None,
        })
    data = {"playbook": playbook_id, "since": since.isoformat() if since else None,
            "versions": versions, "exceptions": exceptions, "steps": steps}
    return ReviewBrief(data=data, text=_render(data, now=now))


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _render(data: dict[str, Any], *, now: datetime) -> str:
    since = data["since"][:10] if data["since"] else "the start"
    lines = [f"Review of playbook {data['playbook']}: what changed from {since} to {now:%Y-%m-%d}.", "",
             "Versions applied:"]
    lines += [f"- v{v['version']} on {v['applied_at'][:10]} by {v['applied_by']}" for v in data["versions"]] \
        or ["- none"]
    lines += ["", "Exception categories seen:"]
    lines += [f"- {category}: {count}" for category, count in data["exceptions"].items()] or ["- none"]
    lines += ["", "Steps (runs, override rate, rejection rate of decisions):"]
    lines += [f"- {s['step']}: {s['runs']} runs, overridden {_rate(s['override_rate'])}, "
              f"rejected {_rate(s['rejection_rate'])} of {s['decisions']} decisions" for s in data["steps"]] \
        or ["- no runs"]
    return "\n".join(lines)


# -- who reviews ---------------------------------------------------------------------------------


def _reviewer(session: Session, *, maintainer: str, last_editor: str, now: datetime) -> tuple[Owner | None, str]:
    address = maintainer.strip().lower()
    person = session.scalars(select(Owner).where(func.lower(Owner.email) == address,
                                                 Owner.active.is_(True))).first()
    if person is None:
        # A team address (revops@...): a person on the team of that name who did not make the last change.
        team = address.split("@", 1)[0]
        for member in session.scalars(select(Owner).where(func.lower(Owner.team) == team, Owner.active.is_(True))
                                      .order_by(Owner.id)):
            if member.available(now) and member.email.lower() != last_editor.strip().lower():
                return member, f"team {member.team}, for the maintainer address {maintainer}"
        return None, f"maintainer {maintainer} is neither an active person nor a team in Handoff"
    if person.email.lower() != last_editor.strip().lower() and person.available(now):
        return person, "maintainer"
    why = "applied the active version" if person.email.lower() == last_editor.strip().lower() else "is away"
    if person.team:
        # Fewest open reviews first, so a team shares them; the id breaks ties the same way every time.
        load = (select(func.count()).where(PlaybookReview.owner_id == Owner.id, PlaybookReview.status == "open")
                .correlate(Owner).scalar_subquery())
        for other in session.scalars(select(Owner).where(
                Owner.team == person.team, Owner.id != person.id, Owner.active.is_(True),
                func.lower(Owner.email) != last_editor.strip().lower()).order_by(load, Owner.id)):
            if other.available(now):
                return other, f"team {person.team}: the maintainer {person.email} {why}"
    return person, f"maintainer (nobody else on the team; they {why})"


# -- opening, watching, closing --------------------------------------------------------------------


def open_due_reviews(session: Session, *, settings: Settings, now: datetime) -> int:
    """Open a review for each active playbook whose review came due; returns how many were opened."""
    from orchestrator.playbook.store import active_playbooks

    opened = 0
    for version, playbook in active_playbooks(session=session):
        due = review_due_at(session, version=version, every=playbook.review_every,
                            reviewed_on=playbook.reviewed_on)
        if now < due:
            continue
        if session.scalar(select(PlaybookReview.id).where(PlaybookReview.playbook_id == version.playbook_id,
                                                          PlaybookReview.status == "open").limit(1)):
            continue  # one open review at a time; the next period starts when it is done
        if _open_one(session, settings=settings, version=version, maintainer=playbook.maintainer,
                     period=due.date().isoformat(), now=now):
            opened += 1
    return opened


def _open_one(session: Session, *, settings: Settings, version: PlaybookVersion, maintainer: str, period: str,
              now: datetime) -> bool:
    reviewer, how = _reviewer(session, maintainer=maintainer, last_editor=version.applied_by, now=now)
    brief = review_brief(session, playbook_id=version.playbook_id, since=_last_done(session, version.playbook_id),
                         now=now)
    due_at = calendar_for(reviewer, settings).add(now, parse_duration(REVIEW_DUE)) if reviewer else None
    table = cast(Table, PlaybookReview.__table__)
    review_id = session.execute(
        insert_ignoring(session, table, conflict=["playbook_id", "period"]).values(
            playbook_id=version.playbook_id, period=period, version=version.version,
            owner_id=reviewer.id if reviewer else None, assigned_how=how,
            status="open" if reviewer else "unassigned", created_at=now, due_at=due_at, check_at=due_at,
            escalation_level=0, brief=brief.data, brief_text=brief.text)
        .returning(table.c.id)).scalar()
    if review_id is None:
        return False  # another worker opened this period's review first
    rule = f"{version.playbook_id}/review_every"
    if reviewer is None:
        exception_queue.raise_item(
            session, settings=settings, category=exception_queue.Category.NO_ASSIGNEE, at=now,
            message=f"playbook {version.playbook_id} is due its review and {how}: name a person as maintainer",
            detail={"review_id": review_id, "maintainer": maintainer}, playbook_id=version.playbook_id,
            playbook_version=version.version)
        return True
    assert due_at is not None
    outbox.enqueue(
        session, kind="notify.email", target="email", at=now, idempotency_key=f"review:{review_id}:opened",
        payload={"to": reviewer.email, "subject": f"Review playbook {version.playbook_id} by {due_at:%Y-%m-%d}",
                 "body": brief.text + f"\n\nClose it with: handoff reviews done {review_id} --by {reviewer.email}",
                 "review_id": review_id})
    audit.record(session, at=now, action=audit.AuditAction.REVIEW_OPENED, rule=rule, playbook_id=version.playbook_id,
                 playbook_version=version.version,
                 reason=f"playbook {version.playbook_id} is due its review: {reviewer.email} ({how}), "
                        f"by {due_at:%Y-%m-%d %H:%M} UTC",
                 detail={"review_id": review_id, "reviewer": reviewer.email, "how": how, "period": period})
    return True


def check_overdue_reviews(session: Session, *, settings: Settings, now: datetime, limit: int = 200) -> int:
    """Open reviews past their deadline: the reviewer's manager (else the default owner) is told, once."""
    query = (select(PlaybookReview).where(PlaybookReview.status == "open", PlaybookReview.check_at.is_not(None),
                                          PlaybookReview.check_at <= now)
             .order_by(PlaybookReview.check_at, PlaybookReview.id).limit(limit))
    if skip_locked(session):
        query = query.with_for_update(skip_locked=True)
    reviews = list(session.scalars(query))
    for review in reviews:
        reviewer = session.get_one(Owner, review.owner_id) if review.owner_id is not None else None
        to = (reviewer.manager.email if reviewer is not None and reviewer.manager is not None
              else settings.exception_owner or (reviewer.email if reviewer else ""))
        review.escalation_level += 1
        review.check_at = None  # one rung: the watermark is the cleared check
        outbox.enqueue(
            session, kind="notify.email", target="email", at=now,
            idempotency_key=f"review:{review.id}:overdue:{review.escalation_level}",
            payload={"to": to, "subject": f"Overdue: review of playbook {review.playbook_id}",
                     "body": (f"{reviewer.email if reviewer else 'Nobody'} was to review playbook "
                              f"{review.playbook_id} by {review.due_at:%Y-%m-%d %H:%M} UTC; it is still open."),
                     "review_id": review.id})
        audit.record(session, at=now, action=audit.AuditAction.REVIEW_OVERDUE,
                     rule=f"{review.playbook_id}/review_every", playbook_id=review.playbook_id,
                     playbook_version=review.version,
                     reason=f"review {review.id} of {review.playbook_id} is past its deadline: told {to}",
                     detail={"review_id": review.id, "to": to})
    return len(reviews)


def complete_review(session: Session, *, review_id: int, actor: str, now: datetime) -> PlaybookReview:
    """Mark a review done; the playbook's next period starts now."""
    review = session.get(PlaybookReview, review_id, with_for_update=True)
    if review is None:
        raise NotFound(f"no review {review_id}")
    if review.status == "done":
        return review
    if review.status != "open":
        raise Conflict(f"review {review_id} is {review.status}")
    review.status = "done"
    review.completed_at = now
    review.completed_by = actor
    review.check_at = None
    audit.record(session, at=now, action=audit.AuditAction.REVIEW_DONE, actor=actor,
                 rule=f"{review.playbook_id}/review_every", playbook_id=review.playbook_id,
                 playbook_version=review.version,
                 reason=f"{actor} reviewed playbook {review.playbook_id}", detail={"review_id": review.id})
    return review
