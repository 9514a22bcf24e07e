"""Pausing a playbook: no new enrollments; running journeys continue, or park until resume (audited)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from orchestrator.errors import Conflict
from orchestrator.journeys.pausing import pause_playbook, resume_playbook
from orchestrator.models import AuditEvent, ExceptionItem, Journey, Task
from tests.engine.conftest import HEADER, install_playbook
from tests.factories import AccountFactory

PLAYBOOK = """
    id: usage-watch-test
    name: Usage watch
    stage: adopt
""" + HEADER + """
    enroll: {on: product.usage}
    steps:
      - id: wait-more
        kind: wait
        for: product.usage
        timeout: 7d
        on_timeout: {exit: true}
      - id: call
        kind: human
        assign: {to: account.owner}
        task: {title: "Call {{ account.name }}", recommend: "Ask how it goes."}
        sla: {due: 2 business days}
"""


def _journey(session, account):
    return session.scalars(select(Journey).where(Journey.account_id == account.id)).one()


def _audit(session, action):
    return session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()


def test_a_paused_playbook_enrolls_nobody_and_running_journeys_continue(session, feed, settings, clock):
    install_playbook(session, PLAYBOOK)
    running = AccountFactory(name="Initech")
    feed("product.usage", running, {"active_users": 1})
    report = pause_playbook(session=session, settings=settings, playbook_id="usage-watch-test",
                            actor="ops@acme.example", now=clock.now(), reason="wrong audience")
    assert report.running == 1 and report.parked == []
    newcomer = AccountFactory(name="Globex")
    feed("product.usage", newcomer, {"active_users": 2})
    assert session.scalars(select(Journey).where(Journey.account_id == newcomer.id)).all() == []
    feed("product.usage", running, {"active_users": 3})  # the running journey still moves on: its wait is satisfied
    assert _journey(session, running).current_step_id == "call"
    [event] = _audit(session, "playbook_paused")
    assert event.actor == "ops@acme.example" and "1 running journeys continue (wrong audience)" in event.reason
    with pytest.raises(Conflict, match="already paused"):
        pause_playbook(session=session, settings=settings, playbook_id="usage-watch-test",
                       actor="ops@acme.example", now=clock.now())

    resume_playbook(session=session, playbook_id="usage-watch-test", actor="ops@acme.example", now=clock.now())
    feed("product.usage", newcomer, {"active_users": 4})
    assert _journey(session, newcomer).status == "waiting"
    assert len(_audit(session, "playbook_resumed")) == 1


def test_parked_journeys_wait_again_where_they_were_after_resume(session, feed, settings, clock):
    install_playbook(session, PLAYBOOK)
    waiting, tasked = AccountFactory(name="Initech"), AccountFactory(name="Hooli")
    feed("product.usage", waiting, {"active_users": 5})
    feed("product.usage", tasked, {"active_users": 6})
    feed("product.usage", tasked, {"active_users": 7})  # on to the human step: an open task
    before = _journey(session, waiting).wait_until
    report = pause_playbook(session=session, settings=settings, playbook_id="usage-watch-test",
                            actor="ops@acme.example", now=clock.now(), park_running=True)
    assert sorted(report.parked) == sorted([_journey(session, waiting).id, _journey(session, tasked).id])
    assert {_journey(session, a).status for a in (waiting, tasked)} == {"stalled"}
    feed("product.usage", waiting, {"active_users": 8})  # a parked journey does not move
    assert _journey(session, waiting).current_step_id == "wait-more"

    clock.advance(timedelta(hours=2))
    resumed = resume_playbook(session=session, playbook_id="usage-watch-test", actor="ops@acme.example",
                              now=clock.now())
    assert sorted(resumed.resumed) == sorted(report.parked) and resumed.left == []
    journey = _journey(session, waiting)
    assert (journey.status, journey.wait_signal, journey.wait_until) == ("waiting", "product.usage", before)
    assert session.scalars(select(Task)).one().status == "open"  # no second task: nothing ran twice
    assert all(item.status == "resolved" for item in session.scalars(select(ExceptionItem)))
    feed("product.usage", waiting, {"active_users": 9})
    assert _journey(session, waiting).current_step_id == "call"


def test_a_journey_whose_task_was_closed_while_parked_stays_parked_for_a_person(session, feed, settings, clock):
    from orchestrator.journeys import engine

    install_playbook(session, PLAYBOOK)
    account = AccountFactory(name="Hooli")
    feed("product.usage", account, {"active_users": 10})
    feed("product.usage", account, {"active_users": 11})
    pause_playbook(session=session, settings=settings, playbook_id="usage-watch-test", actor="ops@acme.example",
                   now=clock.now(), park_running=True)
    task = session.scalars(select(Task)).one()
    engine.decide_task(session=session, settings=settings, task_id=task.id, outcome="done",
                       actor=account.owner.email, now=clock.now())
    report = resume_playbook(session=session, playbook_id="usage-watch-test", actor="ops@acme.example",
                             now=clock.now())
    assert report.left == [_journey(session, account).id] and _journey(session, account).status == "stalled"
    assert "1 left parked for a person" in _audit(session, "playbook_resumed")[0].reason


def test_resuming_a_playbook_that_is_not_paused_is_refused(session, settings, clock):
    install_playbook(session, PLAYBOOK)
    with pytest.raises(Conflict, match="is not paused"):
        resume_playbook(session=session, playbook_id="usage-watch-test", actor="ops@acme.example", now=clock.now())
