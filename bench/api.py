"""API benchmark: batch ingest over HTTP against the service function, and GET /tasks latency for a rep.

    python bench/api.py [--signals 5000] [--tasks 10000] [--database-url URL]

Prints, from one run: signals/s through `POST /signals` (batches of 1,000) and through the
service function the route calls (`intake.signals.ingest_many`, same batches) directly on the
same database, their ratio (what HTTP, auth and JSON cost), the item-by-item `ingest` rate for
reference, and the p50/p95 latency of `GET /tasks` for a rep who owns 10,000 tasks.

With --database-url (a PostgreSQL server) it works in a scratch database made next to it and
dropped afterwards, so runs never meet each other's signals or the named database's tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, insert, text  # noqa: E402
from sqlalchemy.engine import URL  # noqa: E402

from orchestrator import schema  # noqa: E402
from orchestrator.api import create_app  # noqa: E402
from orchestrator.apikeys import create_key  # noqa: E402
from orchestrator.clock import FrozenClock  # noqa: E402
from orchestrator.config import Settings  # noqa: E402
from orchestrator.db import make_engine, make_session_factory, parse_database_url, unit_of_work  # noqa: E402
from orchestrator.intake.signals import IntakeStatus, ingest, ingest_many  # noqa: E402
from orchestrator.models import Account, Owner, Task  # noqa: E402
from orchestrator.runtime import Runtime  # noqa: E402

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def _signals(count: int, tag: str) -> list[dict]:
    return [{"type": "product.usage", "account": {"domain": f"acct{n % 50}.example"},
             "occurred_at": (T0 + timedelta(seconds=n)).isoformat(), "payload": {"active_users": n % 9},
             "dedupe_key": f"{tag}-{n}"} for n in range(count)]


def _scratch(server: str) -> URL:
    """A new database on the PostgreSQL server `server` names, for this run only."""
    base = parse_database_url(server)
    scratch = base.set(database=f"handoff_bench_{uuid.uuid4().hex[:10]}")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{scratch.database}"'))
    admin.dispose()
    return scratch


def _drop(server: str, scratch: URL) -> None:
    admin = create_engine(parse_database_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signals", type=int, default=5000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--database-url", default=None, help="PostgreSQL server to make a scratch database on")
    args = parser.parse_args()
    scratch = _scratch(args.database_url) if args.database_url else None
    url = scratch or parse_database_url(f"sqlite:///{tempfile.mkdtemp()}/bench-api.db")
    try:
        _run(url, signals=args.signals, tasks=args.tasks)
    finally:
        if scratch is not None:
            _drop(args.database_url, scratch)
            print(f"scratch database {scratch.database} dropped")


def _run(url: URL, *, signals: int, tasks: int) -> None:
    engine = make_engine(url)
    schema.upgrade(engine)
    sessions = make_session_factory(engine)
    settings = Settings(database_url=engine.url, exception_owner="ops@bench.example")
    runtime = Runtime(settings=settings, engine=engine, sessions=sessions, clock=FrozenClock(T0))
    with unit_of_work(sessions) as session:
        rep = Owner(email="rep@bench.example", name="Rep", role="ae")
        session.add(rep)
        session.add_all([Account(name=f"A{n}", domain=f"acct{n}.example", owner=rep) for n in range(50)])
        session.flush()
        ingest_key = create_key(session, name="bench", role="ingest", now=T0)
        rep_key = create_key(session, name="rep", role="rep", owner=rep, now=T0)
        account_id = session.query(Account.id).first()[0]
        session.execute(insert(Task), [
            {"account_id": account_id, "owner_id": rep.id, "kind": "action", "title": f"task {n}",
             "recommendation": "", "brief": {}, "brief_text": "", "status": "open", "priority": "normal",
             "created_at": T0, "due_at": T0 + timedelta(days=1, minutes=n), "escalation_level": 0}
            for n in range(tasks)])
    client = create_app(runtime=runtime, rate_limit="1000000 per minute").test_client()

    started = time.perf_counter()
    batch = 1000
    api_signals = _signals(signals, "api")
    for offset in range(0, len(api_signals), batch):
        response = client.post("/signals", json=api_signals[offset:offset + batch],
                               headers={"Authorization": f"Bearer {ingest_key}"})
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["accepted"] == len(api_signals[offset:offset + batch]), response.get_json()
    api_rate = signals / (time.perf_counter() - started)

    # The service function the route calls, on the same batches: the ratio is what HTTP costs.
    started = time.perf_counter()
    direct = _signals(signals, "direct")
    for offset in range(0, len(direct), batch):
        with unit_of_work(sessions) as session:
            results = ingest_many(session=session, raws=direct[offset:offset + batch], source="bench", now=T0,
                                  settings=settings)
            assert all(r.status == IntakeStatus.ACCEPTED for r in results), results
    direct_rate = signals / (time.perf_counter() - started)

    # For reference: one signal at a time (what `ingest` costs a caller without a batch).
    started = time.perf_counter()
    single = _signals(signals, "single")
    for offset in range(0, len(single), batch):
        with unit_of_work(sessions) as session:
            for item in single[offset:offset + batch]:
                assert ingest(session=session, raw=item, source="bench", now=T0,
                              settings=settings).status == IntakeStatus.ACCEPTED
    single_rate = signals / (time.perf_counter() - started)

    latencies = []
    for n in range(200):
        started = time.perf_counter()
        response = client.get(f"/tasks?limit=50&after={n * 37}", headers={"Authorization": f"Bearer {rep_key}"})
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    latencies.sort()
    print(f"database: {engine.url.get_backend_name()}")
    print(f"POST /signals (batches of {batch}): {api_rate:,.0f} signals/s")
    print(f"ingest_many directly (same batches): {direct_rate:,.0f} signals/s")
    print(f"ratio API / direct: {api_rate / direct_rate:.2f}")
    print(f"ingest one by one (reference):       {single_rate:,.0f} signals/s")
    print(f"GET /tasks for a rep with {tasks:,} tasks: p50 {statistics.median(latencies):.1f} ms, "
          f"p95 {latencies[int(len(latencies) * 0.95)]:.1f} ms")
    engine.dispose()


if __name__ == "__main__":
    main()
