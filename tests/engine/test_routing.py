"""Confidence routing (`route` steps) end to end, on SQLite and PostgreSQL: the shipped ticket-triage
playbook and an inline one that reads its score and category from the signal."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from orchestrator.journeys import engine
from orchestrator.models import AuditEvent, Journey, OutboxMessage, Task
from orchestrator.playbook import PlaybookInvalid, load_playbook_text
from orchestrator.resources import shipped_playbooks_dir
from tests.engine.conftest import HEADER, install_playbook
from tests.factories import AccountFactory, OwnerFactory


@pytest.fixture
def triage(session):
    text = (shipped_playbooks_dir() / "adopt" / "ticket-triage.yaml").read_text()
    return install_playbook(session, text, "adopt/ticket-triage.yaml")


@pytest.fixture
def account():
    csm = OwnerFactory(name="Cleo CSM", email="cleo@acme.example", role="csm")
    return AccountFactory(name="Globex", stage="adopt", csm=csm)


def _routed(session, account):
    return session.scalars(select(AuditEvent).where(AuditEvent.account_id == account.id,
                                                    AuditEvent.action.like("route%"))
                           .order_by(AuditEvent.id)).all()


def _tasks(session, account):
    return session.scalars(select(Task).where(Task.account_id == account.id).order_by(Task.id)).all()


def _outbox(session, account):
    """What the journey did outside (the CRM copies of its tasks left out)."""
    return session.scalars(select(OutboxMessage).where(OutboxMessage.account_id == account.id,
                                                       OutboxMessage.task_id.is_(None))
                           .order_by(OutboxMessage.id)).all()


def _journey(session, account):
    return session.scalars(select(Journey).where(Journey.account_id == account.id)
                           .order_by(Journey.id.desc())).first()


def _decide(session, settings, clock, task, outcome):
    engine.decide_task(session=session, settings=settings, task_id=task.id, outcome=outcome,
                       actor="cleo@acme.example", now=clock.now())
    session.flush()


def test_a_confident_ticket_of_a_known_kind_goes_its_automated_way(session, feed, triage, account):
    feed("support.ticket_opened", account, {"ticket_id": "T-1", "subject": "Refund for a double charge",
                                            "body": "We were charged twice; please refund the second invoice."})
    assert _tasks(session, account) == []
    (message,) = _outbox(session, account)
    assert message.kind == "crm.update_field" and message.payload["args"] == {"field": "support_queue",
                                                                              "value": "billing"}
    (routed,) = _routed(session, account)
    assert routed.action == "routed" and routed.rule == "route:triage"
    assert routed.detail["path"] == "automated" and routed.detail["category"] == "billing"
    assert routed.detail["threshold"] == 0.7 and routed.detail["score"] >= 0.7
    assert "refund" in " ".join(routed.detail["evidence"])
    assert _journey(session, account).end_reason.endswith("routed to billing")


def test_a_doubtful_ticket_reaches_a_person_with_its_proposal_and_evidence(
        session, feed, settings, clock, triage, account):
    # One billing word and one login word: billing is only a guess.
    feed("support.ticket_opened", account, {"ticket_id": "T-2", "subject": "Invoice page shows a password prompt"})
    assert _outbox(session, account) == []
    (task,) = _tasks(session, account)
    assert task.kind == "approval" and task.owner.email == "cleo@acme.example"
    proposal = task.brief["proposal"]
    assert proposal["category"] == "billing" and proposal["score"] < 0.7 and proposal["threshold"] == 0.7
    assert proposal["proposed_path"] == "to-billing"
    for evidence in ("Invoice page shows a password prompt", "Proposed decision", "billing: invoice",
                     "login: password", "below the threshold 0.70"):
        assert evidence in task.brief_text, evidence
    (routed,) = _routed(session, account)
    assert routed.detail["path"] == "human" and routed.detail["reason"] == "below_threshold"

    _decide(session, settings, clock, task, "rejected")
    assert _outbox(session, account) == []
    overturned = _routed(session, account)[-1]
    assert overturned.action == "route_overturned" and overturned.actor == "cleo@acme.example"
    assert overturned.detail["category"] == "billing" and overturned.detail["outcome"] == "rejected"
    assert _journey(session, account).end_reason.endswith("a person took the decision")


def test_a_person_confirming_the_proposal_takes_its_automated_path(
        session, feed, settings, clock, triage, account):
    feed("support.ticket_opened", account, {"ticket_id": "T-3", "subject": "SSO question"})
    (task,) = _tasks(session, account)
    assert task.brief["proposal"]["category"] == "login" and task.brief["proposal"]["score"] == 0.5
    _decide(session, settings, clock, task, "approved")
    assert _outbox(session, account)[0].payload["args"] == {"field": "support_queue", "value": "identity"}
    assert [e.action for e in _routed(session, account)] == ["routed", "route_confirmed"]


def test_a_novel_kind_of_ticket_stays_with_a_person(session, feed, settings, clock, triage, account):
    feed("support.ticket_opened", account, {"ticket_id": "T-4", "subject": "Our data residency contract terms"})
    (task,) = _tasks(session, account)
    assert task.kind == "action"  # nothing to approve: no automated path exists for it
    assert task.brief["proposal"]["category"] is None and "could not be scored" in task.brief_text
    assert _routed(session, account)[0].detail["reason"] == "unscored"
    _decide(session, settings, clock, task, "done")
    assert _outbox(session, account) == []
    assert _journey(session, account).status == "completed"


SIGNAL_SCORED = """
    id: scored-routing
    name: Scored routing
    stage: adopt
""" + HEADER + """
    enroll: {on: support.ticket_opened, once_per: signal}
    steps:
      - id: decide
        kind: route
        score: signal.confidence
        category: signal.category
        evidence: signal.evidence
        threshold: 0.9
        automated:
          billing: {goto: billing}
        assign: {to: account.csm}
        task: {title: "Check {{ signal.ticket_id }}", recommend: "Decide the category."}
        sla: {due: 1 business day}
      - id: human-done
        kind: exit
        reason: by hand
      - id: billing
        kind: automated
        oversight: out_of_loop
        do: crm.create_note
        with: {body: billing}
"""


@pytest.mark.parametrize(("payload", "path", "reason"), [
    ({"confidence": 0.95, "category": "billing", "evidence": ["model v3"]}, "automated", "confident"),
    ({"confidence": 0.5, "category": "billing"}, "human", "below_threshold"),
    ({"confidence": 0.99, "category": "legal"}, "human", "novel_category"),
    ({"confidence": 7, "category": "billing"}, "human", "unscored"),  # not a confidence
    ({"category": "billing"}, "human", "unscored"),
])
def test_score_and_category_read_from_the_signal(session, feed, account, payload, path, reason):
    install_playbook(session, SIGNAL_SCORED, lint=False)
    feed("support.ticket_opened", account, {"ticket_id": "T-9", **payload})
    (routed,) = _routed(session, account)
    assert (routed.detail["path"], routed.detail["reason"]) == (path, reason)
    assert len(_tasks(session, account)) == (path == "human")
    if path == "automated":
        assert routed.detail["evidence"] == ["model v3"]
        assert _outbox(session, account)[0].payload["args"] == {"body": "billing"}


@pytest.mark.parametrize(("change", "message"), [
    ("threshold: 0.9", "threshold: 1.5"),
    ("billing: {goto: billing}", "billing: {goto: nowhere}"),
    ("score: signal.confidence\n", "score: signal.confidence\n        scorer: {text: x, keywords: {a: [b]}}\n"),
])
def test_a_route_step_is_checked_before_it_runs(change, message):
    with pytest.raises(PlaybookInvalid):
        load_playbook_text(SIGNAL_SCORED.replace(change, message), "bad.yaml", lint=False)
