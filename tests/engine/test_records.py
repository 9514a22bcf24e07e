"""The one record-upsert path: by (source, external id), then natural key; references; deletes; problems."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import delete, event, insert, select
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


@pytest.mark.parametrize(("amount", "problem"), [("NaN", "'NaN' is not a number"),
                                                  ("-Infinity", "'-Infinity' is not a number"),
                                                  ("1e20", "'1e20' is too large for an amount")])
def test_an_amount_the_column_cannot_hold_is_a_problem_not_a_database_error(
        session: Session, amount: str, problem: str) -> None:
    records = [*_batch(), Record(kind="deal", source="crmx", external_id="D9",
                                 fields={"account": "A1", "name": "Odd", "amount": amount})]
    report = upsert_records(session, source="crmx", records=records, now=T0)
    session.flush()

    assert report.problems == [f"deal crmx:D9: amount: {problem}"]
    assert report.created["deal"] == 1


def test_an_amount_is_held_at_the_column_scale_before_and_after_a_reload(session: Session) -> None:
    upsert_records(session, source="crmx", records=_batch(), now=T0)
    deal = session.scalars(select(Deal).where(Deal.name == "Zeta renewal")).one()
    in_memory = str(deal.amount)
    session.expire_all()

    assert in_memory == str(deal.amount) == "12000.00"


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


def _page() -> list[Record]:
    """A page that leans on the bulk path's in-memory maps: repeats, renames, links, skips, a conflict."""
    return [
        Record(kind="owner", source="crmx", external_id="U1", fields={"email": "boss@acme.example", "name": "Boss",
                                                                      "role": "sales-manager"}),
        Record(kind="owner", source="crmx", external_id="U2", fields={"email": "rep@acme.example", "name": "Rep",
                                                                      "role": "ae", "manager": "U1"}),
        # A second id for the same person (by email): found, not created, and not linked twice.
        Record(kind="owner", source="crmx", external_id="U2b", fields={"email": "rep@acme.example", "name": "Rep B",
                                                                       "role": "ae"}),
        Record(kind="account", source="crmx", external_id="A1", fields={"name": "Zeta", "domain": "zeta.example",
                                                                        "owner": "U2"}),
        # The same company again later in the page: an update of the row just created.
        Record(kind="account", source="crmx", external_id="A1", fields={"name": "Zeta Two"}),
        # Renames the existing Omega (linked as A5) to a new domain; a later record finds it there.
        Record(kind="account", source="crmx", external_id="A5", fields={"domain": "omega-new.example"}),
        Record(kind="account", source="other", external_id="X5",
               fields={"name": "Omega", "domain": "omega-new.example"}),
        # Its ids name Zeta, its domain names Omega: a conflict, nothing applied.
        Record(kind="account", source="crmx", external_id="A1",
               fields={"name": "Stolen", "domain": "omega-new.example"}),
        Record(kind="account", source="crmx", external_id="A7", fields={"name": "Nameless owner", "owner": "U404"}),
        Record(kind="account", source="crmx", external_id="A8", fields={"domain": "no-name.example"}),
        Record(kind="account", source="crmx", external_id="A9", fields={"name": "Also", "domain": "also.example"},
               also={"hubspot": "H9"}),
        Record(kind="contact", source="crmx", external_id="C1", fields={"account": "A1", "name": "Ada",
                                                                        "email": "ada@zeta.example"}),
        Record(kind="contact", source="crmx", external_id="C2", fields={"account": "A1", "name": "Ada again",
                                                                        "email": "ada@zeta.example"}),
        Record(kind="contact", source="crmx", external_id="C3", fields={"account": "A9", "name": "Bo"}),
        Record(kind="contact", source="crmx", external_id="C1", fields={}, deleted=True),
        Record(kind="contact", source="crmx", external_id="C4", fields={"account": "A1", "name": "Cy",
                                                                        "email": "cy@zeta.example"}),
        Record(kind="deal", source="crmx", external_id="D1", fields={"account": "A1", "name": "Renewal",
                                                                     "amount": "10", "owner": "U2"}),
        Record(kind="deal", source="crmx", external_id="D2", fields={"account": "A1", "name": "Renewal",
                                                                     "amount": "20"}),
        Record(kind="deal", source="crmx", external_id="D3", fields={"account": {"domain": "ZETA.example"},
                                                                     "name": "Upsell", "amount": "x"}),
    ]


def _state(session: Session) -> dict[str, object]:
    """Everything the page wrote, by names rather than ids (ids differ between two runs on PostgreSQL)."""
    owners = {o.id: o.email for o in session.scalars(select(Owner))}
    accounts = {a.id: a.name for a in session.scalars(select(Account))}
    names = {"owner": owners, "account": accounts,
             "contact": {c.id: c.name for c in session.scalars(select(Contact))},
             "deal": {d.id: d.name for d in session.scalars(select(Deal))}}
    return {
        "owners": sorted((o.email, o.name, owners.get(o.manager_id or 0)) for o in session.scalars(select(Owner))
                         if o.email.endswith("@acme.example") and not o.email.startswith("owner")),
        "accounts": sorted((a.name, a.domain or "", owners.get(a.owner_id or 0, "")[:3])
                           for a in session.scalars(select(Account))),
        "contacts": sorted((accounts[c.account_id], c.name, c.email or "") for c in session.scalars(select(Contact))),
        "deals": sorted((accounts[d.account_id], d.name, str(d.amount)) for d in session.scalars(select(Deal))),
        "links": sorted((x.kind, names[x.kind].get(x.local_id, "?"), x.source, x.external_id)
                        for x in session.scalars(select(ExternalId))),
    }


def test_a_page_in_bulk_ends_exactly_as_record_by_record(session: Session) -> None:
    def seed() -> None:
        omega = AccountFactory(name="Omega", domain="omega.example")
        session.add(ExternalId(kind="account", local_id=omega.id, source="crmx", external_id="A5"))
        session.flush()

    seed()
    bulk = upsert_records(session, source="crmx", records=_page(), now=T0)
    in_bulk = _state(session)
    session.rollback()  # the fixture's savepoint: back to an empty database
    seed()
    one_by_one = [upsert_records(session, source="crmx", records=[record], now=T0) for record in _page()]
    assert _state(session) == in_bulk
    for counter in ("created", "updated", "unchanged", "deleted", "skipped"):
        assert bulk.total(counter) == sum(r.total(counter) for r in one_by_one), counter  # type: ignore[arg-type]
    def ids_out(problems: list[str]) -> list[str]:  # the conflict names local ids, which differ between runs
        return [re.sub(r"\(\d+, \d+\)", "(ids)", problem) for problem in problems]

    assert ids_out(bulk.problems) == ids_out([p for r in one_by_one for p in r.problems])
    assert len(bulk.problems) == 4
    assert [c["external_id"] for c in bulk.conflicts] == ["A1"]
    assert bulk.external_ids_added == sum(r.external_ids_added for r in one_by_one)


def test_a_row_another_writer_adds_meanwhile_sends_the_page_record_by_record(session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("needs a second writer during the transaction (SQLite has one)")
    engine = session.get_bind().engine

    done: list[bool] = []

    @event.listens_for(session, "before_flush")
    def rival_commits_first(*_: object) -> None:
        # Another sync commits the same company after this page looked it up, before it is written.
        if done or not any(isinstance(row, Account) for row in session.new):
            return
        done.append(True)
        with engine.begin() as other:
            other.execute(insert(Account).values(name="Zeta (other sync)", domain="zeta.example", stage="acquire",
                                                 stage_entered_at=T0, attributes={}))

    try:
        report = upsert_records(session, source="crmx", records=_batch(), now=T0)
        assert report.problems == []
        assert report.created["account"] == 0 and report.updated["account"] == 1  # found, not doubled
        account = _account(session)
        assert account.name == "Zeta"
        assert session.scalar(select(ExternalId.local_id).where(ExternalId.kind == "account",
                                                                ExternalId.external_id == "A1")) == account.id
    finally:
        session.rollback()  # this test's writes (and their row locks) go; the other writer's row goes next
        with engine.begin() as other:
            other.execute(delete(Account).where(Account.domain == "zeta.example"))
