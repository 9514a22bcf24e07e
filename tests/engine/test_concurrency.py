"""Two worker processes receiving the same signal at the same moment: one signal, one task."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select

from orchestrator import schema
from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory, unit_of_work
from orchestrator.intake import signals
from orchestrator.journeys import engine
from orchestrator.models import Account, Deal, Journey, Owner, Signal, Task
from orchestrator.playbook.store import apply_playbooks
from orchestrator.resources import shipped_playbooks_dir

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
SIGNAL = {"type": "deal.closed_won", "account": {"domain": "race.example"},
          "deal": {"id": 1}, "occurred_at": "2026-11-23T14:55:00+00:00", "payload": {"amount": 50000}}


def _worker(url: str, barrier, results, ingest: bool) -> None:
    db = make_engine(url)
    settings = Settings(database_url=db.url, exception_owner="ops-lead@example.com")
    sessions = make_session_factory(db)
    barrier.wait(timeout=30)
    if ingest:
        with unit_of_work(sessions) as session:
            outcome = signals.ingest(session=session, raw=SIGNAL, source="webhook", now=NOW,
                                     settings=settings)
        results.put(str(outcome.status))
    with unit_of_work(sessions) as session:
        report = engine.process_pending(session=session, settings=settings, now=NOW)
    if not ingest:
        results.put(report.signals)
    db.dispose()


def _seed(url) -> None:
    db = make_engine(url)
    schema.upgrade(db)
    with unit_of_work(make_session_factory(db)) as session:
        assert apply_playbooks(session=session, paths=[shipped_playbooks_dir()],
                               now=FrozenClock(NOW).now(), actor="test").applied
        owner = Owner(name="Ari", email="ari@acme.example", role="ae")
        account = Account(name="Race Co", domain="race.example", segment="mid", owner=owner,
                          stage="onboard", stage_entered_at=NOW)
        session.add_all([owner, account])
        session.flush()
        session.add(Deal(id=1, account_id=account.id, name="Race deal", amount=Decimal("50000"),
                         is_closed=True, is_won=True))
    db.dispose()


def _race(url: str, *, ingest: bool) -> list:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_worker, args=(url, barrier, results, ingest))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    return sorted(results.get(timeout=5) for _ in workers)


def _assert_one_signal_one_journey_one_task(url: str) -> None:
    db = make_engine(url)
    with unit_of_work(make_session_factory(db)) as session:
        count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
        assert count(Signal) == 1
        assert count(Journey) == 1
        assert count(Task) == 1
        assert session.scalar(select(Signal.processed_at)) is not None
    db.dispose()


def test_the_same_signal_from_two_processes_at_once_makes_one_signal_and_one_task(fresh_database):
    url = fresh_database.render_as_string(hide_password=False)
    _seed(url)
    assert _race(url, ingest=True) == ["accepted", "duplicate"]
    _assert_one_signal_one_journey_one_task(url)


def test_two_engine_workers_on_the_same_pending_signal_create_one_task(fresh_database):
    url = fresh_database.render_as_string(hide_password=False)
    _seed(url)
    db = make_engine(url)
    with unit_of_work(make_session_factory(db)) as session:
        signals.ingest(session=session, raw=SIGNAL, source="webhook", now=NOW,
                       settings=Settings(database_url=db.url, exception_owner="ops-lead@example.com"))
    db.dispose()
    assert sum(_race(url, ingest=False)) == 1  # exactly one worker claimed and processed it
    _assert_one_signal_one_journey_one_task(url)


RACE = """
id: race
name: Race
stage: adopt
maintainer: revops@acme.example
review_every: 365d
enroll: {on: deal.closed_won}
steps:
  - id: wait-usage
    kind: wait
    for: product.usage
    timeout: 14d
    on_timeout: {exit: true}
  - id: call
    kind: human
    assign: {to: account.owner}
    task: {title: "Call {{ account.name }}", recommend: "Call them.", brief: [trigger]}
    sla: {due: 2 business days}
"""


def _race_setup(url: str):
    import hashlib

    from orchestrator.models import PlaybookVersion

    db = make_engine(url)
    schema.upgrade(db)
    sessions = make_session_factory(db)
    settings = Settings(database_url=db.url, exception_owner="ops-lead@example.com")
    with unit_of_work(sessions) as session:
        session.add(PlaybookVersion(playbook_id="race", version=1, name="Race", stage="adopt", source_text=RACE,
                                    source_path="race.yaml", checksum=hashlib.sha256(RACE.encode()).hexdigest()))
        owner = Owner(name="Ari", email="ari@acme.example", role="ae")
        session.add_all([owner, Account(name="Race Co", domain="race.example", segment="mid", owner=owner,
                                        stage="adopt", stage_entered_at=NOW)])
    return db, sessions, settings


def _send(session, settings, type_: str, at) -> None:
    result = signals.ingest(session=session, raw={"type": type_, "account": {"domain": "race.example"},
                                                  "occurred_at": at.isoformat(), "payload": {}},
                            source="test", now=at, settings=settings)
    assert result.status == "accepted"


def test_two_workers_waking_one_journey_at_once_create_one_task(fresh_database):
    import threading
    from datetime import timedelta

    from orchestrator.models import OutboxMessage

    db, sessions, settings = _race_setup(fresh_database.render_as_string(hide_password=False))
    with unit_of_work(sessions) as session:
        _send(session, settings, "deal.closed_won", NOW)
        engine.process_pending(session=session, settings=settings, now=NOW)
    later = NOW + timedelta(hours=1)
    with unit_of_work(sessions) as session:  # two different signals that both satisfy the wait
        _send(session, settings, "product.usage", later - timedelta(seconds=2))
        _send(session, settings, "product.usage", later - timedelta(seconds=1))
    first_holds, errors = threading.Event(), []

    def worker(hold: bool) -> None:
        try:
            with unit_of_work(sessions) as session:
                engine.process_pending(session=session, settings=settings, now=later, limit=1)
                session.flush()
                if hold:  # keep the transaction open while the other worker tries
                    first_holds.set()
                    threading.Event().wait(1.5)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    first = threading.Thread(target=worker, args=(True,))
    first.start()
    first_holds.wait(30)
    second = threading.Thread(target=worker, args=(False,))
    second.start()
    first.join(60)
    second.join(60)
    assert errors == []
    with unit_of_work(sessions) as session:
        # PostgreSQL: the second worker found the account held and left its later signal alone.
        # SQLite: it waited for the single writer, then took the next signal, in order.
        left = 1 if db.dialect.name == "postgresql" else 0
        assert session.scalar(select(func.count()).select_from(Signal).where(Signal.processed_at.is_(None))) == left
        engine.process_pending(session=session, settings=settings, now=later)
    with unit_of_work(sessions) as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 1
        assert session.scalar(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.kind == "crm.create_task")) == 1
        assert session.scalar(select(func.count()).select_from(Signal).where(Signal.processed_at.is_(None))) == 0
    db.dispose()
