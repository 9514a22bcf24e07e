"""A customer email `to: champion` goes to the account's champion; without one the step parks, nothing is stored."""

from __future__ import annotations

from sqlalchemy import select

from orchestrator.models import ExceptionItem, Journey, OutboxMessage, StepRun
from tests.engine.conftest import HEADER, install_playbook
from tests.factories import AccountFactory, ContactFactory

PLAYBOOK = """
    id: champion-mail
    name: Champion mail
    stage: onboard
""" + HEADER + """
    enroll: {on: deal.closed_won}
    steps:
      - id: welcome
        kind: automated
        oversight: out_of_loop
        risk: {error_cost: low, correction: fast}
        do: customer.email
        with: {to: champion, subject: "Welcome, {{ account.name }}", body: "Glad to have you."}
      - id: done
        kind: exit
        reason: welcomed
"""


def test_a_contact_role_resolves_to_the_accounts_primary_contact_in_that_role(session, feed):
    install_playbook(session, PLAYBOOK)
    account = AccountFactory(name="Globex")
    ContactFactory(account=account, role="champion", email="old@globex.example")
    ContactFactory(account=account, role="champion", email="lead@globex.example", is_primary=True)
    ContactFactory(account=account, role="admin", email="it@globex.example", is_primary=True)
    feed("deal.closed_won", account)
    mail = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "customer.email")).one()
    assert mail.payload["args"]["to"] == "lead@globex.example"
    assert mail.payload["args"]["to_role"] == "champion"
    assert session.scalars(select(Journey)).one().status == "completed"


def test_an_account_without_that_contact_parks_the_step_and_stores_no_literal(session, feed):
    install_playbook(session, PLAYBOOK)
    account = AccountFactory(name="Initech")
    ContactFactory(account=account, role="champion", email=None)  # known, but no address
    ContactFactory(account=account, role="admin", email="it@initech.example")
    feed("deal.closed_won", account)
    assert session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "customer.email")).all() == []
    journey = session.scalars(select(Journey)).one()
    assert (journey.status, journey.current_step_id) == ("stalled", "welcome")
    step_run = session.scalars(select(StepRun).where(StepRun.step_id == "welcome")).one()
    assert step_run.status == "failed"
    [item] = session.scalars(select(ExceptionItem)).all()
    assert item.category == "missing_field" and item.journey_id == journey.id
    assert "Initech has no champion contact with an email address" in item.message
