"""Configuration reviews with the injected clock: once per period, not to the last editor, own deadline, brief."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from orchestrator.models import AuditEvent, ExceptionItem, Journey, OutboxMessage, PlaybookReview, StepRun, Task
from orchestrator.work import reviews
from orchestrator.work.reviews import check_overdue_reviews, complete_review, open_due_reviews
from tests.conftest import T0
from tests.engine.conftest import install_playbook
from tests.factories import AccountFactory, OwnerFactory

PLAYBOOK = """
    id: review-me
    name: Review me
    stage: acquire
    maintainer: maya@acme.example
    review_every: 90d
    enroll:
      on: lead.created
      once_per: signal
    steps:
      - id: approve
        kind: human
        assign: {to: account.owner}
        task:
          title: "Look at {{ account.name }}"
          recommend: "Call them"
          brief: [trigger]
        sla: {due: 1 business day}
      - id: done
        kind: exit
        reason: looked
"""


@pytest.fixture
def team(session):
    boss = OwnerFactory(email="boss@acme.example", role="manager", team="leads")
    maya = OwnerFactory(email="maya@acme.example", role="revops", team="revops", manager=boss)
    sam = OwnerFactory(email="sam@acme.example", role="revops", team="revops", manager=boss)
    return {"boss": boss, "maya": maya, "sam": sam}


def _install(session, *, by: str, at: datetime = T0, text: str = PLAYBOOK):
    version = install_playbook(session, text, lint=False)
    version.applied_by, version.applied_at = by, at
    session.flush()
    return version


def _reviews(session) -> list[PlaybookReview]:
    return list(session.scalars(select(PlaybookReview).order_by(PlaybookReview.id)))


def test_a_review_opens_once_when_review_every_comes_due_and_not_for_the_last_editor(session, settings, team):
    _install(session, by="maya@acme.example")
    assert open_due_reviews(session, settings=settings, now=T0 + timedelta(days=89)) == 0
    assert open_due_reviews(session, settings=settings, now=T0 + timedelta(days=90, hours=1)) == 1
    assert open_due_reviews(session, settings=settings, now=T0 + timedelta(days=91)) == 0  # a repeat: nothing
    [review] = _reviews(session)
    # Maya applied the version herself: her teammate reviews it.
    assert review.owner_id == team["sam"].id
    assert "maya@acme.example applied the active version" in review.assigned_how
    assert review.period == (T0 + timedelta(days=90)).date().isoformat()
    assert review.due_at is not None and review.check_at == review.due_at
    mail = session.scalars(select(OutboxMessage).where(OutboxMessage.idempotency_key == f"review:{review.id}:opened")
                           ).one()
    assert mail.payload["to"] == "sam@acme.example" and "Versions applied" in mail.payload["body"]
    assert session.scalar(select(func.count()).select_from(AuditEvent)
                          .where(AuditEvent.action == "review_opened")) == 1


def test_the_maintainer_reviews_what_someone_else_applied_and_a_team_of_one_reviews_its_own(session, settings,
                                                                                            team):
    _install(session, by="sam@acme.example")
    open_due_reviews(session, settings=settings, now=T0 + timedelta(days=91))
    assert _reviews(session)[0].owner_id == team["maya"].id
    assert _reviews(session)[0].assigned_how == "maintainer"

    team["sam"].team = "elsewhere"
    other = PLAYBOOK.replace("id: review-me", "id: solo")
    _install(session, by="maya@acme.example", text=other)
    open_due_reviews(session, settings=settings, now=T0 + timedelta(days=91))
    solo = [r for r in _reviews(session) if r.playbook_id == "solo"][0]
    assert solo.owner_id == team["maya"].id and solo.assigned_how.startswith("maintainer (nobody else")


def test_an_unknown_maintainer_leaves_the_review_unassigned_with_one_exception_item(session, settings):
    _install(session, by="someone@acme.example")
    assert open_due_reviews(session, settings=settings, now=T0 + timedelta(days=91)) == 1
    assert open_due_reviews(session, settings=settings, now=T0 + timedelta(days=92)) == 0
    [review] = _reviews(session)
    assert (review.status, review.owner_id) == ("unassigned", None)
    items = session.scalars(select(ExceptionItem).where(ExceptionItem.category == "no_assignee")).all()
    assert len(items) == 1 and "maya@acme.example" in items[0].detail["maintainer"]


def test_an_overdue_review_tells_the_reviewers_manager_once(session, settings, team):
    _install(session, by="sam@acme.example")
    opened_at = T0 + timedelta(days=91)  # a Monday
    open_due_reviews(session, settings=settings, now=opened_at)
    [review] = _reviews(session)
    assert review.due_at == opened_at + timedelta(days=7)  # five business days on Maya's calendar
    assert check_overdue_reviews(session, settings=settings, now=review.due_at - timedelta(minutes=1)) == 0
    assert check_overdue_reviews(session, settings=settings, now=review.due_at) == 1
    assert check_overdue_reviews(session, settings=settings, now=review.due_at + timedelta(days=3)) == 0
    told = session.scalars(select(OutboxMessage).where(
        OutboxMessage.idempotency_key.like(f"review:{review.id}:overdue%"))).all()
    assert [m.payload["to"] for m in told] == ["boss@acme.example"]


def test_done_starts_the_next_period_and_a_long_outage_opens_one_review_not_several(session, settings, team):
    _install(session, by="sam@acme.example")
    open_due_reviews(session, settings=settings, now=T0 + timedelta(days=91))
    done_at = T0 + timedelta(days=95)
    complete_review(session, review_id=_reviews(session)[0].id, actor="maya@acme.example", now=done_at)
    assert open_due_reviews(session, settings=settings, now=done_at + timedelta(days=89)) == 0
    # Every worker down for a year: one review, not four.
    assert open_due_reviews(session, settings=settings, now=done_at + timedelta(days=400)) == 1
    assert open_due_reviews(session, settings=settings, now=done_at + timedelta(days=401)) == 0
    assert [r.status for r in _reviews(session)] == ["done", "open"]
    assert _reviews(session)[1].period == (done_at + timedelta(days=90)).date().isoformat()


def test_the_period_key_makes_a_second_workers_open_a_no_op(session, settings, team):
    version = _install(session, by="sam@acme.example")
    now = T0 + timedelta(days=91)
    assert reviews._open_one(session, settings=settings, version=version, maintainer="maya@acme.example",
                             period="2026-02-21", now=now)
    assert not reviews._open_one(session, settings=settings, version=version, maintainer="maya@acme.example",
                                 period="2026-02-21", now=now)
    assert len(_reviews(session)) == 1
    assert session.scalar(select(func.count()).select_from(OutboxMessage)
                          .where(OutboxMessage.idempotency_key.like("review:%"))) == 1


def test_the_brief_lists_versions_exceptions_and_step_rates_since_the_last_review(session, settings, team):
    first = _install(session, by="sam@acme.example")
    account = AccountFactory(owner=team["sam"])
    journey = Journey(account_id=account.id, playbook_id="review-me", playbook_version_id=first.id,
                      enrollment_key="review-me:1", status="active", context={}, enrolled_at=T0)
    session.add(journey)
    session.flush()
    runs = [StepRun(journey_id=journey.id, step_id="approve", kind="automated", status=status, reason="",
                    outcome={}, started_at=T0 + timedelta(days=1))
            for status in ("done", "done", "overridden", "waiting")]
    session.add_all(runs)
    session.flush()
    for run, outcome in zip(runs[:2], ("approved", "rejected"), strict=True):
        session.add(Task(account_id=account.id, journey_id=journey.id, step_run_id=run.id, owner_id=team["sam"].id,
                         kind="approval", title="Approve", status="done", outcome=outcome, due_at=T0,
                         created_at=T0, completed_at=T0 + timedelta(days=1)))
    session.add(ExceptionItem(category="unmatched_branch", owner="ops-lead@example.com", message="m",
                              journey_id=journey.id, created_at=T0 + timedelta(days=2), respond_by=T0))
    session.flush()
    _install(session, by="maya@acme.example", at=T0 + timedelta(days=10))  # v2

    brief = reviews.review_brief(session, playbook_id="review-me", since=None, now=T0 + timedelta(days=100))
    assert [v["version"] for v in brief.data["versions"]] == [1, 2]
    assert brief.data["exceptions"] == {"unmatched_branch": 1}
    assert brief.data["steps"] == [{"step": "approve", "runs": 4, "override_rate": round(1 / 3, 4),
                                    "decisions": 2, "rejection_rate": 0.5}]
    assert "approve: 4 runs, overridden 33%, rejected 50% of 2 decisions" in brief.text
    # Since a review done on day 5: only v2, and nothing else happened after it.
    later = reviews.review_brief(session, playbook_id="review-me", since=T0 + timedelta(days=5),
                                 now=T0 + timedelta(days=100))
    assert [v["version"] for v in later.data["versions"]] == [2]
    assert later.data["exceptions"] == {} and later.data["steps"] == []


def test_a_team_address_as_maintainer_goes_to_a_person_on_that_team(session, settings, team):
    _install(session, by="maya@acme.example", text=PLAYBOOK.replace("maya@acme.example", "revops@acme.example"))
    open_due_reviews(session, settings=settings, now=T0 + timedelta(days=91))
    [review] = _reviews(session)
    assert review.owner_id == team["sam"].id  # Maya made the last change
    assert review.assigned_how == "team revops, for the maintainer address revops@acme.example"


def test_a_reviewed_on_day_in_the_file_starts_the_period(session, settings, team):
    _install(session, by="sam@acme.example",
             text=PLAYBOOK.replace("    review_every: 90d\n", "    review_every: 90d\n    reviewed_on: 2027-01-04\n"))
    assert open_due_reviews(session, settings=settings, now=T0 + timedelta(days=91)) == 0  # applied + 90d
    assert open_due_reviews(session, settings=settings, now=datetime(2027, 4, 3, 23, tzinfo=UTC)) == 0
    assert open_due_reviews(session, settings=settings, now=datetime(2027, 4, 4, 0, tzinfo=UTC)) == 1
    assert _reviews(session)[0].period == "2027-04-04"


def test_an_open_review_shows_in_the_reviewers_daily_digest(session, settings, team):
    from orchestrator.work.reminders import send_daily_digests

    _install(session, by="sam@acme.example")
    opened_at = T0 + timedelta(days=91)  # Monday 09:00 New York
    open_due_reviews(session, settings=settings, now=opened_at)
    assert send_daily_digests(session, settings=settings, now=opened_at + timedelta(days=1)) == 1
    digest = session.scalars(select(OutboxMessage).where(OutboxMessage.idempotency_key.like("digest:daily:%"))
                             ).one()
    assert digest.payload["to"] == "maya@acme.example"  # no tasks, one review
    assert digest.payload["subject"].endswith("1 playbook review")
    assert "[review] playbook review-me v1, due Mon 01 Mar 09:00" in digest.payload["body"]
