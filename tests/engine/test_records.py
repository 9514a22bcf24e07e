"""The one record-upsert path: by (source, external id), then natural key; references; deletes; problems."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.intake.records import Record, upsert_records
from orchestrator.models import Account, Contact, Deal, ExternalId, Owner
from tests.conftest import T0
from tests.factories import AccountFactory


def _batch(**account_fields: object) -> list[Record]:
    # Given out of dependency order on purpose: the upsert orders kinds itself.
    return [
        Record(kind="contact", source="crmx", external_id="C1",
               fields={"account": "A1", "name": "Ada", "email": "ada@zeta.example", "role": "champion"}),
        Record(kind="deal", source="crmx", external_id="D1",
               fields={"account": "A1", "name": "Zeta renewal", "amount": "12000", "owner": "U2"}),
        Record(kind="account", source="crmx", external_id="A1",
               fields={"name": "Zeta", "domain": "Zeta.example", "arr": "50000", "owner": "U2",
                       "stage": "adopt", **account_fields}),
        Record(kind="owner", source="crmx", external_id="U2",
               fields={"email": "rep@acme.example", "name": "Rep", "role": "ae", "manager": "U1"}),
        Record(kind="owner", source="crmx", external_id="U1",
               fields={"email": "boss@acme.example", "name": "Boss", "role": "sales-manager"}),
    ]


def _account(session: Session) -> Account:
    return session.scalars(select(Account).where(Account.domain == "zeta.example")).one()


def test_a_batch_creates_every_kind_with_its_references_and_links(session: Session) -> None:
    report = upsert_records(session, source="crmx", records=_batch(), now=T0)

    assert dict(report.created) == {"owner": 2, "account": 1, "contact": 1, "deal": 1}
    assert report.problems == [] and report.external_ids_added == 5
    account = _account(session)
    assert account.owner is not None and account.owner.email == "rep@acme.example"
    assert account.owner.manager is not None and account.owner.manager.email == "boss@acme.example"
    assert account.arr == Decimal("50000") and account.stage == "adopt" and account.stage_entered_at == T0
    assert [c.email for c in account.contacts] == ["ada@zeta.example"]
    assert account.deals[0].owner_id == account.owner_id


def test_running_again_updates_changed_fields_only_and_never_the_journey_stage(session: Session) -> None:
    upsert_records(session, source="crmx", records=_batch(), now=T0)
    account = _account(session)
    account.stage = "renew"  # the engine moved it since
    session.flush()

    again = upsert_records(session, source="crmx", records=_batch(arr="75000", stage="acquire"), now=T0)

    assert dict(again.updated) == {"account": 1}
    assert again.unchanged["owner"] == 2 and again.unchanged["contact"] == 1 and again.total("created") == 0
    session.refresh(account)
    assert account.arr == Decimal("75000") and account.stage == "renew"


def test_a_row_another_source_created_is_found_by_natural_key_and_linked(session: Session) -> None:
    existing = AccountFactory(domain="zeta.example", name="Zeta Inc")
    report = upsert_records(session, source="crmx", records=_batch(), now=T0)

    assert report.created["account"] == 0 and report.updated["account"] == 1
    assert _account(session).id == existing.id
    link = session.scalars(select(ExternalId).where(ExternalId.kind == "account", ExternalId.source == "crmx")).one()
    assert (link.local_id, link.external_id) == (existing.id, "A1")


def test_a_bad_record_is_skipped_with_a_problem_naming_its_field_and_the_rest_is_applied(session: Session) -> None:
    records = [*_batch(),
               Record(kind="contact", source="crmx", external_id="C9", fields={"account": "NOPE", "name": "X"}),
               Record(kind="deal", source="crmx", external_id="D9",
                      fields={"account": "A1", "name": "Bad", "amount": "lots"})]
    report = upsert_records(session, source="crmx", records=records, now=T0)

    assert report.created["contact"] == 1 and report.created["deal"] == 1
    assert report.skipped == {"contact": 1, "deal": 1}
    assert report.problems == ["contact crmx:C9: account: no account crmx:NOPE",
                               "deal crmx:D9: amount: 'lots' is not a number"]


def test_deletes_remove_contacts_retire_owners_and_unlink_accounts(session: Session) -> None:
    upsert_records(session, source="crmx", records=_batch(), now=T0)
    gone = [Record(kind="contact", source="crmx", external_id="C1", fields={}, deleted=True),
            Record(kind="owner", source="crmx", external_id="U1", fields={}, deleted=True),
            Record(kind="account", source="crmx", external_id="A1", fields={}, deleted=True)]

    report = upsert_records(session, source="crmx", records=gone, now=T0)

    assert dict(report.deleted) == {"contact": 1, "owner": 1, "account": 1}
    assert session.scalars(select(Contact).where(Contact.email == "ada@zeta.example")).first() is None
    assert session.scalars(select(Owner).where(Owner.email == "boss@acme.example")).one().active is False
    account = _account(session)
    assert account.attributes["deleted_in"] == {"crmx": T0.isoformat()}
    assert session.scalars(select(ExternalId).where(ExternalId.kind == "account",
                                                    ExternalId.local_id == account.id)).first() is None
    assert session.scalars(select(Deal).where(Deal.account_id == account.id)).first() is not None


def test_update_existing_false_leaves_known_rows_exactly_as_they_are(session: Session) -> None:
    upsert_records(session, source="crmx", records=_batch(), now=T0)
    report = upsert_records(session, source="crmx", records=_batch(arr="1"), now=T0, update_existing=False)
    assert report.total("updated") == 0 and report.unchanged["account"] == 1
    assert _account(session).arr == Decimal("50000")
