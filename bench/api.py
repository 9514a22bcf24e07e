"""API benchmark: batch ingest over HTTP against the service function, and GET /tasks latency for a rep.

    python bench/api.py [--signals 5000] [--tasks 10000] [--database-url URL]

Prints, from one run: signals/s through `POST /signals` (batches of 1,000) and through
`intake.signals.ingest` directly on the same database, their ratio, and the p50/p95 latency
of `GET /tasks` for a rep who owns 10,000 tasks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from orchestrator import schema  # noqa: E402
from orchestrator.api import create_app  # noqa: E402
from orchestrator.apikeys import create_key  # noqa: E402
from orchestrator.clock import FrozenClock  # noqa: E402
from orchestrator.config import Settings  # noqa: E402
from orchestrator.db import make_engine, make_session_factory, unit_of_work  # noqa: E402
from orchestrator.intake.signals import ingest  # noqa: E402
from orchestrator.models import Account, Owner, Task  # noqa: E402
from orchestrator.runtime import Runtime  # noqa: E402

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def _signals(count: int, tag: str) -> list[dict]:
    return [{"type": "product.usage", "account": {"domain": f"acct{n % 50}.example"},
             "occurred_at": (T0 + timedelta(seconds=n)).isoformat(), "payload": {"active_users": n % 9},
             "dedupe_key": f"{tag}-{n}"} for n in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signals", type=int, default=5000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench-api.db"
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
            for n in range(args.tasks)])
    client = create_app(runtime=runtime, rate_limit="1000000 per minute").test_client()

    started = time.perf_counter()
    batch = 1000
    api_signals = _signals(args.signals, "api")
    for offset in range(0, len(api_signals), batch):
        response = client.post("/signals", json=api_signals[offset:offset + batch],
                               headers={"Authorization": f"Bearer {ingest_key}"})
        assert response.status_code == 200, response.get_json()
    api_rate = args.signals / (time.perf_counter() - started)

    started = time.perf_counter()
    direct = _signals(args.signals, "direct")
    for offset in range(0, len(direct), batch):
        with unit_of_work(sessions) as session:
            for item in direct[offset:offset + batch]:
                with session.begin_nested():
                    ingest(session=session, raw=item, source="bench", now=T0, settings=settings)
    direct_rate = args.signals / (time.perf_counter() - started)

    latencies = []
    for n in range(200):
        started = time.perf_counter()
        response = client.get(f"/tasks?limit=50&after={n * 37}", headers={"Authorization": f"Bearer {rep_key}"})
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    latencies.sort()
    print(f"database: {engine.url.get_backend_name()}")
    print(f"POST /signals (batches of {batch}): {api_rate:,.0f} signals/s")
    print(f"intake.signals.ingest directly:    {direct_rate:,.0f} signals/s")
    print(f"ratio API / direct: {api_rate / direct_rate:.2f}")
    print(f"GET /tasks for a rep with {args.tasks:,} tasks: p50 {statistics.median(latencies):.1f} ms, "
          f"p95 {latencies[int(len(latencies) * 0.95)]:.1f} ms")
    engine.dispose()


if __name__ == "__main__":
    main()
