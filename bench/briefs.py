"""Decision brief cost against account history length, in one run.

    python bench/briefs.py [--days 730] [--per-day 30] [--repeat 20]
                           [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Two accounts in one scratch database (SQLite file by default, or a scratch PostgreSQL database
next to --database-url): one with --days of history (--per-day product.usage rows a day and a
high-severity ticket a week), one with only the last 31 days of the same. Builds the full
brief (every section) for each --repeat times and prints the median time for both and the
long/short ratio: about 1 when the brief's cost follows its 30-day window, not the history.

Asserts nothing about speed; it prints what it measured.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import URL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator import schema  # noqa: E402
from orchestrator.db import make_engine, make_session_factory, parse_database_url  # noqa: E402
from orchestrator.models import Account, Owner, Signal  # noqa: E402
from orchestrator.playbook.model import BRIEF_SECTIONS  # noqa: E402
from orchestrator.work.briefs import build_brief  # noqa: E402

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def _history(session, account_id: int, *, days: int, per_day: int) -> None:
    minutes = 24 * 60 // per_day
    rows = [{"type": "product.usage", "dedupe_key": f"u-{account_id}-{n}", "account_id": account_id,
             "source": "bench", "payload": {"active_users": n % 50},
             "occurred_at": NOW - timedelta(minutes=minutes * n), "received_at": NOW, "processed_at": NOW}
            for n in range(days * per_day)]
    rows += [{"type": "support.ticket_opened", "dedupe_key": f"t-{account_id}-{n}", "account_id": account_id,
              "source": "bench", "payload": {"ticket_id": f"T-{n}", "severity": "high", "subject": "Export broken"},
              "occurred_at": NOW - timedelta(days=7 * n), "received_at": NOW, "processed_at": NOW}
             for n in range(days // 7)]
    for start in range(0, len(rows), 5000):
        session.execute(insert(Signal), rows[start:start + 5000])


def _time(sessions, account_id: int, repeat: int) -> float:
    took = []
    for _ in range(repeat):
        with sessions() as session:
            account = session.get(Account, account_id)
            started = time.perf_counter()
            build_brief(session, account=account, trigger=None, recommendation="r",
                        sections=[s for s in BRIEF_SECTIONS if s != "trigger"], now=NOW)
            took.append(time.perf_counter() - started)
    return statistics.median(took)


@click.command()
@click.option("--days", default=730, show_default=True)
@click.option("--per-day", default=30, show_default=True)
@click.option("--repeat", default=20, show_default=True)
@click.option("--database-url", default=None, help="PostgreSQL server to make a scratch database on")
def main(days: int, per_day: int, repeat: int, database_url: str | None) -> None:
    scratch: URL | None = None
    if database_url:
        base = parse_database_url(database_url)
        scratch = base.set(database=f"handoff_bench_{uuid.uuid4().hex[:10]}")
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{scratch.database}"'))
        url = scratch
    else:
        url = parse_database_url(f"sqlite:///{tempfile.mkdtemp()}/bench.db")
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            owner = Owner(email="rep@bench.example", name="Rep", role="csm")
            long, short = Account(name="Long", domain="long.example", owner=owner, stage="adopt"), \
                Account(name="Short", domain="short.example", owner=owner, stage="adopt")
            session.add_all([owner, long, short])
            session.flush()
            _history(session, long.id, days=days, per_day=per_day)
            _history(session, short.id, days=31, per_day=per_day)
            ids = (long.id, short.id)
        with engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()
        long_s, short_s = _time(sessions, ids[0], repeat), _time(sessions, ids[1], repeat)
        click.echo(f"{engine.dialect.name}: brief with {days * per_day + days // 7:,} signals of history "
                   f"{long_s * 1000:.1f} ms, with {31 * per_day + 31 // 7:,} {short_s * 1000:.1f} ms, "
                   f"ratio {long_s / short_s:.2f}")
    finally:
        engine.dispose()
        if scratch is not None:
            admin = create_engine(parse_database_url(database_url or ""), isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
