"""Several delivery worker processes, and one killed mid-send, against the real channel connectors."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import Counter
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
from orchestrator.delivery import outbox
from orchestrator.delivery.deliver import deliver_due
from orchestrator.delivery.routing import install_routing
from orchestrator.models import OutboxMessage, OutboxStatus
from tests import factories
from tests.channels.fake_slack import TOKEN
from tests.channels.workers import run_worker
from tests.conftest import T0
from tests.factories import AccountFactory, OwnerFactory


@pytest.fixture
def sessions(fresh_database) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def channel_config(slack, smtp, receiver) -> dict[str, Any]:
    return {"slack": {"token": TOKEN, "base_url": slack.base_url, "timeout": 60},
            "smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                     "from_address": "handoff@acme.example"},
            "webhook": {"signing_secret": "whsec-worker-test-secret", "allow_hosts": ["127.0.0.1"]}}


def enqueue(sessions, connectors, *, count: int, receiver) -> None:
    install_routing(sessions, connectors)
    with sessions.begin() as session:
        factories.bind(session)
        account = AccountFactory(name="Globex", owner=OwnerFactory(email="ana@acme.example"))
        factories.bind(None)
        for n in range(count):
            at = T0 - timedelta(minutes=1)
            outbox.enqueue(session, kind="notify.chat", target="chat", at=at, account_id=account.id,
                           idempotency_key=f"chat:{n}", payload={"args": {"to": "account.owner", "text": f"#{n}"}})
            outbox.enqueue(session, kind="notify.email", target="email", at=at, account_id=account.id,
                           idempotency_key=f"email:{n}",
                           payload={"args": {"to": "account.owner", "subject": f"#{n}", "body": "b"}})
            outbox.enqueue(session, kind="notify.webhook", target="webhook", at=at, account_id=account.id,
                           idempotency_key=f"hook:{n}", payload={"args": {"url": receiver.url(), "payload": {"n": n}}})


@pytest.mark.slow  # three spawned interpreters importing the app: seconds of start-up, not of delivery
def test_three_worker_processes_send_each_chat_email_and_webhook_once(fresh_database, sessions, slack, smtp,
                                                                      receiver):
    connectors = channel_config(slack, smtp, receiver)
    slack.state.add_user("ana@acme.example", "U0ANA")
    enqueue(sessions, connectors, count=15, receiver=receiver)
    url = fresh_database.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=run_worker, args=(url, connectors, T0.isoformat(), f"w{n}", 300.0, 4))
               for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]

    posted = Counter(m.metadata["event_payload"]["idempotency_key"] for m in slack.state.messages if m.metadata)
    assert len(posted) == 15 and set(posted.values()) == {1}
    mailed = Counter(r.message["Subject"] for r in smtp.handler.received)
    assert len(mailed) == 15 and set(mailed.values()) == {1}
    hooked = Counter(r.key for r in receiver.state.requests)
    assert len(hooked) == 15 and set(hooked.values()) == {1}
    with sessions() as session:
        statuses = Counter(session.scalars(select(OutboxMessage.status)))
    assert statuses == {OutboxStatus.DELIVERED: 45}


def test_a_worker_killed_after_slack_posted_leaves_a_retry_that_does_not_post_again(fresh_database, sessions,
                                                                                    slack, smtp, receiver):
    connectors = {"slack": channel_config(slack, smtp, receiver)["slack"]}
    slack.state.add_user("ana@acme.example", "U0ANA")
    install_routing(sessions, connectors)
    with sessions.begin() as session:
        factories.bind(session)
        account = AccountFactory(name="Globex", owner=OwnerFactory(email="ana@acme.example"))
        factories.bind(None)
        outbox.enqueue(session, kind="notify.chat", target="chat", at=T0, account_id=account.id,
                       idempotency_key="chat:killed", payload={"args": {"to": "account.owner", "text": "hello"}})
    slack.state.fail("chat.postMessage", "hang_after")  # Slack posts, the answer never comes
    url = fresh_database.render_as_string(hide_password=False)
    worker = multiprocessing.get_context("spawn").Process(
        target=run_worker, args=(url, connectors, T0.isoformat(), "doomed", 60.0, 10))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not slack.state.messages:
            assert worker.is_alive() and time.monotonic() < deadline, "the worker never posted"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.join(timeout=30)
    assert worker.exitcode == -signal.SIGKILL

    settings = Settings(database_url=fresh_database, exception_owner="ops-lead@acme.example", connectors=connectors)
    assert deliver_due(sessions=sessions, settings=settings, registry=load_registry(), now=T0 + timedelta(seconds=30),
                       worker_id="survivor").claimed == 0  # the dead worker's lease still holds
    report = deliver_due(sessions=sessions, settings=settings, registry=load_registry(),
                         now=T0 + timedelta(seconds=61), worker_id="survivor")
    assert report.delivered == 1
    [posted] = slack.state.messages
    with sessions() as session:
        message = session.scalars(select(OutboxMessage)).one()
    assert (message.status, message.remote_id) == (OutboxStatus.DELIVERED, f"D0ANA/{posted.ts}")
    assert slack.state.calls.count("chat.postMessage") == 1
