"""Pulled pages through the core's one upsert path and signal intake, on SQLite and PostgreSQL.

Identity across CRMs: a company that is already a Salesforce account (same domain, or its Salesforce id
in a configured HubSpot property) becomes the same Handoff account, never a second one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.hubspot import HubSpotConnector
from orchestrator.config import Settings
from orchestrator.intake import signals as intake
from orchestrator.intake.records import upsert_records
from orchestrator.models import Account, Contact, Deal, ExternalId, Owner, Signal
from tests import factories
from tests.conftest import T0
from tests.connectors.hubspot.conftest import FakeTime
from tests.fakes.hubspot import FakeHubSpot


def apply(session: Session, settings: Settings, connector: HubSpotConnector,
          cursor: dict[str, Any] | None = None) -> dict[str, Any]:
    """What sync does with each page: upsert its records, ingest its signals; returns the new cursors."""
    cursors: dict[str, Any] = dict(cursor or {})
    for page in connector.pull(cursor=cursor):
        report = upsert_records(session, source="hubspot", records=page.records, now=T0)
        assert not report.problems, report.problems
        for signal in page.signals:
            result = intake.ingest(session=session, raw=signal, source="hubspot", now=T0, settings=settings)
            assert result.status != intake.IntakeStatus.REJECTED, result
        if page.cursor is not None:
            cursors[page.object_type] = page.cursor
    session.flush()
    return cursors


def external(session: Session, kind: str, source: str, external_id: str) -> int | None:
    return session.scalar(select(ExternalId.local_id).where(
        ExternalId.kind == kind, ExternalId.source == source, ExternalId.external_id == external_id))


def test_sync_creates_owners_accounts_contacts_deals_once(
        session: Session, settings: Settings, hubspot: FakeHubSpot,
        make_connector: Callable[..., HubSpotConnector]) -> None:
    owner = hubspot.add_owner(email="rae@acme.example", first="Rae", last="Rep")
    company = hubspot.add("companies", {"name": "Globex", "domain": "globex.example", "hubspot_owner_id": owner,
                                        "annualrevenue": "50000"}, modified=T0 - timedelta(days=2))
    contact = hubspot.add("contacts", {"firstname": "Ada", "lastname": "Lee", "email": "ada@globex.example"},
                          modified=T0 - timedelta(days=2))
    hubspot.associate("contacts", contact, "companies", company, 1)
    deal = hubspot.add("deals", {"dealname": "Globex renewal", "amount": "12000", "dealstage": "contractsent"},
                       modified=T0 - timedelta(days=2))
    hubspot.associate("deals", deal, "companies", company, 5)
    cursor = apply(session, settings, make_connector(settings))
    account_id = external(session, "account", "hubspot", company)
    assert account_id is not None
    account = session.get_one(Account, account_id)
    assert (account.name, account.domain, str(account.arr)) == ("Globex", "globex.example", "50000.00")
    assert account.owner is not None and account.owner.email == "rae@acme.example"
    assert session.scalar(select(Contact.account_id).where(Contact.email == "ada@globex.example")) == account_id
    assert session.scalar(select(Deal.stage).where(Deal.account_id == account_id)) == "contractsent"
    # The deal closes in HubSpot: the next sync updates it and derives closed_won, stored once even
    # when read a second time through the overlap.
    hubspot.update("deals", deal, {"dealstage": "closedwon"}, modified=T0 - timedelta(minutes=5))
    cursor = apply(session, settings, make_connector(settings), cursor)
    apply(session, settings, make_connector(settings), {k: {"since": (T0 - timedelta(hours=1)).isoformat()}
                                                        for k in cursor})
    won = session.scalars(select(Signal).where(Signal.type == "deal.closed_won")).all()
    assert len(won) == 1 and won[0].account_id == account_id
    assert session.scalar(select(Deal.is_won).where(Deal.account_id == account_id)) is True
    for model in (Account, Contact, Deal, Owner):
        assert session.scalar(select(func.count()).select_from(model)) == 1


def test_same_domain_in_salesforce_and_hubspot_is_one_account(
        session: Session, settings: Settings, hubspot: FakeHubSpot,
        make_connector: Callable[..., HubSpotConnector]) -> None:
    existing = factories.AccountFactory(name="Initech", domain="initech.example")
    session.add(ExternalId(kind="account", local_id=existing.id, source="salesforce", external_id="001SF0001"))
    session.flush()
    company = hubspot.add("companies", {"name": "Initech Inc", "domain": "INITECH.example"},
                          modified=T0 - timedelta(days=1))
    apply(session, settings, make_connector(settings))
    assert external(session, "account", "hubspot", company) == existing.id
    assert external(session, "account", "salesforce", "001SF0001") == existing.id
    assert session.scalar(select(func.count()).select_from(Account)) == 1


def test_match_by_an_external_id_property(
        session: Session, settings: Settings, hubspot: FakeHubSpot,
        make_connector: Callable[..., HubSpotConnector]) -> None:
    existing = factories.AccountFactory(name="Umbrella", domain="umbrella.example")
    session.add(ExternalId(kind="account", local_id=existing.id, source="salesforce", external_id="001SF0002"))
    session.flush()
    hubspot.add_property("companies", "salesforce_account_id")
    # No domain in HubSpot (or a different one): only the Salesforce id ties them.
    company = hubspot.add("companies", {"name": "Umbrella Corp", "salesforce_account_id": "001SF0002"},
                          modified=T0 - timedelta(days=1))
    apply(session, settings, make_connector(settings, match="external_id", match_property="salesforce_account_id"))
    assert external(session, "account", "hubspot", company) == existing.id
    assert session.scalar(select(func.count()).select_from(Account)) == 1


def test_two_accounts_claiming_one_company_is_a_conflict_not_a_merge(
        session: Session, settings: Settings, hubspot: FakeHubSpot,
        make_connector: Callable[..., HubSpotConnector]) -> None:
    first = factories.AccountFactory(name="Hooli", domain="hooli.example")
    second = factories.AccountFactory(name="Hooli XYZ", domain="hooli-xyz.example")
    session.add(ExternalId(kind="account", local_id=first.id, source="salesforce", external_id="001SF0003"))
    session.flush()
    hubspot.add_property("companies", "salesforce_account_id")
    # HubSpot says: Salesforce's Hooli, but with the other account's domain.
    company = hubspot.add("companies", {"name": "Hooli", "domain": "hooli-xyz.example",
                                        "salesforce_account_id": "001SF0003"}, modified=T0 - timedelta(days=1))
    connector = make_connector(settings, match="external_id", match_property="salesforce_account_id")
    [page] = [p for p in connector.pull(cursor=None) if p.object_type == "companies" and p.records]
    report = upsert_records(session, source="hubspot", records=page.records, now=T0)
    assert report.conflicts == [{"kind": "account", "source": "hubspot", "external_id": company,
                                 "local_ids": sorted([first.id, second.id]), "domain": "hooli-xyz.example"}]
    assert external(session, "account", "hubspot", company) is None  # linked to neither
    session.refresh(first)
    session.refresh(second)
    assert (first.domain, second.domain) == ("hooli.example", "hooli-xyz.example")
    assert session.scalar(select(func.count()).select_from(Account)) == 2


def test_a_waiting_task_status_in_hubspot_pauses_the_clock_and_another_resumes_it(
        session: Session, settings: Settings, hubspot: FakeHubSpot, fake_time: FakeTime,
        make_connector: Callable[..., HubSpotConnector]) -> None:
    from orchestrator.models import Task
    from orchestrator.work import sla as _sla  # noqa: F401  (installs the CRM-status pause, as every command does)

    account = factories.AccountFactory(name="Acme", domain="acme.example")
    company = hubspot.add("companies", {"name": "Acme", "domain": "acme.example"}, modified=T0 - timedelta(days=3))
    remote = hubspot.add("tasks", {"hs_task_subject": "Call", "hs_task_status": "WAITING",
                                   "handoff_key": "task:1:create"}, modified=T0 - timedelta(hours=1))
    hubspot.associate("tasks", remote, "companies", company, 192)
    other = hubspot.add("tasks", {"hs_task_subject": "Not ours", "hs_task_status": "WAITING"},
                        modified=T0 - timedelta(hours=1))
    hubspot.associate("tasks", other, "companies", company, 192)
    task = Task(account_id=account.id, owner_id=account.owner_id, title="Call", due_at=T0 + timedelta(days=2),
                created_at=T0 - timedelta(days=1), crm_id=remote, crm_source="hubspot")
    session.add(task)
    session.flush()

    def sync(cursor: dict[str, Any] | None) -> dict[str, Any]:
        cursors: dict[str, Any] = dict(cursor or {})
        for page in make_connector(settings).pull(cursor=cursor):
            upsert_records(session, source="hubspot", records=page.records, now=fake_time.now(), settings=settings)
            if page.cursor is not None:
                cursors[page.object_type] = page.cursor
        session.flush()
        return cursors

    cursor = sync(None)
    assert task.paused_at == T0
    fake_time.advance(3600)
    hubspot.update("tasks", remote, {"hs_task_status": "IN_PROGRESS"}, modified=T0 + timedelta(minutes=30))
    sync(cursor)
    assert task.paused_at is None and task.paused_seconds == 3600
