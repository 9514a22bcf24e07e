"""Exception floods: a problem that repeats with every signal is one open item with a count."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator import exception_queue, schema
from orchestrator.config import Settings
from orchestrator.db import make_engine
from orchestrator.journeys import engine
from orchestrator.models import Account, ExceptionItem, Signal
from orchestrator.models.exceptions import Category
from orchestrator.playbook.store import apply_playbooks
from orchestrator.replay.samples import load_sample_data
from orchestrator.resources import shipped_playbooks_dir
from tests.factories import AccountFactory

USAGE_SIGNALS = 1_000  # a thousand in one run; the engine, not the queue, sets the pace


def _raise(session, settings, at, *, signal_id=None, field="signal.usage_change_pct", step="enroll"):
    return exception_queue.raise_item(
        session, settings=settings, category=Category.MISSING_FIELD, message="usage-drop-rescue expects it",
        at=at, signal_id=signal_id, playbook_id="usage-drop-rescue", step_id=step, field=field)


def test_repeats_of_one_problem_are_counted_on_one_open_item(session, settings, clock):
    account = AccountFactory()
    session.flush()
    ids = []
    for minute in range(15):
        signal = Signal(type="product.usage", account_id=account.id, payload={}, source="test",
                        occurred_at=clock.now(), received_at=clock.now(), dedupe_key=f"k{minute}")
        session.add(signal)
        session.flush()
        ids.append(signal.id)
        _raise(session, settings, clock.now() + timedelta(minutes=minute), signal_id=signal.id)
    _raise(session, settings, clock.now(), field="signal.active_users")

    items = exception_queue.list_items(session, category="missing_field")
    assert len(items) == 2
    counted = next(item for item in items if item.occurrences > 1)
    assert counted.occurrences == 15
    assert counted.first_seen_at == clock.now()
    assert counted.last_seen_at == clock.now() + timedelta(minutes=14)
    assert counted.sample_signal_ids == ids[:exception_queue.MAX_SAMPLE_SIGNALS]
    assert counted.respond_by == settings.calendar().add(clock.now(), counted and
                                                          settings.exception_category("missing_field").window)


def test_once_resolved_the_next_occurrence_opens_a_new_item(session, settings, clock):
    first = _raise(session, settings, clock.now())
    exception_queue.resolve_item(session, item_id=first.id, by="lead@acme.example", at=clock.now())
    second = _raise(session, settings, clock.now() + timedelta(hours=1))
    assert second.id != first.id and second.occurrences == 1
    assert first.status == "resolved" and first.occurrences == 1


def test_one_off_items_are_not_aggregated(session, settings, clock):
    for _ in range(3):
        exception_queue.raise_item(session, settings=settings, category=Category.LOOP_GUARD, message="loop",
                                   at=clock.now())
    assert [item.occurrences for item in exception_queue.list_items(session)] == [1, 1, 1]


@pytest.mark.slow
def test_a_realistic_flood_of_usage_signals_without_the_field_is_a_handful_of_items(session, settings, clock):
    apply_playbooks(session=session, paths=[shipped_playbooks_dir()], now=clock.now(), actor="test")
    load_sample_data(session=session)
    accounts = session.scalars(select(Account).order_by(Account.id)).all()
    assert accounts
    # Stored as intake stores them (bulk, to keep the test quick); the engine pass is the real one.
    session.add_all(Signal(type="product.usage", account_id=accounts[n % len(accounts)].id, source="test",
                           dedupe_key=f"usage-{n}", occurred_at=clock.now() + timedelta(minutes=n),
                           received_at=clock.now() + timedelta(minutes=n),
                           payload={"active_users": n % 4})  # no usage_change_pct, which usage-drop-rescue reads
                    for n in range(USAGE_SIGNALS))
    session.flush()
    while engine.process_pending(session=session, settings=settings, now=clock.now() + timedelta(days=3)).signals:
        pass

    items = session.scalars(select(ExceptionItem).where(ExceptionItem.category == "missing_field",
                                                        ExceptionItem.status == "open")).all()
    assert 1 <= len(items) <= 5, [(i.group_key, i.occurrences) for i in items]
    usage = next(item for item in items if item.group_key and "usage-drop-rescue" in item.group_key)
    assert usage.occurrences == USAGE_SIGNALS
    assert len(usage.sample_signal_ids) == exception_queue.MAX_SAMPLE_SIGNALS
    assert session.scalar(select(func.count()).select_from(ExceptionItem)) < 20  # was one per signal
    report = exception_queue.fallback_report(session, since=clock.now() - timedelta(days=1),
                                             until=clock.now() + timedelta(days=30))
    assert next(row.count for row in report if row.category == "missing_field") >= USAGE_SIGNALS


def test_two_workers_raising_the_same_new_problem_make_one_item(fresh_database, backend, clock):
    db = make_engine(fresh_database)
    schema.upgrade(db)
    settings = Settings(database_url=db.url, exception_owner="lead@acme.example")
    first_inserted = threading.Event()
    errors: list[BaseException] = []
    try:
        with Session(db) as first:
            _raise(first, settings, clock.now())
            first_inserted.set()

            def second_worker() -> None:
                try:
                    with Session(db) as second:
                        _raise(second, settings, clock.now() + timedelta(minutes=1))
                        second.commit()
                except BaseException as exc:  # noqa: BLE001 - reported to the test thread
                    errors.append(exc)

            worker = threading.Thread(target=second_worker)
            worker.start()
            worker.join(timeout=1)  # blocked behind the first (PostgreSQL) or on the write lock (SQLite)
            first.commit()
            worker.join(timeout=60)
        assert not errors, errors
        with Session(db) as check:
            items = check.scalars(select(ExceptionItem)).all()
            assert [(item.occurrences, item.status) for item in items] == [(2, "open")]
    finally:
        db.dispose()
