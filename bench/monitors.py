"""Monitor (or health score) evaluation cost per arriving signal, against the history already stored, in one run.

    python bench/monitors.py [--small 1000] [--large 100000] [--accounts 100] [--new 500]
                             [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
                             [--subject monitors|health]

For each history size: a scratch database (SQLite file by default, or a scratch PostgreSQL
database beside --database-url) with the shipped usage-watch playbook active, `--accounts`
accounts and that many product.usage signals of history (one per account per hour, going
back), with the window aggregates the monitor keeps for them (bulk inserts: building 100k
through the engine would take minutes). Then `--new` fresh signals, spread over the accounts,
are evaluated by the monitors as the engine does (`monitors.observe`); it prints the median
and p90 per-signal time and the large/small ratio. Flat cost means a ratio near 1.
`--subject health` does the same for the shipped account-health model (`health.observe`: the
usage-trend window folded, the account rescored, a history row written when the score changes).

Asserts nothing about speed; it prints what it measured.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy import create_engine, event, insert, text
from sqlalchemy.engine import URL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator import schema  # noqa: E402
from orchestrator.config import Settings  # noqa: E402
from orchestrator.db import make_engine, make_session_factory, parse_database_url  # noqa: E402
from orchestrator.journeys import health, monitors  # noqa: E402
from orchestrator.journeys.steps import Run  # noqa: E402
from orchestrator.models import Account, MonitorWindow, Owner, Signal  # noqa: E402
from orchestrator.playbook.store import apply_playbooks  # noqa: E402
from orchestrator.resources import shipped_playbooks_dir  # noqa: E402

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
# What each subject applies, the window rows it keeps, and what the engine calls per signal.
SUBJECTS: dict[str, tuple[str, str, Any]] = {
    "monitors": ("usage-watch.yaml", "usage-watch/usage_drop", monitors.observe),
    "health": ("account-health.yaml", "health:account-health/usage_trend", health.observe),
}


def _database(base: URL | None, folder: Path) -> tuple[URL, Any]:
    if base is None:
        return parse_database_url(f"sqlite:///{folder / f'bench-{uuid.uuid4().hex[:8]}.db'}"), None
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"handoff_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return base.set(database=name), admin


def _build(engine: Any, *, history: int, accounts: int, subject: str) -> list[int]:
    playbook, key, _observe = SUBJECTS[subject]
    sessions = make_session_factory(engine)
    with sessions() as session:
        owner = Owner(name="Bench Owner", email="owner@bench.example", role="csm", timezone="UTC")
        session.add(owner)
        session.flush()
        rows = [Account(name=f"Bench {n}", domain=f"bench{n}.example", owner_id=owner.id, stage="adopt",
                        renewal_date=NOW + timedelta(days=30 + n)) for n in range(accounts)]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows]
        apply_playbooks(session=session, paths=[shipped_playbooks_dir() / "adopt" / playbook],
                        now=NOW, actor="bench")
        session.commit()
    per_account = history // accounts
    # Health: the small history is spread over the large one's six weeks, so both sizes have a week
    # before to compare with and rescoring does the same work (a changed score, a history row).
    step = max(1, (42 * 24) // per_account) if subject == "health" else 1
    windows: dict[tuple[int, datetime], dict[str, Any]] = defaultdict(
        lambda: {"signals": 0, "values": 0, "total": 0.0, "low": None, "high": None})
    batch: list[dict[str, Any]] = []
    with engine.begin() as connection:
        for account_id in ids:
            for hour in range(step, per_account * step + 1, step):
                at = NOW - timedelta(hours=hour)
                users = 40 + (hour % 7)
                batch.append({"type": "product.usage", "dedupe_key": f"bench:{account_id}:{hour}",
                              "account_id": account_id, "source": "bench", "payload": {"active_users": users},
                              "occurred_at": at, "received_at": at, "processed_at": at, "attempts": 0})
                start = monitors.EPOCH + ((at - monitors.EPOCH) // WEEK) * WEEK
                window = windows[(account_id, start)]
                window["signals"] += 1
                window["values"] += 1
                window["total"] += users
                window["low"] = users if window["low"] is None else min(window["low"], users)
                window["high"] = users if window["high"] is None else max(window["high"], users)
                if len(batch) >= 5000:
                    connection.execute(insert(Signal.__table__), batch)
                    batch = []
        if batch:
            connection.execute(insert(Signal.__table__), batch)
        connection.execute(insert(MonitorWindow.__table__), [
            {"monitor_key": key, "account_id": account_id, "window_start": start,
             "window_end": start + WEEK, "updated_at": NOW, **figures}
            for (account_id, start), figures in windows.items()])
    return ids


def _case(base: URL | None, folder: Path, *, history: int, accounts: int, new: int,
          subject: str) -> dict[str, float]:
    observe = SUBJECTS[subject][2]
    url, admin = _database(base, folder)
    try:
        engine = make_engine(url)
        schema.upgrade(engine)
        started = time.perf_counter()
        ids = _build(engine, history=history, accounts=accounts, subject=subject)
        built = time.perf_counter() - started
        if url.get_backend_name() == "postgresql":
            with engine.begin() as connection:
                connection.execute(text("ANALYZE"))
        settings = Settings(database_url=url, exception_owner="ops@bench.example")
        sessions = make_session_factory(engine)
        timings: list[float] = []
        statements = [0]  # SQL statements sent while evaluating: the cost that must not follow the history

        def count(*_args: Any) -> None:
            statements[0] += 1

        with sessions() as session:
            run = Run(session, settings, NOW)
            run.playbooks()  # read once per engine pass, as the engine does
            for n in range(new):
                account = session.get(Account, ids[n % len(ids)])
                assert account is not None
                signal = Signal(type="product.usage", dedupe_key=f"new:{n}", account_id=account.id, source="bench",
                                payload={"active_users": 40 + n % 5}, occurred_at=NOW + timedelta(seconds=n),
                                received_at=NOW)
                session.add(signal)
                session.flush()
                event.listen(engine, "before_cursor_execute", count)
                started = time.perf_counter()
                observe(run, account, signal)
                session.flush()
                timings.append(time.perf_counter() - started)
                event.remove(engine, "before_cursor_execute", count)
            session.rollback()
        engine.dispose()
        timings.sort()
        return {"history": history, "built_s": built, "median_ms": statistics.median(timings) * 1000,
                "p90_ms": timings[int(len(timings) * 0.9)] * 1000, "statements": statements[0] / new}
    finally:
        if admin is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            admin.dispose()


@click.command()
@click.option("--small", default=1000, show_default=True, help="signals of history, small case")
@click.option("--large", default=100_000, show_default=True, help="signals of history, large case")
@click.option("--accounts", default=100, show_default=True)
@click.option("--new", default=500, show_default=True, help="fresh signals evaluated per case")
@click.option("--database-url", default=None, help="PostgreSQL server to make scratch databases on (default SQLite)")
@click.option("--subject", type=click.Choice(sorted(SUBJECTS)), default="monitors", show_default=True)
def main(small: int, large: int, accounts: int, new: int, database_url: str | None, subject: str) -> None:
    base = parse_database_url(database_url) if database_url else None
    with tempfile.TemporaryDirectory() as folder:
        results = [_case(base, Path(folder), history=size, accounts=accounts, new=new, subject=subject)
                   for size in (small, large)]
    backend = base.get_backend_name() if base else "sqlite"
    what = "monitor evaluation per signal" if subject == "monitors" else "health rescoring per signal"
    print(f"{what} ({backend}, {accounts} accounts, {new} new signals, {SUBJECTS[subject][0]})")
    for result in results:
        print(f"  history {result['history']:>9,}: median {result['median_ms']:.3f} ms, p90 {result['p90_ms']:.3f} ms, "
              f"{result['statements']:.2f} SQL statements per signal (history built in {result['built_s']:.1f} s)")
    small_result, large_result = results
    print(f"  ratio {large:,} / {small:,}: median {large_result['median_ms'] / small_result['median_ms']:.2f}x, "
          f"p90 {large_result['p90_ms'] / small_result['p90_ms']:.2f}x")


if __name__ == "__main__":
    main()
