"""Two processes receiving the same signal at the same moment store it once."""

import multiprocessing
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator import schema
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory, unit_of_work
from orchestrator.intake.signals import ingest
from orchestrator.models import Account, ExceptionItem, Signal

ROUNDS = 8


def _line(n: int, domain: str) -> str:
    return (f'{{"type": "product.usage", "account": {{"domain": "{domain}"}}, '
            f'"occurred_at": "2026-11-23T13:{n:02d}:00Z", "payload": {{"round": {n}}}}}')


def _ingest_rounds(url: str, barrier, results, domain: str) -> None:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    settings = Settings(database_url=engine.url, exception_owner="ops-lead@example.com")
    now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    try:
        for n in range(ROUNDS):
            barrier.wait(timeout=30)  # both processes start each round together
            with unit_of_work(sessions) as session:
                result = ingest(session=session, raw=_line(n, domain), source="webhook", now=now,
                                settings=settings)
            results.put((n, result.status.value, result.signal_id))
    finally:
        engine.dispose()


def _run_two_processes(url: str, domain: str) -> list[tuple[int, str, int]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [context.Process(target=_ingest_rounds, args=(url, barrier, results, domain)) for _ in range(2)]
    for worker in workers:
        worker.start()
    collected = [results.get(timeout=60) for _ in range(2 * ROUNDS)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    return collected


def _migrated(fresh_database) -> str:
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    with Session(engine) as session:
        session.add(Account(name="Acme", domain="acme.example"))
        session.commit()
    engine.dispose()
    return fresh_database.render_as_string(hide_password=False)


def test_the_same_signal_ingested_concurrently_from_two_processes_creates_one_signal(fresh_database):
    url = _migrated(fresh_database)

    collected = _run_two_processes(url, "acme.example")

    for n in range(ROUNDS):
        outcomes = sorted((status, signal_id) for m, status, signal_id in collected if m == n)
        assert [status for status, _ in outcomes] == ["accepted", "duplicate"]
        assert outcomes[0][1] == outcomes[1][1]  # the duplicate names the stored signal
    engine = make_engine(url)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Signal)) == ROUNDS
    engine.dispose()


def test_an_unknown_account_signal_received_twice_at_once_raises_one_exception_item(fresh_database):
    url = _migrated(fresh_database)

    _run_two_processes(url, "ghost.example")

    engine = make_engine(url)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Signal)) == ROUNDS
        assert session.scalar(select(func.count()).select_from(ExceptionItem)) == ROUNDS
    engine.dispose()


def test_two_engine_workers_never_claim_the_same_accounts_signals(backend, fresh_database):
    if backend != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite has a single writer")
    from orchestrator.intake.signals import pending_signals

    url = _migrated(fresh_database)
    engine = make_engine(url)
    settings = Settings(database_url=engine.url, exception_owner="ops-lead@example.com")
    sessions = make_session_factory(engine)
    with unit_of_work(sessions) as session:
        for n in range(3):
            ingest(session=session, raw=_line(n, "acme.example"), source="webhook",
                   now=datetime(2026, 11, 23, 14, n, tzinfo=UTC), settings=settings)

    with sessions() as first, sessions() as second:
        claimed_first = [s.payload["round"] for s in pending_signals(first, limit=2)]
        claimed_second = [s.payload["round"] for s in pending_signals(second, limit=2)]
    engine.dispose()

    # Whole accounts: while the first worker holds acme's signals, its third one waits for them.
    assert (claimed_first, claimed_second) == ([0, 1], [])
