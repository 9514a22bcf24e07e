"""Delivery: lease claims, batches per connector, delivered / retry (jitter, Retry-After) / dead, workers."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import schema
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory
from orchestrator.delivery import outbox
from orchestrator.delivery.deliver import deliver_due
from orchestrator.delivery.routing import ROUTING_KEY, Routing, install_routing
from orchestrator.models import ExceptionItem, ExternalId, OutboxMessage, OutboxStatus
from orchestrator.worker.jobs import all_jobs
from tests.conftest import T0
from tests.delivery import fakes
from tests.delivery.workers import run_worker, settings_for
from tests.factories import AccountFactory


class Deployment:
    """A migrated database with the fake CRM as the default CRM, as a runtime would wire it."""

    def __init__(self, url: URL, tmp_path: Path, **config: Any) -> None:
        self.url = url.render_as_string(hide_password=False)
        self.remote = fakes.Remote(tmp_path / "remote")
        self.config = {"remote": str(self.remote.path), **config}
        self.settings: Settings = settings_for(self.url, **self.config)
        self.engine: Engine = make_engine(url)
        schema.upgrade(self.engine)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        install_routing(self.sessions, self.settings.connectors)

    def enqueue(self, count: int, *, target: str = "crm", kind: str = "crm.create_task") -> list[int]:
        with self.sessions.begin() as session:
            return [outbox.enqueue(session, kind=kind, target=target, payload={"subject": f"Task {n}"},
                                   idempotency_key=f"msg:{n}", at=T0 - timedelta(minutes=1)).id
                    for n in range(count)]

    def deliver(self, *, at=T0, **overrides: Any):
        settings = settings_for(self.url, **{**self.config, **overrides.pop("config", {})})
        return deliver_due(sessions=self.sessions, settings=settings, registry=fakes.registry(), now=at,
                           worker_id=overrides.pop("worker_id", "w1"), rng=random.Random(7), **overrides)

    def messages(self) -> list[OutboxMessage]:
        with self.sessions() as session:
            return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))

    def exception_items(self) -> list[ExceptionItem]:
        with self.sessions() as session:
            return list(session.scalars(select(ExceptionItem)))


@pytest.fixture
def deployment(fresh_database: URL, tmp_path: Path) -> Iterator[Deployment]:
    made = Deployment(fresh_database, tmp_path)
    yield made
    made.engine.dispose()


def test_enqueue_routes_by_the_accounts_source_then_the_default_crm_then_the_journal(session: Session) -> None:
    salesforce_account = AccountFactory()
    session.add(ExternalId(kind="account", local_id=salesforce_account.id, source="salesforce",
                           external_id="001A"))
    plain_account = AccountFactory()
    session.flush()

    def route(target: str, account_id: int | None, key: str) -> str | None:
        return outbox.enqueue(session, kind="k", target=target, payload={}, idempotency_key=key, at=T0,
                              account_id=account_id).connector

    # The embedded default: no connector configured, every write goes to the files journal.
    assert route("crm", salesforce_account.id, "a") == "files"
    assert route("email", None, "b") == "files"
    session.info[ROUTING_KEY] = Routing.from_connectors(
        {"hubspot": {"default_crm": True}, "salesforce": {}, "smtp": {}, "files": {"targets": ["webhook"]}})
    assert route("crm", salesforce_account.id, "c") == "salesforce"
    assert route("crm", plain_account.id, "d") == "hubspot"
    assert route("email", None, "e") == "smtp"
    assert route("webhook", None, "f") == "files"
    assert route("chat", None, "g") == "slack"  # not enabled, not a journal target: waits, and says why
    session.info[ROUTING_KEY] = Routing.from_connectors({"salesforce": {"enabled": False}, "files": {}})
    assert route("crm", salesforce_account.id, "h") == "files"


def test_due_messages_go_out_in_batches_of_max_batch_with_their_remote_ids(deployment: Deployment) -> None:
    deployment.enqueue(7)

    report = deployment.deliver()

    assert (report.claimed, report.delivered, report.pushes) == (7, 7, 3)  # max_batch 3: 3 + 3 + 1
    rows = deployment.messages()
    assert {m.status for m in rows} == {"delivered"} and {m.connector for m in rows} == {"fakecrm"}
    assert sorted(m.remote_id for m in rows) == sorted(r["remote_id"] for r in deployment.remote.records())
    assert all(m.claimed_by is None and m.claimed_until is None and m.attempts == 1 for m in rows)
    assert deployment.deliver().claimed == 0


def test_a_transient_failure_backs_off_with_jitter_and_is_then_delivered_once(deployment: Deployment) -> None:
    deployment.enqueue(1)
    config = {"fail_first": 2}

    first = deployment.deliver(config=config)
    [message] = deployment.messages()
    assert (first.retried, message.status, message.attempts, message.last_error) == (
        1, "pending", 1, "503 Service Unavailable")
    assert T0 + timedelta(seconds=15) <= message.next_attempt_at <= T0 + timedelta(seconds=30)
    assert deployment.deliver(config=config, at=T0 + timedelta(seconds=14)).claimed == 0  # not due yet

    deployment.deliver(config=config, at=T0 + timedelta(hours=1))
    third = deployment.deliver(config=config, at=T0 + timedelta(hours=2))

    [message] = deployment.messages()
    assert (third.delivered, message.status, message.attempts) == (1, "delivered", 3)
    assert [row["key"] for row in deployment.remote.records()] == ["msg:0"]
    assert deployment.exception_items() == []


def test_jitter_spreads_retries_of_messages_that_failed_together(deployment: Deployment) -> None:
    deployment.enqueue(6)
    deployment.deliver(config={"fail_first": 1})
    retry_times = {m.next_attempt_at for m in deployment.messages()}
    assert len(retry_times) > 1
    assert all(T0 + timedelta(seconds=15) <= at <= T0 + timedelta(seconds=30) for at in retry_times)


def test_retry_after_from_the_remote_side_sets_the_next_attempt(deployment: Deployment) -> None:
    deployment.enqueue(1)
    report = deployment.deliver(config={"mode": "rate_limited"})
    [message] = deployment.messages()
    assert report.retried == 1 and message.next_attempt_at == T0 + timedelta(seconds=120)
    assert deployment.deliver(config={"mode": "rate_limited"}, at=T0 + timedelta(seconds=120)).delivered == 1


def test_a_permanent_failure_goes_dead_at_once_with_an_owned_exception_item(deployment: Deployment) -> None:
    deployment.enqueue(2)

    report = deployment.deliver(config={"mode": "permanent"})

    assert (report.dead, report.retried) == (2, 0)
    assert {(m.status, m.attempts) for m in deployment.messages()} == {("dead", 1)}
    items = deployment.exception_items()
    assert len(items) == 2 and {i.category for i in items} == {"delivery_failed"}
    assert {i.owner for i in items} == {"ops-lead@example.com"}
    assert "refused: FIELD_INTEGRITY_EXCEPTION: Subject too long" in items[0].message
    assert deployment.deliver(at=T0 + timedelta(days=1)).claimed == 0
    assert deployment.remote.calls() == []


def test_a_connector_bug_or_a_missing_connector_delays_and_never_drops(deployment: Deployment) -> None:
    deployment.enqueue(1)
    crash = deployment.deliver(config={"mode": "crash"})
    assert crash.retried == 1 and deployment.messages()[0].last_error == "RuntimeError in fakecrm"

    with deployment.sessions.begin() as session:
        outbox.enqueue(session, kind="notify.email", target="email", payload={}, idempotency_key="mail",
                       at=T0, connector="smtp")
    report = deployment.deliver(at=T0 + timedelta(hours=1))
    by_key = {m.idempotency_key: m for m in deployment.messages()}
    assert report.delivered == 1 and by_key["msg:0"].status == "delivered"
    assert by_key["mail"].status == "pending" and by_key["mail"].last_error == "connector smtp is not installed"


def test_deliver_for_one_connector_leaves_the_others_alone(deployment: Deployment) -> None:
    deployment.enqueue(2)
    assert deployment.deliver(connector="salesforce").claimed == 0
    assert deployment.deliver(connector="fakecrm").delivered == 2


def test_a_message_under_a_live_lease_is_not_claimed_again_until_it_expires(deployment: Deployment) -> None:
    deployment.enqueue(1)
    with deployment.sessions.begin() as session:
        [claimed] = outbox.claim(session, now=T0, worker_id="gone", lease=timedelta(minutes=5), limit=10)
    assert deployment.deliver(at=T0 + timedelta(minutes=4)).claimed == 0
    assert deployment.deliver(at=T0 + timedelta(minutes=5)).delivered == 1


@pytest.mark.parametrize("dies", ["die_before_push", "die_after_push"])
def test_a_worker_killed_after_claiming_leaves_the_message_to_be_claimed_again_and_delivered_once(
        deployment: Deployment, tmp_path: Path, dies: str) -> None:
    """#12's lease test: SIGKILL a worker process mid-delivery; after the lease, another delivers it once."""
    deployment.enqueue(1)
    marker = tmp_path / "marker"
    config = {**deployment.config, "mode": dies, "marker": str(marker), "worker": "doomed"}
    context = multiprocessing.get_context("spawn")
    worker = context.Process(target=run_worker, args=(deployment.url, config, T0.isoformat(), 60.0, 10))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert worker.is_alive() and time.monotonic() < deadline, "the worker never reached its push"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.join(timeout=30)
    assert worker.exitcode == -signal.SIGKILL

    [message] = deployment.messages()
    assert (message.status, message.claimed_by) == ("pending", "doomed")
    assert message.claimed_until == T0 + timedelta(seconds=60)
    assert deployment.deliver(at=T0 + timedelta(seconds=59)).claimed == 0  # the lease still holds

    report = deployment.deliver(at=T0 + timedelta(seconds=61), worker_id="survivor")

    [message] = deployment.messages()
    assert (report.delivered, message.status, message.claimed_by) == (1, "delivered", None)
    assert [row["key"] for row in deployment.remote.records()] == ["msg:0"]  # delivered once
    calls = [row["worker"] for row in deployment.remote.calls()]
    assert calls == (["doomed", "w"] if dies == "die_after_push" else ["w"])  # the remote deduplicated the retry


def test_several_worker_processes_deliver_each_message_exactly_once(deployment: Deployment) -> None:
    deployment.enqueue(60)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=run_worker,
                               args=(deployment.url, {**deployment.config, "worker": f"w{n}"}, T0.isoformat(),
                                     300.0, 7))
               for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]

    calls = Counter(row["key"] for row in deployment.remote.calls())
    assert len(calls) == 60 and set(calls.values()) == {1}  # each pushed once: no lease was shared
    assert {m.status for m in deployment.messages()} == {"delivered"}
    with deployment.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.status == OutboxStatus.PENDING)) == 0


def test_outbox_deliver_is_a_registered_job_that_delivers(deployment: Deployment) -> None:
    from orchestrator.clock import FrozenClock
    from orchestrator.runtime import Runtime
    from orchestrator.worker.jobs import run_at

    deployment.enqueue(2)
    # The job loads the installed registry; the fake CRM is not installed, so route to the journal.
    settings = Settings(database_url=deployment.settings.database_url, exception_owner="ops-lead@example.com",
                        connectors={"files": {"journal": str(deployment.remote.path) + ".journal"}})
    runtime = Runtime(settings=settings, engine=deployment.engine, sessions=deployment.sessions,
                      clock=FrozenClock(T0))
    with deployment.sessions.begin() as session:
        for message in session.scalars(select(OutboxMessage)):
            message.connector = "files"
    jobs = {job.id: job for job in all_jobs(runtime)}
    assert "sync.files" not in jobs  # the journal has no folder to pull from
    result = run_at(jobs["outbox.deliver"], runtime=runtime, now=T0)
    assert (result.items, result.errors) == (2, 0)
