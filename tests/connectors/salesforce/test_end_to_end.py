"""Salesforce end to end, on SQLite and PostgreSQL: sync -> engine -> outbox -> Task in the org -> rep completes
it -> sync -> the Handoff task closes and the journey moves on. Faults on the way never double a Task.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from connectors.registry import load_registry
from connectors.sync import sync
from orchestrator import schema
from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.db import unit_of_work
from orchestrator.delivery.deliver import deliver_due
from orchestrator.delivery.routing import install_routing
from orchestrator.journeys.drain import drain_signals
from orchestrator.models import Journey, OutboxMessage, OutboxStatus, Owner, Task
from orchestrator.runtime import Runtime, build_runtime
from orchestrator.work import sla as _sla  # noqa: F401  (installs the CRM-status pause, as every command does)
from tests.connectors.salesforce.conftest import base_config
from tests.engine.conftest import HEADER, install_playbook
from tests.fakes.salesforce import FakeSalesforce, seed_users

KICKOFF = """
    id: sf-kickoff
    name: Kickoff after a won deal
    stage: onboard
""" + HEADER + """
    enroll: {on: deal.closed_won, once_per: account}
    steps:
      - id: kickoff
        kind: human
        assign: {to: account.owner}
        task:
          title: "Kickoff with {{ account.name }}"
          recommend: "Book a kickoff for the {{ deal.name }} rollout."
          brief: [trigger, account, deal]
        sla: {ack: 4 business hours, due: 2 business days}
      - id: wait-usage
        kind: wait
        for: product.usage
        timeout: 14d
        on_timeout: {goto: done}
      - id: done
        kind: exit
        reason: finished
"""


class Org:
    """A Handoff deployment wired to the fake org; time is the fake's real time (SystemModstamp)."""

    def __init__(self, url: URL, fake: FakeSalesforce, *, playbook: str = KICKOFF, **config: Any) -> None:
        self.fake = fake
        self.config = base_config(fake, history_days=1, overlap_seconds=120, **config)
        # The org stamps rows with the real time; Handoff's clock starts there and moves only when told.
        self.clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
        settings = Settings(database_url=url, exception_owner="ops-lead@example.com",
                            connectors={"salesforce": self.config},
                            calendars={"default": {"timezone": "America/New_York", "hours": "09:00-17:00"}})
        self.runtime: Runtime = build_runtime(settings, self.clock)
        schema.upgrade(self.runtime.engine)
        install_routing(self.runtime.sessions, settings.connectors)
        with unit_of_work(self.runtime.sessions) as session:
            install_playbook(session, playbook)

    def sync(self) -> Any:
        report = sync(runtime=self.runtime, name="salesforce")
        drain_signals(sessions=self.runtime.sessions, settings=self.runtime.settings, now=self.clock.now())
        return report

    def deliver(self, *, rounds: int = 1) -> None:
        for _ in range(rounds):
            deliver_due(sessions=self.runtime.sessions, settings=self.runtime.settings, registry=load_registry(),
                        now=self.clock.now(), worker_id="w1", rng=random.Random(3))
            self.clock.advance(timedelta(hours=1))  # past any backoff

    def tasks(self) -> list[Task]:
        with self.runtime.sessions() as session:
            return list(session.scalars(select(Task).order_by(Task.id)))

    def outbox(self) -> list[OutboxMessage]:
        with self.runtime.sessions() as session:
            return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))

    def assert_each_task_once_with_its_brief(self) -> None:
        handoff_tasks = self.tasks()
        assert handoff_tasks
        remote = self.fake.org.find("Task")
        by_key: dict[str, list[dict[str, Any]]] = {}
        for row in remote:
            by_key.setdefault(row["Handoff_Key__c"], []).append(row)
        for task in handoff_tasks:
            copies = by_key.get(f"task:{task.id}:create", [])
            assert len(copies) == 1, f"task {task.id} exists {len(copies)} times in Salesforce"
            assert copies[0]["Description"] == task.brief_text and task.brief_text
        assert len(remote) == len(handoff_tasks)


@pytest.fixture
def org(fresh_database: URL, tmp_path: Path) -> Iterator[Org]:
    with FakeSalesforce(tmp_dir=tmp_path) as fake:
        users = seed_users(fake.org)
        for index in range(3):
            account = fake.org.insert("Account", {"Name": f"Customer {index}", "Website": f"c{index}.example",
                                                  "OwnerId": users[1 + index % 2]["Id"], "Segment__c": "Mid-Market"})
            fake.org.insert("Opportunity", {"AccountId": account["Id"], "Name": f"Platform {index}",
                                            "StageName": "Negotiation", "Amount": 30000.0,
                                            "CloseDate": date(2026, 12, 31), "OwnerId": users[1]["Id"]})
        made = Org(fresh_database, fake)
        yield made
        made.runtime.close()


def _win_all_deals(fake: FakeSalesforce) -> None:
    for opportunity in fake.org.find("Opportunity"):
        fake.org.update("Opportunity", opportunity["Id"], {"StageName": "Closed Won"}, system=False)


def test_a_won_deal_in_salesforce_becomes_one_task_there_and_its_completion_moves_the_journey(org: Org) -> None:
    first = org.sync()
    assert first.created >= 3 + 3 + 3  # owners, accounts, deals
    with org.runtime.sessions() as session:
        assert session.scalars(select(Owner).where(Owner.email == "rep0@acme.example")).one().role == "csm"
    _win_all_deals(org.fake)
    org.sync()
    tasks = org.tasks()
    assert len(tasks) == 3 and {t.title for t in tasks} == {f"Kickoff with Customer {n}" for n in range(3)}
    assert {m.connector for m in org.outbox()} == {"salesforce"}
    org.deliver()
    org.assert_each_task_once_with_its_brief()
    assert org.fake.org.api_calls(method="PATCH", path="/composite/sobjects/Task/") == 1  # one call for all three
    remote = org.fake.org.find("Task", Handoff_Key__c=f"task:{tasks[0].id}:create")[0]
    assert remote["Subject"] == tasks[0].title and remote["Status"] == "Not Started"

    # The rep ticks the Task off in Salesforce.
    org.fake.org.update("Task", remote["Id"], {"Status": "Completed"}, system=False)
    org.sync()
    done = {t.id: t for t in org.tasks()}[tasks[0].id]
    rep = org.fake.org.find("User", Id=remote["OwnerId"])[0]["Email"]
    assert done.status == "done" and done.outcome == "done" and done.completed_by == rep
    with org.runtime.sessions() as session:
        journey = session.get(Journey, done.journey_id)
        assert journey is not None and journey.current_step_id == "wait-usage"
        others = [session.get(Journey, t.journey_id) for t in tasks[1:]]
        assert all(j is not None and j.current_step_id == "kickoff" for j in others)
    # Our own completion is not echoed back as a second write, and a second sync changes nothing.
    assert not [m for m in org.outbox() if m.kind == "crm.complete_task"]
    org.sync()
    assert {t.id: t.status for t in org.tasks()}[tasks[0].id] == "done"


FAULTS = {
    "dropped_after_commit": lambda fake: fake.org.inject("drop_after", times=2, method="PATCH"),
    "5xx_storm": lambda fake: fake.org.inject("status", times=6, status=503),
    "expired_session": lambda fake: fake.org.expire_sessions(),
    "request_limit": lambda fake: setattr(fake.org, "api_limit", fake.org.api_used),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_after_a_fault_every_task_exists_in_salesforce_exactly_once(org: Org, fault: str) -> None:
    org.sync()
    _win_all_deals(org.fake)
    org.sync()
    FAULTS[fault](org.fake)
    org.deliver()
    if fault == "request_limit":
        assert {m.status for m in org.outbox()} == {OutboxStatus.PENDING}  # held, not dropped
        assert not org.fake.org.find("Task")
        org.fake.org.api_limit = 15000  # the rolling 24 hours moved on
    org.deliver(rounds=3)
    assert {m.status for m in org.outbox()} == {OutboxStatus.DELIVERED}
    org.assert_each_task_once_with_its_brief()


def test_a_picklist_value_the_org_lacks_makes_an_exception_item_not_a_task(fresh_database: URL,
                                                                             tmp_path: Path) -> None:
    with FakeSalesforce(tmp_dir=tmp_path) as fake:
        users = seed_users(fake.org)
        account = fake.org.insert("Account", {"Name": "Picky", "Website": "picky.example", "OwnerId": users[1]["Id"]})
        fake.org.insert("Opportunity", {"AccountId": account["Id"], "Name": "P", "StageName": "Negotiation"})
        org = Org(fresh_database, fake, task_status={"open": "Open"})
        try:
            org.sync()
            _win_all_deals(fake)
            org.sync()
            org.deliver()
            (message,) = org.outbox()
            assert message.status == OutboxStatus.DEAD
            assert message.last_error == "salesforce INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST on Status"
            assert not fake.org.find("Task")
            from orchestrator.models import ExceptionItem
            with org.runtime.sessions() as session:
                item = session.scalars(select(ExceptionItem).where(ExceptionItem.category == "delivery_failed")).one()
                assert item.owner
        finally:
            org.runtime.close()


ESCALATING = KICKOFF.replace("sf-kickoff", "sf-escalating").replace(
    "sla: {ack: 4 business hours, due: 2 business days}",
    "sla:\n          ack: 4 business hours\n          due: 2 business days\n"
    "          escalate:\n            - {at: due, raise_priority: true}\n"
    "            - {at: due, reassign: {to: owner.manager}}")


def test_an_escalation_writes_the_new_owner_and_priority_to_the_salesforce_task_once(
        fresh_database: URL, tmp_path: Path) -> None:
    from orchestrator.work.sweep import sweep_sla

    with FakeSalesforce(tmp_dir=tmp_path) as fake:
        users = seed_users(fake.org)
        account = fake.org.insert("Account", {"Name": "Late Co", "Website": "late.example", "OwnerId": users[1]["Id"]})
        fake.org.insert("Opportunity", {"AccountId": account["Id"], "Name": "Late", "StageName": "Negotiation",
                                        "OwnerId": users[1]["Id"]})
        org = Org(fresh_database, fake, playbook=ESCALATING)
        try:
            org.sync()
            _win_all_deals(fake)
            org.sync()
            org.deliver()
            (task,) = org.tasks()
            (remote,) = fake.org.find("Task", Handoff_Key__c=f"task:{task.id}:create")
            # Delivery remembers the Task's Salesforce id, so follow-ups address it without a lookup.
            assert (task.crm_source, task.crm_id) == ("salesforce", remote["Id"])
            assert (remote["OwnerId"], remote["Priority"]) == (users[1]["Id"], "Normal")

            org.clock.advance(timedelta(days=6))  # past due on any weekday start
            for _ in range(2):  # a second sweep finds nothing left to fire
                sweep_sla(sessions=org.runtime.sessions, settings=org.runtime.settings, now=org.clock.now())
            updates = [m for m in org.outbox() if m.kind == "crm.update_task" and m.task_id == task.id]
            assert len(updates) == 2 and {m.payload["crm_id"] for m in updates} == {remote["Id"]}
            fake.org.inject("drop_after", times=1, method="PATCH")  # the first answer is lost
            org.deliver(rounds=3)
            assert {m.status for m in org.outbox() if m.task_id == task.id} == {OutboxStatus.DELIVERED}
            (after,) = fake.org.find("Task", Id=remote["Id"])
            assert after["OwnerId"] == users[0]["Id"]  # the manager took it over
            assert after["Priority"] == "High"
            assert len(fake.org.find("Task")) == len(org.tasks())  # updated in place, never a second Task
        finally:
            org.runtime.close()


def test_a_waiting_status_in_salesforce_pauses_the_sla_clock_and_another_resumes_it(org: Org) -> None:
    org.sync()
    _win_all_deals(org.fake)
    org.sync()
    org.deliver()
    task = org.tasks()[0]
    (remote,) = org.fake.org.find("Task", Handoff_Key__c=f"task:{task.id}:create")
    due_before = task.due_at

    org.fake.org.update("Task", remote["Id"], {"Status": "Waiting on someone else"}, system=False)
    org.clock.advance(timedelta(minutes=5))
    org.sync()
    paused = {t.id: t for t in org.tasks()}[task.id]
    assert paused.paused_at is not None and paused.sla_check_at is None
    assert all(t.paused_at is None for t in org.tasks() if t.id != task.id)  # only the one the rep set
    org.sync()  # seen again in the overlap: still one pause
    with org.runtime.sessions() as session:
        from orchestrator.models import SlaEvent
        kinds = [e.kind for e in session.scalars(select(SlaEvent).where(SlaEvent.task_id == task.id))]
    assert kinds.count("paused") == 1

    org.clock.advance(timedelta(days=1))
    org.fake.org.update("Task", remote["Id"], {"Status": "In Progress"}, system=False)
    org.sync()
    resumed = {t.id: t for t in org.tasks()}[task.id]
    assert resumed.paused_at is None and resumed.due_at > due_before  # the waiting time was given back
    assert [m for m in org.outbox() if m.kind == "crm.update_task" and m.task_id == task.id]


def test_a_pause_set_by_hand_survives_syncs_that_read_the_salesforce_task_s_ordinary_status(org: Org) -> None:
    from orchestrator.models import SlaEvent
    from orchestrator.work.sla import pause_task

    org.sync()
    _win_all_deals(org.fake)
    org.sync()
    org.deliver()
    task = org.tasks()[0]
    (remote,) = org.fake.org.find("Task", Handoff_Key__c=f"task:{task.id}:create")
    with unit_of_work(org.runtime.sessions) as session:
        held = session.get_one(Task, task.id)
        assert pause_task(session, settings=org.runtime.settings, task=held, actor="rep1@acme.example",
                          now=org.clock.now(), reason="customer on holiday")
    # The rep touches the Task in Salesforce without a waiting status; syncs read it (and re-read it in the overlap).
    org.fake.org.update("Task", remote["Id"], {"Status": "In Progress"}, system=False)
    org.clock.advance(timedelta(hours=2))
    for _ in range(2):
        org.sync()
    held_task = {t.id: t for t in org.tasks()}[task.id]
    assert held_task.paused_at is not None and held_task.sla_check_at is None
    with org.runtime.sessions() as session:
        kinds = [e.kind for e in session.scalars(select(SlaEvent).where(SlaEvent.task_id == task.id))]
    assert "resumed" not in kinds and kinds.count("paused") == 1


def test_resuming_by_hand_a_pause_salesforce_started_clears_the_waiting_status_so_syncs_keep_it_running(
        org: Org) -> None:
    from orchestrator.models import SlaEvent
    from orchestrator.work.sla import resume_task

    org.sync()
    _win_all_deals(org.fake)
    org.sync()
    org.deliver()
    task = org.tasks()[0]
    (remote,) = org.fake.org.find("Task", Handoff_Key__c=f"task:{task.id}:create")
    org.fake.org.update("Task", remote["Id"], {"Status": "Waiting on someone else"}, system=False)
    org.clock.advance(timedelta(minutes=5))
    org.sync()
    assert {t.id: t for t in org.tasks()}[task.id].paused_at is not None

    org.clock.advance(timedelta(hours=3))
    with unit_of_work(org.runtime.sessions) as session:  # the customer answered; the rep resumes in Handoff
        assert resume_task(session, settings=org.runtime.settings, task=session.get_one(Task, task.id),
                           actor="rep1@acme.example", now=org.clock.now())
    org.deliver()
    (after,) = org.fake.org.find("Task", Id=remote["Id"])
    assert after["Status"] == "Not Started"  # no longer waiting in Salesforce either
    for _ in range(2):  # our write changed the Task: syncs read it again, and it says nothing of waiting
        org.sync()
    running = {t.id: t for t in org.tasks()}[task.id]
    assert running.paused_at is None and running.sla_check_at is not None
    with org.runtime.sessions() as session:
        kinds = [e.kind for e in session.scalars(select(SlaEvent).where(SlaEvent.task_id == task.id)
                                                 .where(SlaEvent.kind.in_(["paused", "resumed"])))]
    assert sorted(kinds) == ["paused", "resumed"]


def test_a_task_names_the_account_s_champion_as_its_whoid_and_an_account_without_contacts_still_writes(
        fresh_database: URL, tmp_path: Path) -> None:
    with FakeSalesforce(tmp_dir=tmp_path) as fake:
        users = seed_users(fake.org)
        accounts = [fake.org.insert("Account", {"Name": f"Customer {n}", "Website": f"c{n}.example",
                                                "OwnerId": users[1]["Id"]}) for n in range(2)]
        for account in accounts:
            fake.org.insert("Opportunity", {"AccountId": account["Id"], "Name": f"Platform {account['Name']}",
                                            "StageName": "Negotiation", "Amount": 30000.0,
                                            "CloseDate": date(2026, 12, 31), "OwnerId": users[1]["Id"]})
        # Customer 0: a user first, then its champion; Customer 1 has no contacts at all.
        fake.org.insert("Contact", {"AccountId": accounts[0]["Id"], "FirstName": "Uma", "LastName": "User",
                                    "Email": "uma@c0.example", "Contact_Role__c": "user"})
        champion = fake.org.insert("Contact", {"AccountId": accounts[0]["Id"], "FirstName": "Cam",
                                               "LastName": "Champion", "Email": "cam@c0.example",
                                               "Contact_Role__c": "champion"})
        org = Org(fresh_database, fake, fields={
            "account": {"health": "Health_Score__c", "segment": "Segment__c", "renewal_date": "Renewal_Date__c"},
            "contact": {"role": "Contact_Role__c"}})
        try:
            org.sync()
            _win_all_deals(fake)
            org.sync()
            org.deliver()
            org.assert_each_task_once_with_its_brief()
            by_account = {row["WhatId"]: row for row in fake.org.find("Task")}
            assert set(by_account) == {a["Id"] for a in accounts}
            assert by_account[accounts[0]["Id"]]["WhoId"] == champion["Id"]
            assert not by_account[accounts[1]["Id"]].get("WhoId")
            assert {m.status for m in org.outbox()} == {OutboxStatus.DELIVERED}
        finally:
            org.runtime.close()
