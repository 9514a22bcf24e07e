"""End to end: playbook steps enqueue notify.chat / notify.email / notify.webhook through the engine,
`deliver_due` delivers the outbox through the real connectors, and each message arrives exactly once
at the fake Slack, the local SMTP server and the local webhook receiver, although each of them
failed or dropped the connection after accepting on the first attempt."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from connectors.registry import load_registry
from orchestrator import schema
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory
from orchestrator.delivery.deliver import deliver_due
from orchestrator.delivery.routing import install_routing
from orchestrator.intake import signals
from orchestrator.journeys import engine as journeys
from orchestrator.models import ExceptionItem, OutboxMessage, OutboxStatus
from tests import factories
from tests.channels.fake_slack import TOKEN
from tests.conftest import T0
from tests.engine.conftest import HEADER, install_playbook
from tests.factories import AccountFactory, OwnerFactory

PLAYBOOK = """
    id: usage-alerts
    name: Usage alerts
    stage: adopt
""" + HEADER + """
    enroll: {{on: product.usage, once_per: account}}
    steps:
      - id: chat-owner
        kind: automated
        oversight: out_of_loop
        risk: {{error_cost: low, correction: fast}}
        do: notify.chat
        with:
          to: account.owner
          text: "Usage dropped at {{{{ account.name }}}}: {{{{ signal.active_users }}}} users"
      - id: mail-manager
        kind: automated
        oversight: out_of_loop
        risk: {{error_cost: low, correction: fast}}
        do: notify.email
        with:
          to: owner.manager
          subject: "Usage dropped at {{{{ account.name }}}}"
          body: "Active users: {{{{ signal.active_users }}}}."
      - id: hook
        kind: automated
        oversight: out_of_loop
        risk: {{error_cost: low, correction: fast}}
        do: notify.webhook
        with: {{url: "{url}", payload: {{alert: usage-drop, severity: 2}}}}
      - id: done
        kind: exit
        reason: alerted
"""


@pytest.fixture
def sessions(fresh_database) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def deployment(fresh_database, slack, smtp, receiver) -> Settings:
    connectors: dict[str, Any] = {
        "slack": {"token": TOKEN, "base_url": slack.base_url, "timeout": 5},
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                 "from_address": "handoff@acme.example"},
        "webhook": {"signing_secret": "whsec-end-to-end-secret", "allow_hosts": ["127.0.0.1"], "read_timeout": 5},
    }
    return Settings(database_url=fresh_database, exception_owner="ops-lead@acme.example", connectors=connectors)


def test_playbook_notifications_arrive_exactly_once_despite_failures(fresh_database, sessions, slack, smtp, receiver):
    settings = deployment(fresh_database, slack, smtp, receiver)
    install_routing(sessions, settings.connectors)
    with sessions() as session:
        factories.bind(session)
        manager = OwnerFactory(email="bo@acme.example", name="Bo")
        owner = OwnerFactory(email="ana@acme.example", name="Ana", manager=manager)
        account = AccountFactory(name="Globex", owner=owner)
        install_playbook(session, PLAYBOOK.format(url=receiver.url("/alerts")))
        result = signals.ingest(session=session, raw={"type": "product.usage", "account": {"id": account.id},
                                                      "payload": {"active_users": 3},
                                                      "occurred_at": T0.isoformat()},
                                source="test", now=T0, settings=settings)
        assert result.status == "accepted"
        journeys.process_pending(session=session, settings=settings, now=T0)
        session.commit()
        factories.bind(None)
    slack.state.add_user("ana@acme.example", "U0ANA")
    # Every remote side fails its first attempt; SMTP and Slack after accepting the message.
    slack.state.fail("chat.postMessage", "drop_after")
    smtp.handler.faults.append("drop_after")
    receiver.state.faults.extend(["http:503", "drop_after"])

    registry, now, passes = load_registry(), T0, 0
    while passes < 12:
        deliver_due(sessions=sessions, settings=settings, registry=registry, now=now, worker_id="w1")
        passes += 1
        with sessions() as session:
            pending = session.scalars(select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.PENDING)).all()
        if not pending:
            break
        now += timedelta(hours=1)
    assert not pending, [m.last_error for m in pending]

    with sessions() as session:
        messages = {m.kind: m for m in session.scalars(select(OutboxMessage))}
        assert session.scalars(select(ExceptionItem)).all() == []
    assert set(messages) == {"notify.chat", "notify.email", "notify.webhook"}
    assert {m.connector for m in messages.values()} == {"slack", "smtp", "webhook"}
    assert all(m.status == OutboxStatus.DELIVERED and m.attempts >= 2 for m in messages.values())

    # Slack: posted once, its ts recorded; the retry found it by metadata instead of posting again.
    [posted] = slack.state.messages
    assert posted.text == "Usage dropped at Globex: 3 users" and posted.channel == "D0ANA"
    assert messages["notify.chat"].remote_id == f"D0ANA/{posted.ts}"
    assert slack.state.calls.count("chat.postMessage") == 1

    # SMTP: the server stored the first copy before the drop, so two copies crossed the wire, with one
    # Message-ID; the manager's mailbox shows one message.
    copies = [r for r in smtp.handler.received if r.recipients == ["bo@acme.example"]]
    assert len(copies) == 2 and copies[0].message["Message-ID"] == copies[1].message["Message-ID"]
    assert [m["Subject"] for m in smtp.handler.mailbox("bo@acme.example")] == ["Usage dropped at Globex"]
    assert messages["notify.email"].remote_id == copies[0].message["Message-ID"]

    # Webhook: 503, then read-and-dropped, then accepted; one delivery per idempotency key.
    assert len(receiver.state.requests) == 2
    [delivery] = receiver.state.deliveries().values()
    assert delivery.key == messages["notify.webhook"].idempotency_key
    assert delivery.json() == {"alert": "usage-drop", "severity": 2}
    assert delivery.path == "/alerts"


def test_a_webhook_step_aimed_at_cloud_metadata_goes_dead_with_an_owner(fresh_database, sessions, slack, smtp,
                                                                        receiver):
    settings = deployment(fresh_database, slack, smtp, receiver)
    install_routing(sessions, settings.connectors)
    text = textwrap.dedent(PLAYBOOK.format(url="http://169.254.169.254/latest/meta-data/"))
    with sessions() as session:
        factories.bind(session)
        account = AccountFactory(name="Initech", owner=OwnerFactory(email="ana@acme.example"))
        install_playbook(session, text)
        signals.ingest(session=session, raw={"type": "product.usage", "account": {"id": account.id},
                                             "payload": {"active_users": 1}, "occurred_at": T0.isoformat()},
                       source="test", now=T0, settings=settings)
        journeys.process_pending(session=session, settings=settings, now=T0)
        session.commit()
        factories.bind(None)
    slack.state.add_user("ana@acme.example", "U0ANA")
    deliver_due(sessions=sessions, settings=settings, registry=load_registry(), now=T0, worker_id="w1")
    with sessions() as session:
        hook = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "notify.webhook")).one()
        items = session.scalars(select(ExceptionItem)).all()
        mail = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "notify.email")).one()
    assert hook.status == OutboxStatus.DEAD and hook.attempts == 1
    assert "link-local address 169.254.169.254" in (hook.last_error or "")
    assert [item.category for item in items] == ["delivery_failed", "delivery_failed"]
    # The account has no manager: that email is dead too, with the reason, not retried forever.
    assert mail.status == OutboxStatus.DEAD and "manager has no email" in (mail.last_error or "")
    assert receiver.state.requests == []
