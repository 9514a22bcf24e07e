"""Two worker processes receiving the same signal at the same moment: one signal, one task."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select

from orchestrator import engine, schema, signals
from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory, unit_of_work
from orchestrator.models import Account, Deal, Journey, Owner, Signal, Task
from orchestrator.playbook.store import apply_playbooks
from orchestrator.resources import shipped_playbooks_dir

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
SIGNAL = {"type": "deal.closed_won", "account": {"domain": "race.example"},
          "deal": {"id": 1}, "occurred_at": "2026-11-23T14:55:00+00:00", "payload": {"amount": 50000}}


def _worker(url: str, barrier, results, ingest: bool) -> None:
    db = make_engine(url)
    settings = Settings(database_url=db.url)
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
                       settings=Settings(database_url=db.url))
    db.dispose()
    assert sum(_race(url, ingest=False)) == 1  # exactly one worker claimed and processed it
    _assert_one_signal_one_journey_one_task(url)
