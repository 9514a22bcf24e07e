"""A template stopped by its bounds parks that journey as `template_error`; the queue moves on."""

from __future__ import annotations

from sqlalchemy import select

from orchestrator.models import ExceptionItem, Journey, Signal, Task
from tests.engine.conftest import HEADER, install_playbook
from tests.factories import AccountFactory

NOTES = """
    id: usage-notes
    name: Usage notes
    stage: adopt
""" + HEADER + """
    enroll: {on: product.usage}
    steps:
      - id: review
        kind: human
        assign: {to: account.owner}
        task:
          title: "Review {{ account.name }}: {{ signal.note * signal.repeat }}"
          recommend: "Look at the usage."
          brief: [trigger, account]
        sla: {ack: 4 business hours, due: 2 business days}
      - id: done
        kind: exit
        reason: reviewed
"""


def test_a_template_that_explodes_parks_its_journey_and_the_next_signal_is_processed(session, feed):
    install_playbook(session, NOTES)
    bomb, fine = AccountFactory(name="Bomb"), AccountFactory(name="Fine")

    feed("product.usage", bomb, {"note": "x" * 1000, "repeat": 10**9})
    feed("product.usage", fine, {"note": "ok", "repeat": 2})

    parked = session.scalars(select(Journey).where(Journey.account_id == bomb.id)).one()
    assert parked.status == "stalled"
    item = session.scalars(select(ExceptionItem).where(ExceptionItem.account_id == bomb.id)).one()
    assert item.category == "template_error"
    assert "not allowed" in item.message and "review" in item.message
    task = session.scalars(select(Task).where(Task.account_id == fine.id)).one()
    assert task.title == "Review Fine: okok"
    assert session.scalars(select(Signal).where(Signal.processed_at.is_(None))).all() == []


def test_a_field_missing_from_the_data_is_still_a_missing_field(session, feed):
    install_playbook(session, NOTES)
    account = AccountFactory()
    feed("product.usage", account, {"note": "x"})  # no repeat
    item = session.scalars(select(ExceptionItem)).one()
    assert item.category == "missing_field"
