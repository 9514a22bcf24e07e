"""On-the-loop customer emails are held in the outbox until the override window ends.

Checked against the local SMTP server (aiosmtpd): an email overridden inside its window never
crosses the wire, and one nobody overrides is delivered once the window has passed. At release
the account is checked again: a sensitive signal during the window (the protected human zone) or
the journey leaving early (exit_on, an operator) cancels it unsent. Internal on-the-loop actions
keep run-then-compensate (tests/engine/test_engine.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from connectors.registry import load_registry
from orchestrator import schema
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory
from orchestrator.delivery import outbox
from orchestrator.delivery.deliver import deliver_due
from orchestrator.delivery.routing import install_routing
from orchestrator.intake import signals
from orchestrator.journeys import engine as journeys
from orchestrator.models import AuditEvent, CustomerTouch, OutboxMessage, OutboxStatus, StepRun
from tests import factories
from tests.conftest import T0
from tests.engine.conftest import HEADER, install_playbook
from tests.factories import AccountFactory, OwnerFactory

PLAYBOOK = """
    id: welcome
    name: Welcome
    stage: onboard
""" + HEADER + """
    enroll: {on: deal.closed_won, once_per: account}
    exit_on: [account.churned]
    sensitive_signals: [sentiment.negative, support.escalation]
    steps:
      - id: welcome-email
        kind: automated
        oversight: on_the_loop
        risk: {error_cost: low, correction: fast}
        do: customer.email
        with:
          to: buyer@customer.example
          subject: "Welcome to Acme, {{ account.name }}"
          body: "Your kickoff is booked."
        override:
          window: 2h
      - id: done
        kind: exit
        reason: welcomed
"""

# The same, but the journey stays open after the email (waiting for usage), so it can be ended meanwhile.
WAITING_PLAYBOOK = PLAYBOOK.replace("""      - id: done
        kind: exit""", """      - id: first-use
        kind: wait
        for: product.usage
        timeout: 14d
        on_timeout: {goto: done}
      - id: done
        kind: exit""")


@pytest.fixture
def sessions(fresh_database) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def _enroll(sessions: sessionmaker[Session], settings: Settings, playbook: str = PLAYBOOK) -> tuple[int, str]:
    """One account enrolled at T0; returns the welcome step run's id and the owner's email."""
    with sessions() as session:
        factories.bind(session)
        owner = OwnerFactory(email="ana@acme.example", name="Ana")
        account = AccountFactory(name="Globex", owner=owner)
        install_playbook(session, playbook)
        result = signals.ingest(session=session, raw={"type": "deal.closed_won", "account": {"id": account.id},
                                                      "payload": {}, "occurred_at": T0.isoformat()},
                                source="test", now=T0, settings=settings)
        assert result.status == "accepted"
        journeys.process_pending(session=session, settings=settings, now=T0)
        session.commit()
        factories.bind(None)
        step_run = session.scalars(select(StepRun).where(StepRun.step_id == "welcome-email")).one()
        return step_run.id, owner.email


def _deliver(sessions, settings, now) -> None:
    deliver_due(sessions=sessions, settings=settings, registry=load_registry(), now=now, worker_id="w1")


def _settings(fresh_database, smtp) -> Settings:
    return Settings(database_url=fresh_database, exception_owner="ops-lead@acme.example",
                    connectors={"smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                                         "from_address": "handoff@acme.example"}})


def test_an_overridden_customer_email_never_reaches_the_smtp_server(fresh_database, sessions, smtp):
    settings = _settings(fresh_database, smtp)
    install_routing(sessions, settings.connectors)
    step_run_id, owner = _enroll(sessions, settings)

    # Inside the window the email is not due: delivery passes it over (the owner's notice goes out).
    _deliver(sessions, settings, T0 + timedelta(minutes=30))
    assert smtp.handler.mailbox("buyer@customer.example") == []
    with sessions() as session:
        journeys.override_step(session=session, settings=settings, step_run_id=step_run_id, actor=owner,
                               now=T0 + timedelta(hours=1), reason="the champion left")
        session.commit()

    # Well after the window: still nothing for the customer.
    _deliver(sessions, settings, T0 + timedelta(hours=5))
    assert [r.recipients for r in smtp.handler.received] == [[owner]]
    with sessions() as session:
        email = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "customer.email")).one()
        step_run = session.get_one(StepRun, step_run_id)
        audit = {e.action: e for e in session.scalars(select(AuditEvent).where(
            AuditEvent.action.in_(["overridden", "outbox_cancelled"])))}
        touches = session.scalar(select(func.count()).select_from(CustomerTouch))
    assert email.status == OutboxStatus.CANCELLED and email.delivered_at is None and email.attempts == 0
    assert step_run.status == "overridden"
    assert set(audit) == {"overridden", "outbox_cancelled"}
    assert "cancelled unsent" in audit["overridden"].reason and "the champion left" in audit["overridden"].reason
    assert audit["overridden"].actor == owner
    assert touches == 0  # nothing reached the customer: the cap gets its touch back


def test_a_customer_email_nobody_overrides_is_delivered_after_the_window(fresh_database, sessions, smtp):
    settings = _settings(fresh_database, smtp)
    install_routing(sessions, settings.connectors)
    step_run_id, owner = _enroll(sessions, settings)
    with sessions() as session:
        held = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "customer.email")).one()
        notice = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "notify.email")).one()
        step_run = session.get_one(StepRun, step_run_id)
    assert held.next_attempt_at == T0 + timedelta(hours=2) == step_run.override_until
    assert step_run.outcome["held_outbox_id"] == held.id
    assert "never sent" in notice.payload["body"]

    _deliver(sessions, settings, T0 + timedelta(hours=1, minutes=59))
    assert smtp.handler.mailbox("buyer@customer.example") == []
    _deliver(sessions, settings, T0 + timedelta(hours=2))
    [mail] = smtp.handler.mailbox("buyer@customer.example")
    assert mail["Subject"] == "Welcome to Acme, Globex"
    with sessions() as session:
        assert session.get_one(OutboxMessage, held.id).status == OutboxStatus.DELIVERED
        # The window has closed: an override now is refused, the email is out.
        with pytest.raises(journeys.EngineError, match="no open override window"):
            journeys.override_step(session=session, settings=settings, step_run_id=step_run_id, actor=owner,
                                   now=T0 + timedelta(hours=2, minutes=1))


def _signal(sessions, settings, *, type_: str, at, payload) -> None:
    with sessions() as session:
        account_id = session.scalars(select(StepRun)).first().journey.account_id
        result = signals.ingest(session=session, raw={"type": type_, "account": {"id": account_id},
                                                      "payload": payload, "occurred_at": at.isoformat()},
                                source="test", now=at, settings=settings)
        assert result.status == "accepted"
        journeys.process_pending(session=session, settings=settings, now=at)
        session.commit()


def _cancelled_email(sessions, step_run_id):
    with sessions() as session:
        email = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "customer.email")).one()
        step_run = session.get_one(StepRun, step_run_id)
        [cancelled] = session.scalars(select(AuditEvent).where(AuditEvent.action == "outbox_cancelled")).all()
        touches = session.scalar(select(func.count()).select_from(CustomerTouch))
        session.expunge_all()
    return email, step_run, cancelled, touches


def test_a_sensitive_signal_during_the_window_cancels_the_held_email_at_release(fresh_database, sessions, smtp):
    settings = _settings(fresh_database, smtp)
    install_routing(sessions, settings.connectors)
    step_run_id, owner = _enroll(sessions, settings)
    _signal(sessions, settings, type_="sentiment.negative", at=T0 + timedelta(hours=1),
            payload={"channel": "survey", "score": -0.8, "comment": "not happy"})

    _deliver(sessions, settings, T0 + timedelta(hours=2))
    _deliver(sessions, settings, T0 + timedelta(hours=5))
    assert smtp.handler.mailbox("buyer@customer.example") == []
    assert [r.recipients for r in smtp.handler.received] == [[owner]]  # only the owner's notice
    email, step_run, cancelled, touches = _cancelled_email(sessions, step_run_id)
    assert email.status == OutboxStatus.CANCELLED and email.delivered_at is None and email.attempts == 0
    assert f"protected human zone: sentiment.negative on {T0:%Y-%m-%d}" in cancelled.reason
    assert "cancelled unsent at release" in cancelled.reason and cancelled.journey_id == step_run.journey_id
    assert step_run.status == "skipped" and "protected human zone" in step_run.reason
    assert touches == 0  # given back, as an override does


def test_an_unrelated_signal_during_the_window_does_not_stop_the_held_email(fresh_database, sessions, smtp):
    settings = _settings(fresh_database, smtp)
    install_routing(sessions, settings.connectors)
    step_run_id, _ = _enroll(sessions, settings)
    _signal(sessions, settings, type_="product.usage", at=T0 + timedelta(hours=1), payload={})

    _deliver(sessions, settings, T0 + timedelta(hours=2))
    [mail] = smtp.handler.mailbox("buyer@customer.example")
    assert mail["Subject"] == "Welcome to Acme, Globex"
    with sessions() as session:
        assert session.get_one(StepRun, step_run_id).status == "done"
        assert session.scalar(select(func.count()).select_from(CustomerTouch)) == 1


@pytest.mark.parametrize("ended_by", ["exit_on", "operator"])
def test_a_journey_that_ended_during_the_window_does_not_send_its_held_email(fresh_database, sessions, smtp,
                                                                               ended_by):
    settings = _settings(fresh_database, smtp)
    install_routing(sessions, settings.connectors)
    step_run_id, owner = _enroll(sessions, settings, WAITING_PLAYBOOK)
    if ended_by == "exit_on":
        _signal(sessions, settings, type_="account.churned", at=T0 + timedelta(hours=1), payload={})
    else:
        with sessions() as session:
            journey_id = session.get_one(StepRun, step_run_id).journey_id
            journeys.end_journey(session=session, settings=settings, journey_id=journey_id, actor=owner,
                                 now=T0 + timedelta(hours=1), reason="wrong account")
            session.commit()

    _deliver(sessions, settings, T0 + timedelta(hours=3))
    assert smtp.handler.mailbox("buyer@customer.example") == []
    email, step_run, cancelled, touches = _cancelled_email(sessions, step_run_id)
    assert email.status == OutboxStatus.CANCELLED and email.attempts == 0
    assert f"the journey ended on {T0:%Y-%m-%d}" in cancelled.reason
    assert ("account.churned received" if ended_by == "exit_on" else "wrong account") in cancelled.reason
    assert touches == 0


def test_a_held_message_whose_release_check_nobody_registers_stays_unsent(sessions):
    with sessions() as session:
        message = outbox.enqueue(session, kind="customer.email", target="email", at=T0,
                                 idempotency_key="held-unchecked", connector="journal",
                                 payload={"args": {"to": "buyer@customer.example"},
                                          outbox.HELD: {"check": "no.such.check"}})
        behind = outbox.enqueue(session, kind="notify.email", target="email", at=T0 + timedelta(minutes=1),
                                idempotency_key="behind-the-unchecked", connector="journal",
                                payload={"args": {"to": "owner@acme.example"}})
        session.commit()
        # limit=1: the unchecked row comes first, is passed over and put back an hour; the next one still goes.
        assert outbox.claim(session, now=T0 + timedelta(hours=1), worker_id="w1", lease=timedelta(minutes=5),
                            limit=1) == []
        session.commit()
        again = session.get_one(OutboxMessage, message.id)
        assert again.status == OutboxStatus.PENDING and again.claimed_by is None
        claimed = outbox.claim(session, now=T0 + timedelta(hours=1), worker_id="w1", lease=timedelta(minutes=5),
                               limit=1)
        assert [m.id for m in claimed] == [behind.id]
        outbox.mark_delivered(message=claimed[0], at=T0 + timedelta(hours=1))
        session.commit()
        # Naming the registered check, it is asked: a held message whose step run is gone is cancelled.
        message.payload = {**message.payload, outbox.HELD: {"check": "journeys.held_send", "step_run_id": 999}}
        session.commit()
        assert outbox.claim(session, now=T0 + timedelta(hours=3), worker_id="w1", lease=timedelta(minutes=5),
                            limit=10) == []
        session.commit()
        assert session.get_one(OutboxMessage, message.id).status == OutboxStatus.CANCELLED
