"""Intake flags a signal whose type the catalog does not know: once per type per day, counted."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from orchestrator.intake.signals import IntakeStatus, ingest
from orchestrator.models import ExceptionItem, Signal
from orchestrator.playbook.store import apply_playbooks
from tests.factories import AccountFactory


def _signal(type_, minute=0, **payload):
    return {"type": type_, "account": {"domain": "acme.example"},
            "occurred_at": f"2026-11-23T13:{minute:02d}:00Z", "payload": payload or {"n": minute}}


@pytest.fixture
def intake(session, settings, clock):
    AccountFactory(domain="acme.example")

    def run(raw):
        return ingest(session=session, raw=raw, source="webhook", now=clock.now(), settings=settings)
    return run


def _items(session):
    return list(session.scalars(select(ExceptionItem).order_by(ExceptionItem.id)))


def test_a_misspelt_type_is_stored_and_flagged_once_per_day_with_a_count(session, intake, clock):
    first = intake(_signal("product.usge", 1))
    second = intake(_signal("product.usge", 2))

    assert first.status == second.status == IntakeStatus.ACCEPTED
    assert session.get(Signal, second.signal_id).type == "product.usge"  # stored as today
    [item] = _items(session)
    assert item.category == "invalid_signal"
    assert '"product.usge"' in item.message and "signal catalog" in item.message
    assert item.occurrences == 2
    assert item.sample_signal_ids == [first.signal_id, second.signal_id]

    clock.advance(timedelta(days=1))
    intake(_signal("product.usge", 3))
    intake(_signal("product.usaeg", 4))
    assert [(i.detail["type"], i.detail["day"], i.occurrences) for i in _items(session)] == [
        ("product.usge", "2026-11-23", 2), ("product.usge", "2026-11-24", 1), ("product.usaeg", "2026-11-24", 1)]


def test_catalog_types_and_types_an_active_playbook_reacts_to_are_not_flagged(session, intake, tmp_path, clock):
    playbook = tmp_path / "trial.yaml"
    playbook.write_text(
        "id: trial\nname: Trial\nstage: acquire\nmaintainer: revops@acme.example\n"
        "enroll: {on: trial.started}\nsteps:\n  - id: done\n    kind: exit\n", encoding="utf-8")
    assert apply_playbooks(session=session, paths=[playbook], now=clock.now(), actor="test").applied
    intake(_signal("trial.started", 0, plan="pro"))
    intake(_signal("product.usage", 1, active_users=3))
    intake(_signal("renewal.upcoming", 2, days_to_renewal=90))
    assert _items(session) == []


def test_a_batch_of_catalogued_types_does_not_read_the_active_playbooks(session, intake):
    from sqlalchemy import event

    read: list[str] = []

    def seen(_connection, _cursor, statement, *_rest):
        if "playbook_versions" in statement:
            read.append(statement)

    bind = session.get_bind()
    event.listen(bind, "before_cursor_execute", seen)
    try:
        intake(_signal("product.usage", 1, active_users=3))
        assert read == []  # a shipped type is known whatever the playbooks say
        intake(_signal("trial.startd", 2))
        assert len(read) == 1  # one the shipped catalog lacks: the playbooks' own types are read
    finally:
        event.remove(bind, "before_cursor_execute", seen)
