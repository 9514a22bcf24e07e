"""No signal lost: concurrent engines, injected deadlocks and lock timeouts, per-account order.

The engine claims whole accounts. A transient failure leaves a signal pending (with a
backoff) and holds its account's later signals back; only a failure of the signal itself
takes it off the queue. These tests use real processes, real locks and PostgreSQL's own
error codes (raised by a trigger), never a patched client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import URL

from orchestrator import schema
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory, unit_of_work
from orchestrator.intake import signals
from orchestrator.journeys import engine
from orchestrator.journeys.drain import drain_signals
from orchestrator.models import Account, ExceptionItem, Journey, OutboxMessage, Owner, Signal, Task
from orchestrator.playbook.store import apply_playbooks
from orchestrator.replay.samples import load_sample_data
from orchestrator.resources import shipped_playbooks_dir

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
SAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "orchestrator" / "sample_data" / "handoff.toml"


@pytest.fixture
def pg_url(backend, fresh_database: URL) -> str:
    if backend != "postgresql":
        pytest.skip("row locks, SKIP LOCKED and SQLSTATEs are PostgreSQL's; SQLite has a single writer")
    return fresh_database.render_as_string(hide_password=False)


# -- a history that touches every shipped playbook, many signals per account ---------------

def _history(domains: list[str]) -> list[dict]:
    lines = []
    for n in range(14):
        for index, domain in enumerate(domains):
            at = NOW - timedelta(hours=14 - n, minutes=index)
            kind = ["lead.created", "product.usage", "product.usage", "product.seat_limit_reached",
                    "sentiment.negative", "product.usage", "lead.created"][(n + index) % 7]
            payload: dict = {"n": n}
            if kind == "product.usage":
                payload |= {"usage_change_pct": -45 if (n + index) % 3 else 10, "active_users": n % 7}
            if kind == "lead.created":
                payload |= {"email": f"lead{n}@{domain}", "form": "demo request"}
            lines.append({"type": kind, "account": {"domain": domain}, "occurred_at": at.isoformat(),
                          "payload": payload, "dedupe_key": f"{domain}:{n}"})
        if n == 11:  # some accounts churn late: their journeys exit, later signals enroll again
            lines += [{"type": "account.churned", "account": {"domain": d}, "occurred_at": NOW.isoformat(),
                       "payload": {}, "dedupe_key": f"{d}:churn"} for d in domains[::4]]
    return lines


def _seed(url: str) -> list[str]:
    db = make_engine(url)
    schema.upgrade(db)
    sessions = make_session_factory(db)
    settings = Settings(database_url=db.url, exception_owner="ops@acme.example")
    with unit_of_work(sessions) as session:
        assert apply_playbooks(session=session, paths=[shipped_playbooks_dir()], now=NOW, actor="test").applied
        load_sample_data(session=session)
        # Caps make results depend on which account happened to be first across accounts;
        # order is promised per account, so take caps out of the comparison.
        session.execute(update(Owner).values(max_open_tasks=None))
        domains = sorted(session.scalars(select(Account.domain).where(Account.domain.is_not(None))))
    with unit_of_work(sessions) as session:
        for line in _history(domains):
            result = signals.ingest(session=session, raw=line, source="test", now=NOW, settings=settings)
            assert result.status == "accepted", result
    db.dispose()
    return domains


def _outcome(url: str) -> dict:
    db = make_engine(url)
    with unit_of_work(make_session_factory(db), read_only=True) as session:
        domain = dict(session.execute(select(Account.id, Account.domain)).all())
        outcome = {
            "journeys": Counter((domain[j.account_id], j.playbook_id, j.status, j.current_step_id)
                                for j in session.scalars(select(Journey))),
            "tasks": Counter((domain[t.account_id], t.kind, t.status) for t in session.scalars(select(Task))),
            "outbox": Counter((domain.get(m.account_id), m.kind) for m in session.scalars(select(OutboxMessage))),
            "exceptions": Counter(e.category for e in session.scalars(select(ExceptionItem))),
            "pending": session.scalar(select(func.count()).select_from(Signal).where(Signal.processed_at.is_(None))),
        }
    db.dispose()
    return outcome


def _engine_run(url: str) -> subprocess.Popen:
    env = {**os.environ, "HANDOFF_DATABASE_URL": url, "HANDOFF_CONFIG": str(SAMPLE_CONFIG)}
    handoff = Path(sys.executable).parent / "handoff"
    return subprocess.Popen([str(handoff), "engine", "run", "--limit", "25"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_four_engine_processes_evaluate_every_signal_once_like_one_process(pg_url, backend, tmp_path):
    single_url = pg_url
    _seed(single_url)
    alone = _engine_run(single_url)
    _, err = alone.communicate(timeout=300)
    assert alone.returncode == 0, err
    expected = _outcome(single_url)

    # The same history in a second database, drained by four processes at once.
    from tests.conftest import create_database, drop_database

    parallel = create_database(backend, tmp_path)
    try:
        parallel_url = parallel.render_as_string(hide_password=False)
        _seed(parallel_url)
        workers = [_engine_run(parallel_url) for _ in range(4)]
        results = [worker.communicate(timeout=300) for worker in workers]
        for worker, (_, err) in zip(workers, results, strict=True):
            assert worker.returncode == 0, err
            assert "Traceback" not in err
        got = _outcome(parallel_url)
    finally:
        drop_database(parallel)

    assert got["pending"] == 0
    assert "engine_error" not in got["exceptions"]
    assert got == expected


# -- faults injected by PostgreSQL itself ---------------------------------------------------

_FAULT = """
CREATE SEQUENCE fault_seq;
CREATE FUNCTION inject_fault() RETURNS trigger AS $$
BEGIN
  -- A sequence is not transactional: the count survives the rollback of the failed attempt.
  IF nextval('fault_seq') <= {times} THEN
    RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER inject_fault BEFORE INSERT ON journeys FOR EACH ROW EXECUTE FUNCTION inject_fault();
"""


def _one_account(url: str):
    db = make_engine(url)
    schema.upgrade(db)
    sessions = make_session_factory(db)
    settings = Settings(database_url=db.url, exception_owner="ops@acme.example")
    with unit_of_work(sessions) as session:
        assert apply_playbooks(session=session, paths=[shipped_playbooks_dir()], now=NOW, actor="test").applied
        owner = Owner(name="Ari", email="ari@acme.example", role="sdr")
        session.add_all([owner, Account(name="Acme", domain="acme.example", segment="mid", owner=owner,
                                        stage="acquire", stage_entered_at=NOW)])
    return db, sessions, settings


def _lead(session, settings, minute: int) -> int:
    result = signals.ingest(session=session, raw={
        "type": "lead.created", "account": {"domain": "acme.example"},
        "occurred_at": (NOW + timedelta(minutes=minute)).isoformat(),
        "payload": {"email": f"l{minute}@acme.example", "form": "demo"}}, source="test",
        now=NOW + timedelta(minutes=minute), settings=settings)
    assert result.signal_id is not None
    return result.signal_id


@pytest.mark.parametrize("sqlstate", ["40P01", "55P03", "40001"],
                         ids=["deadlock", "lock-timeout", "serialization-failure"])
def test_an_injected_transient_error_leaves_the_signal_pending_and_a_retry_processes_it(pg_url, sqlstate):
    db, sessions, settings = _one_account(pg_url)
    with unit_of_work(sessions) as session:
        first = _lead(session, settings, 0)
        _lead(session, settings, 1)  # the same account's next signal must wait for the first
        session.execute(text(_FAULT.format(times=1, sqlstate=sqlstate)))

    report = drain_signals(sessions=sessions, settings=settings, now=NOW + timedelta(minutes=2))
    assert report.deferred == 1 and report.signals == 0
    with unit_of_work(sessions, read_only=True) as session:
        signal = session.get(Signal, first)
        assert (signal.processed_at, signal.attempts) == (None, 1)
        assert session.scalar(select(func.count()).select_from(Signal).where(Signal.processed_at.is_(None))) == 2
        assert session.scalar(select(func.count()).select_from(ExceptionItem)) == 0

    # Before its backoff ends nothing of this account moves: not the first signal, and not
    # the second one either, which would otherwise overtake it.
    assert drain_signals(sessions=sessions, settings=settings, now=NOW + timedelta(minutes=2)).signals == 0
    later = NOW + timedelta(minutes=10)
    report = drain_signals(sessions=sessions, settings=settings, now=later)  # fails once more, then
    if report.deferred:
        later += timedelta(minutes=10)
        drain_signals(sessions=sessions, settings=settings, now=later)
    with unit_of_work(sessions, read_only=True) as session:
        assert session.scalar(select(func.count()).select_from(Signal).where(Signal.processed_at.is_(None))) == 0
        assert session.scalar(select(func.count()).select_from(Journey)) == 1
        assert session.scalar(select(func.count()).select_from(ExceptionItem)
                              .where(ExceptionItem.category == "engine_error")) == 0
        journey = session.scalars(select(Journey)).one()
        assert journey.trigger_signal_id == first  # the first lead enrolled: order was kept
    db.dispose()


def test_a_real_lock_timeout_defers_the_signal_instead_of_dropping_it(pg_url):
    db, sessions, settings = _one_account(pg_url)
    with unit_of_work(sessions) as session:
        _lead(session, settings, 0)
    # Another transaction holds the account's owner row while the engine assigns the task.
    impatient = make_engine(pg_url, connect_args={"options": "-c lock_timeout=200"})
    with db.connect() as holder:
        holder.execute(text("BEGIN"))
        holder.execute(text("SELECT id FROM owners FOR UPDATE"))
        holder.execute(text("SELECT id FROM playbook_versions FOR UPDATE"))
        holder.execute(text("LOCK TABLE tasks IN EXCLUSIVE MODE"))
        report = drain_signals(sessions=make_session_factory(impatient), settings=settings, now=NOW)
        holder.execute(text("ROLLBACK"))
    assert report.deferred == 1 and report.signals == 0
    report = drain_signals(sessions=sessions, settings=settings, now=NOW + timedelta(minutes=5))
    assert report.signals == 1 and report.errors == 0
    with unit_of_work(sessions, read_only=True) as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 1
    impatient.dispose()
    db.dispose()


def test_a_deterministic_failure_takes_only_that_signal_off_the_queue(pg_url):
    db, sessions, settings = _one_account(pg_url)
    with unit_of_work(sessions) as session:
        _lead(session, settings, 0)
        _lead(session, settings, 1)
        # 22023 invalid_parameter_value: the same every time, so it is this signal's own failure.
        session.execute(text(_FAULT.format(times=1, sqlstate="22023")))
    report = drain_signals(sessions=sessions, settings=settings, now=NOW + timedelta(minutes=2))
    assert (report.signals, report.errors) == (2, 1)
    with unit_of_work(sessions, read_only=True) as session:
        item = session.scalars(select(ExceptionItem).where(ExceptionItem.category == "engine_error")).one()
        assert "SQLSTATE 22023" in item.message
        assert "acme.example" not in item.message  # no row values quoted
    db.dispose()


# -- an account's signals in arrival order, whatever the number of workers ------------------

def test_a_second_worker_never_takes_an_accounts_later_signal_while_the_first_holds_it(pg_url):
    db, sessions, settings = _one_account(pg_url)
    with unit_of_work(sessions) as session:
        other = Account(name="Other", domain="other.example", segment="mid", stage="acquire", stage_entered_at=NOW)
        session.add(other)
        first = _lead(session, settings, 0)
        second = _lead(session, settings, 1)
        elsewhere = signals.ingest(session=session, raw={
            "type": "lead.created", "account": {"domain": "other.example"},
            "occurred_at": (NOW + timedelta(minutes=2)).isoformat(), "payload": {"email": "x@other.example"}},
            source="test", now=NOW + timedelta(minutes=2), settings=settings).signal_id

    holding, release = threading.Event(), threading.Event()
    taken: dict[str, list[int]] = {}

    def worker_x() -> None:
        with unit_of_work(sessions) as session:
            claimed = signals.pending_signals(session, limit=1, now=NOW + timedelta(minutes=5))
            taken["x"] = [s.id for s in claimed]
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=worker_x)
    thread.start()
    assert holding.wait(30)
    with unit_of_work(sessions) as session:
        report = engine.process_pending(session=session, settings=settings, now=NOW + timedelta(minutes=5))
    release.set()
    thread.join(30)
    with unit_of_work(sessions, read_only=True) as session:  # X only claimed; Y's work is what is processed
        taken["y"] = sorted(session.scalars(select(Signal.id).where(Signal.processed_at.is_not(None))))

    assert taken["x"] == [first]
    assert report.signals == 1
    assert taken["y"] == [elsewhere]  # not `second`: its account's first signal is still held
    assert second not in taken["y"]
    db.dispose()


def test_the_engine_run_command_exits_1_when_a_signal_failed(pg_url):
    db, sessions, settings = _one_account(pg_url)
    with unit_of_work(sessions) as session:
        _lead(session, settings, 0)
        session.execute(text(_FAULT.format(times=1, sqlstate="22023")))
    run = _engine_run(pg_url)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1, (out, err)
    assert "1 signal failed" in err
    assert "Traceback" not in err
    db.dispose()


def test_the_engine_log_names_the_error_kind_never_the_sql_parameters(pg_url, caplog):
    db, sessions, settings = _one_account(pg_url)
    with unit_of_work(sessions) as session:
        _lead(session, settings, 0)
        session.execute(text(_FAULT.format(times=1, sqlstate="22023")))
    with caplog.at_level("DEBUG"):
        drain_signals(sessions=sessions, settings=settings, now=NOW + timedelta(minutes=1))
    logged = "\n".join(record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
                       for record in caplog.records)
    assert "SQLSTATE 22023" in logged
    assert "l0@acme.example" not in logged and "acme.example" not in logged
    assert json.dumps("Acme") not in logged
    db.dispose()
