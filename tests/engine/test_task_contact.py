"""The contact a task names in each CRM (`contact_crm_ref`), on SQLite and PostgreSQL."""

from datetime import UTC, datetime

from orchestrator import models
from orchestrator.work.task_contact import contact_crm_ref
from tests.factories import AccountFactory, ContactFactory


def _ids(session, contact, **by_source):
    for source, external_id in by_source.items():
        session.add(models.ExternalId(kind="contact", local_id=contact.id, source=source, external_id=external_id))
    session.flush()


def _signal(session, account, payload):
    signal = models.Signal(type="lead.created", dedupe_key=f"lead:{account.id}:{sorted(payload.items())}",
                           account_id=account.id, source="webhook", payload=payload,
                           occurred_at=datetime(2026, 11, 20, tzinfo=UTC))
    session.add(signal)
    session.flush()
    return signal


def test_the_champion_per_crm_else_the_first_contact_with_an_id_there(session):
    account = AccountFactory()
    user = ContactFactory(account=account, role="user")
    champion = ContactFactory(account=account, role="champion")
    session.flush()
    _ids(session, user, salesforce="003USER", hubspot="501")
    _ids(session, champion, salesforce="003CHAMP")  # not in HubSpot: HubSpot names the user

    assert contact_crm_ref(session, account_id=account.id) == {"salesforce": "003CHAMP", "hubspot": "501"}


def test_the_trigger_s_own_person_by_crm_id_or_email_comes_first(session):
    account = AccountFactory()
    champion = ContactFactory(account=account, role="champion")
    lead = ContactFactory(account=account, role="user", email="Lee@Customer.example")
    session.flush()
    _ids(session, champion, hubspot="601")
    _ids(session, lead, hubspot="602")

    by_email = _signal(session, account, {"email": "lee@customer.example"})
    by_id = _signal(session, account, {"hubspot_contact_id": "602"})
    stranger = _signal(session, account, {"email": "someone@elsewhere.example", "hubspot_contact_id": "999"})
    assert contact_crm_ref(session, account_id=account.id, signal=by_email) == {"hubspot": "602"}
    assert contact_crm_ref(session, account_id=account.id, signal=by_id) == {"hubspot": "602"}
    assert contact_crm_ref(session, account_id=account.id, signal=stranger) == {"hubspot": "601"}


def test_an_account_without_crm_contacts_has_an_empty_ref(session):
    account = AccountFactory()
    ContactFactory(account=account, role="champion")
    session.flush()
    assert contact_crm_ref(session, account_id=account.id) == {}
    assert contact_crm_ref(session, account_id=AccountFactory().id) == {}
