"""Outbox -> deliver_due -> HubSpot (the fake, through the real client), on SQLite and PostgreSQL.

Each fault test ends the same way: every Handoff task exists in HubSpot exactly once, associated with
its company, and every outbox message is delivered with the HubSpot task id.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from connectors.registry import load_registry
from orchestrator import schema
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory
from orchestrator.delivery import outbox
from orchestrator.delivery.deliver import deliver_due
from orchestrator.delivery.routing import install_routing
from orchestrator.models import Account, ExternalId, OutboxMessage, OutboxStatus, Owner, Task
from tests.conftest import T0
from tests.fakes.hubspot import FakeHubSpot

CREATE = r"/crm/v3/objects/tasks/batch/create$"


def settings_for(url: str, config: dict[str, Any]) -> Settings:
    return Settings(database_url=make_url(url), exception_owner="ops-lead@example.com",
                    calendars={"default": {"timezone": "America/New_York", "hours": "09:00-17:00"}},
                    connectors={"hubspot": config})


class Deployment:
    """A migrated database whose accounts live in the fake HubSpot, wired as a runtime would."""

    def __init__(self, url: URL, fake: FakeHubSpot, **config: Any) -> None:
        self.url = url.render_as_string(hide_password=False)
        self.fake = fake
        self.config = {"access_token": "test-token", "host": fake.url, "ca_bundle": fake.ca_path, **config}
        self.settings = settings_for(self.url, self.config)
        self.engine: Engine = make_engine(url)
        schema.upgrade(self.engine)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        install_routing(self.sessions, self.settings.connectors)
        self.companies: dict[int, str] = {}
        self.owner_id = 0
        self._next = 0

    def seed(self, accounts: int) -> None:
        owner_id = self.fake.add_owner(email="rep@acme.example", first="Rae", last="Rep")
        with self.sessions.begin() as session:
            owner = Owner(email="rep@acme.example", name="Rae Rep", role="ae", working_hours={})
            session.add(owner)
            session.flush()
            session.add(ExternalId(kind="owner", local_id=owner.id, source="hubspot", external_id=owner_id))
            self.owner_id = owner.id
            for n in range(accounts):
                company = self.fake.add("companies", {"name": f"Co {n}", "domain": f"co{n}.example"})
                account = Account(name=f"Co {n}", domain=f"co{n}.example", owner_id=owner.id, stage="adopt",
                                  stage_entered_at=T0, attributes={})
                session.add(account)
                session.flush()
                session.add(ExternalId(kind="account", local_id=account.id, source="hubspot", external_id=company))
                self.companies[account.id] = company

    def enqueue(self, count: int) -> None:
        accounts = sorted(self.companies)
        with self.sessions.begin() as session:
            for _ in range(count):
                task = Task(account_id=accounts[self._next % len(accounts)], owner_id=self.owner_id,
                            title=f"Renewal call {self._next}", due_at=T0 + timedelta(days=2), created_at=T0)
                self._next += 1
                session.add(task)
                session.flush()
                n = task.id
                message = outbox.enqueue(
                    session, kind="crm.create_task", target="crm", idempotency_key=f"task:{n}:create",
                    at=T0 - timedelta(minutes=1), account_id=task.account_id, task_id=n,
                    payload={"task_id": n, "subject": f"Renewal call {n}", "description": "brief",
                             "owner_email": "rep@acme.example", "due_at": (T0 + timedelta(days=2)).isoformat(),
                             "priority": "high", "status": "open"})
                assert message.connector == "hubspot"  # routed by the account's HubSpot id

    def deliver(self, *, at: datetime = T0, worker_id: str = "w1") -> Any:
        return deliver_due(sessions=self.sessions, settings=self.settings, registry=load_registry(), now=at,
                           worker_id=worker_id, rng=random.Random(3))

    def deliver_until_done(self, *, rounds: int = 12) -> None:
        at = T0
        for _ in range(rounds):
            self.deliver(at=at)
            if all(m.status != OutboxStatus.PENDING for m in self.messages()):
                return
            at += timedelta(hours=7)  # past any backoff
        raise AssertionError("messages still pending")

    def messages(self) -> list[OutboxMessage]:
        with self.sessions() as session:
            return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))

    def assert_exactly_once(self) -> None:
        tasks = self.fake.live("tasks")
        keys = Counter(t.properties.get("handoff_key") for t in tasks)
        messages = self.messages()
        assert messages and all(m.status == OutboxStatus.DELIVERED for m in messages), \
            [(m.id, m.status, m.last_error) for m in messages if m.status != OutboxStatus.DELIVERED]
        by_key = {t.properties["handoff_key"]: t for t in tasks}
        for message in messages:
            assert keys[message.idempotency_key] == 1, message.idempotency_key
            task = by_key[message.idempotency_key]
            assert message.remote_id == task.id
            assert message.account_id is not None
            assert self.fake.associated("tasks", task.id, "companies") == [self.companies[message.account_id]]
        assert len(tasks) == len(messages)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeHubSpot]:
    server = FakeHubSpot()
    server.start(ca_dir=tmp_path)
    server.add_property("tasks", "handoff_key", unique=True)
    yield server
    server.stop()


@pytest.fixture
def deployment(fresh_database: URL, fake: FakeHubSpot) -> Iterator[Deployment]:
    made = Deployment(fresh_database, fake)
    made.seed(5)
    yield made
    made.engine.dispose()


def test_steady_state_one_call_per_100_tasks(deployment: Deployment, fake: FakeHubSpot) -> None:
    deployment.enqueue(250)
    deployment.deliver()
    deployment.assert_exactly_once()
    assert fake.count(path=CREATE) == 3
    assert fake.count() == 3  # owners' HubSpot ids came from the synced external ids
    assert fake.count(status=429) == 0


def test_lost_response_after_commit(deployment: Deployment, fake: FakeHubSpot) -> None:
    deployment.enqueue(120)
    fake.drop("POST", CREATE, after_commit=True, times=2)
    deployment.deliver_until_done()
    deployment.assert_exactly_once()


def test_storm_of_5xx(deployment: Deployment, fake: FakeHubSpot) -> None:
    deployment.enqueue(60)
    fake.fail("POST", CREATE, times=8, status=503)
    fake.fail_after_commit("POST", CREATE, times=1, status=504)
    fake.fail("POST", r"/tasks/batch/read$", times=3, status=502)
    deployment.deliver_until_done()
    deployment.assert_exactly_once()


def test_ten_secondly_and_daily_429(deployment: Deployment, fake: FakeHubSpot) -> None:
    deployment.enqueue(30)
    fake.fail("POST", CREATE, times=1, status=429,
              body={"status": "error", "message": "You have reached your ten secondly limit.",
                    "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"},
              headers={"Retry-After": "1"})
    deployment.deliver()
    deployment.assert_exactly_once()
    # A day's worth used up: the messages wait for the reset instead of failing.
    deployment.enqueue(40)
    fake.exhaust_daily()
    deployment.deliver(at=T0 + timedelta(minutes=5))
    waiting = [m for m in deployment.messages() if m.status == OutboxStatus.PENDING]
    assert len(waiting) == 40 and all(m.next_attempt_at > T0 + timedelta(hours=5) for m in waiting)
    fake._daily_used = 0


def test_expired_token_with_oauth_refresh(fresh_database: URL, fake: FakeHubSpot) -> None:
    made = Deployment(fresh_database, fake, client_id=fake.client_id, client_secret=fake.client_secret,
                      refresh_token="test-refresh")
    try:
        made.seed(3)
        made.enqueue(15)
        fake.expire_token("test-token")
        made.deliver()
        made.assert_exactly_once()
        assert fake.count(path="/oauth/v1/token") == 1
    finally:
        made.engine.dispose()


def _worker(url: str, config: dict[str, Any]) -> None:
    settings = settings_for(url, config)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    install_routing(sessions, settings.connectors)
    deliver_due(sessions=sessions, settings=settings, registry=load_registry(), now=T0, worker_id="doomed",
                lease=timedelta(minutes=2))


def test_worker_killed_after_hubspot_committed(deployment: Deployment, fake: FakeHubSpot) -> None:
    """The worker dies between HubSpot's commit and its own mark: the next worker must not create again."""
    deployment.enqueue(50)
    fake.hold("POST", CREATE)  # commit, then keep the answer until released
    process = multiprocessing.get_context("spawn").Process(target=_worker, args=(deployment.url, deployment.config))
    process.start()
    try:
        assert fake.held.wait(timeout=120), "the worker never reached HubSpot"
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        process.join(timeout=30)
    finally:
        fake.release()
        if process.is_alive():
            process.kill()
    assert len(fake.live("tasks")) == 50  # created, but nobody knows
    assert all(m.status == OutboxStatus.PENDING for m in deployment.messages())
    # After the lease, another worker takes over: its create hits the unique key (409) and reads back.
    time.sleep(0.1)
    deployment.deliver(at=T0 + timedelta(minutes=3), worker_id="w2")
    deployment.assert_exactly_once()
    assert fake.count(path=CREATE, status=409) == 1


def test_an_escalation_writes_the_new_owner_and_priority_to_the_hubspot_task_once(
        deployment: Deployment, fake: FakeHubSpot) -> None:
    from orchestrator.playbook.model import Assignment, Escalation
    from orchestrator.work.escalations import fire_rung
    from orchestrator.work.sla import sla_of

    manager_hubspot_id = fake.add_owner(email="mgr@acme.example", first="Mo", last="Manager")
    with deployment.sessions.begin() as session:
        manager = Owner(email="mgr@acme.example", name="Mo Manager", role="manager", working_hours={})
        session.add(manager)
        session.flush()
        session.add(ExternalId(kind="owner", local_id=manager.id, source="hubspot", external_id=manager_hubspot_id))
        account_id = sorted(deployment.companies)[0]
        task = Task(account_id=account_id, owner_id=deployment.owner_id, title="Renewal call",
                    due_at=T0 + timedelta(days=2), created_at=T0)
        session.add(task)
        session.flush()
        task_id = task.id
        outbox.enqueue(session, kind="crm.create_task", target="crm", idempotency_key=f"task:{task_id}:create",
                       at=T0 - timedelta(minutes=1), account_id=account_id, task_id=task_id,
                       payload={"task_id": task_id, "subject": "Renewal call", "description": "brief",
                                "owner_email": "rep@acme.example", "due_at": (T0 + timedelta(days=2)).isoformat(),
                                "priority": "normal", "status": "open"})
    deployment.deliver()
    (remote,) = fake.live("tasks")
    assert remote.properties["hs_task_priority"] == "MEDIUM"
    with deployment.sessions() as session:
        stored = session.get_one(Task, task_id)
        assert (stored.crm_source, stored.crm_id) == ("hubspot", remote.id)  # delivery remembered it

    rungs = (Escalation(anchor="due", offset=None, raise_priority=True),
             Escalation(anchor="due", offset=None, reassign=Assignment(to="mgr@acme.example")))
    with deployment.sessions.begin() as session:
        stored = session.get_one(Task, task_id)
        sla = sla_of(session, settings=deployment.settings, task=stored)
        sla = type(sla)(calendar=sla.calendar, rungs=rungs, playbook_id=None, playbook_version=None, step_id=None)
        for _ in rungs:
            fire_rung(session, settings=deployment.settings, task=stored, sla=sla, now=T0 + timedelta(days=3))
    updates = [m for m in deployment.messages() if m.kind == "crm.update_task"]
    assert len(updates) == 2 and {m.payload["crm_id"] for m in updates} == {remote.id}
    fake.drop("POST", r"/crm/v3/objects/tasks/batch/update$", after_commit=True, times=1)
    deployment.deliver_until_done()
    (after,) = fake.live("tasks")  # updated in place, never a second task
    assert after.id == remote.id
    assert after.properties["hubspot_owner_id"] == manager_hubspot_id
    assert after.properties["hs_task_priority"] == "HIGH"


def test_a_task_of_a_deal_s_journey_is_associated_with_the_deal_too(deployment: Deployment,
                                                                       fake: FakeHubSpot) -> None:
    from orchestrator.models import Deal, Journey, PlaybookVersion

    account_id, company = next(iter(deployment.companies.items()))
    remote_deal = fake.add("deals", {"dealname": "Co 0 renewal", "dealstage": "contractsent"})
    with deployment.sessions.begin() as session:
        deal = Deal(account_id=account_id, name="Co 0 renewal", stage="contractsent")
        version = PlaybookVersion(playbook_id="renew", version=1, name="Renew", stage="renew", checksum="0" * 64,
                                  source_text="id: renew", source_path="renew.yaml")
        session.add_all([deal, version])
        session.flush()
        session.add(ExternalId(kind="deal", local_id=deal.id, source="hubspot", external_id=remote_deal))
        journey = Journey(account_id=account_id, playbook_id="renew", playbook_version_id=version.id,
                          enrollment_key="renew:1", deal_id=deal.id, status="active", enrolled_at=T0)
        session.add(journey)
        session.flush()
        journey_id = journey.id
    deployment.enqueue(2)
    with deployment.sessions.begin() as session:
        first = session.scalars(select(Task).order_by(Task.id)).first()
        assert first is not None
        first.journey_id = journey_id
    deployment.deliver()
    deployment.assert_exactly_once()
    by_key = {t.properties["handoff_key"]: t for t in fake.live("tasks")}
    with_deal = [t for t in by_key.values() if fake.associated("tasks", t.id, "deals")]
    assert [t.properties["handoff_key"] for t in with_deal] == [f"task:{first.id}:create"]
    assert fake.associated("tasks", with_deal[0].id, "deals") == [remote_deal]
    assert 216 in fake.associations[("tasks", with_deal[0].id)][("deals", remote_deal)]
    assert fake.associated("tasks", with_deal[0].id, "companies") == [company]


def test_a_task_is_associated_with_its_contact_chosen_by_the_core(deployment: Deployment, fake: FakeHubSpot) -> None:
    """Champion first; else the first contact with a HubSpot id; the trigger's own person before both;
    an account without HubSpot contacts still gets its task, associated with its company only."""
    from orchestrator.durations import parse_duration
    from orchestrator.models import Contact, Signal
    from orchestrator.playbook.model import Sla
    from orchestrator.work.briefs import Brief
    from orchestrator.work.tasks import create_task

    with_champion, without_hubspot_champion, triggered, bare = sorted(deployment.companies)[:4]
    remote: dict[str, str] = {}
    with deployment.sessions.begin() as session:
        def contact(account_id: int, name: str, role: str, *, in_hubspot: bool = True) -> None:
            email = f"{name.lower()}@{account_id}.example"
            row = Contact(account_id=account_id, name=name, email=email, role=role)
            session.add(row)
            session.flush()
            if in_hubspot:
                remote[name] = fake.add("contacts", {"email": email, "firstname": name})
                session.add(ExternalId(kind="contact", local_id=row.id, source="hubspot", external_id=remote[name]))

        contact(with_champion, "Uma", "user")
        contact(with_champion, "Cam", "champion")
        contact(without_hubspot_champion, "Chad", "champion", in_hubspot=False)
        contact(without_hubspot_champion, "Ada", "admin")
        contact(triggered, "Tia", "champion")
        contact(triggered, "Lee", "user")
        contact(bare, "Nia", "champion", in_hubspot=False)
        lead = Signal(type="lead.created", dedupe_key="lead:1", account_id=triggered, source="webhook",
                      payload={"email": f"LEE@{triggered}.example"}, occurred_at=T0)
        session.add(lead)
        session.flush()
        owner = session.get(Owner, deployment.owner_id)
        assert owner is not None
        for account_id in (with_champion, without_hubspot_champion, triggered, bare):
            account = session.get(Account, account_id)
            assert account is not None
            create_task(session, settings=deployment.settings, account=account, owner=owner, kind="action",
                        title=f"Call {account.name}", recommendation="Call",
                        brief=Brief(data={"trigger": None, "recommendation": "Call", "assigned": "owner"},
                                    text="Why you got this"),
                        sla=Sla(due=parse_duration("2 business days"), ack=None, escalate=()), now=T0,
                        signal=lead if account_id == triggered else None)
    deployment.deliver()
    deployment.assert_exactly_once()
    by_account = {m.account_id: m.remote_id for m in deployment.messages()}
    assert fake.associated("tasks", by_account[with_champion], "contacts") == [remote["Cam"]]
    assert 204 in fake.associations[("tasks", by_account[with_champion])][("contacts", remote["Cam"])]
    assert fake.associated("tasks", by_account[without_hubspot_champion], "contacts") == [remote["Ada"]]
    assert fake.associated("tasks", by_account[triggered], "contacts") == [remote["Lee"]]
    assert fake.associated("tasks", by_account[bare], "contacts") == []
