"""Report query time over many tasks against few, in one run.

    python bench/reports.py [--small 10000] [--large 1000000] [--database-url URL]

Builds two scratch databases (SQLite files, or with --database-url new PostgreSQL databases beside
the one named, dropped afterwards) with `small` and `large` tasks, each task the approval or action
of its own step run, spread over 40 steps of 4 playbooks, 30 days, and a mix of outcomes, bulk
inserted with Core executemany. Then times each report in the catalog (best of 3) on both and
prints the times and the ratio large/small next to the ratio of the sizes. Asserts nothing.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import URL

from orchestrator import schema
from orchestrator.db import make_engine, make_session_factory, parse_database_url
from orchestrator.models import Account, Journey, Owner, PlaybookVersion, StepRun, Task
from orchestrator.reports.catalog import REPORTS, run_report

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CHUNK = 20_000
OUTCOMES = [("done", "approved"), ("done", "approved"), ("done", "approved"), ("rejected", "rejected"),
            ("cancelled", "cancelled"), ("open", None)]
OVERSIGHT = ["in_the_loop", "on_the_loop", None, None]
STEP_STATUS = ["done", "done", "overridden", "skipped", "done"]


def _fill(engine: Engine, tasks: int) -> None:
    with engine.begin() as connection:
        owner = connection.execute(insert(Owner).values(email="o@x.example", name="O", role="csm", team="red")
                                   .returning(Owner.id)).scalar_one()
        account = connection.execute(insert(Account).values(name="A", owner_id=owner, stage="onboard")
                                     .returning(Account.id)).scalar_one()
        versions = [connection.execute(insert(PlaybookVersion).values(
            playbook_id=f"pb{n}", version=1, name=f"PB{n}", stage=["acquire", "onboard", "adopt", "renew"][n],
            checksum=hashlib.sha256(str(n).encode()).hexdigest(), source_text="", source_path=f"pb{n}.yaml")
            .returning(PlaybookVersion.id)).scalar_one() for n in range(4)]
        journeys = max(1, tasks // 10)
        for start in range(0, journeys, CHUNK):
            connection.execute(insert(Journey), [
                {"account_id": account, "playbook_id": f"pb{j % 4}", "playbook_version_id": versions[j % 4],
                 "enrollment_key": f"k{j}", "status": "waiting", "enrolled_at": T0, "context": {}}
                for j in range(start, min(journeys, start + CHUNK))])
        first_journey = connection.execute(text("SELECT min(id) FROM journeys")).scalar_one()
        for start in range(0, tasks, CHUNK):
            ids = range(start, min(tasks, start + CHUNK))
            connection.execute(insert(StepRun), [
                {"journey_id": first_journey + i % journeys, "step_id": f"s{i % 10}", "kind": "automated",
                 "oversight": OVERSIGHT[i % 4], "status": STEP_STATUS[i % 5], "reason": "", "outcome": {},
                 "started_at": T0 + timedelta(seconds=(i * 7919) % (30 * 86400))} for i in ids])
        first_run = connection.execute(text("SELECT min(id) FROM step_runs")).scalar_one()
        for start in range(0, tasks, CHUNK):
            ids = range(start, min(tasks, start + CHUNK))
            rows = []
            for i in ids:
                status, outcome = OUTCOMES[i % 6]
                created = T0 + timedelta(seconds=(i * 7919) % (30 * 86400))
                rows.append({"account_id": account, "journey_id": first_journey + i % journeys,
                             "step_run_id": first_run + i, "owner_id": owner, "kind": "approval", "title": "t",
                             "recommendation": "", "brief": {}, "brief_text": "", "status": status,
                             "outcome": outcome, "priority": "normal", "created_at": created,
                             "due_at": created + timedelta(days=1), "escalation_level": 0, "sla_state": "on_track",
                             "paused_seconds": (i % 7) * 60, "ack_outcome": "met" if i % 3 else "breached",
                             "completed_at": created + timedelta(seconds=5 + i % 400) if outcome else None})
            connection.execute(insert(Task), rows)


def _database(base: URL | None, folder: Path) -> tuple[URL, Engine | None]:
    if base is None:
        return parse_database_url(f"sqlite:///{folder / f'r-{uuid.uuid4().hex[:6]}.db'}"), None
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"bench_reports_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return base.set(database=name), admin


def _measure(base: URL | None, folder: Path, tasks: int) -> dict[str, float]:
    url, admin = _database(base, folder)
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        started = time.perf_counter()
        _fill(engine, tasks)
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("ANALYZE"))
        print(f"  {tasks:>9,} tasks inserted in {time.perf_counter() - started:6.1f} s", flush=True)
        sessions = make_session_factory(engine)
        times = {}
        for name in REPORTS:
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                run_report(name, sessions=sessions, since=T0, until=T0 + timedelta(days=31))
                best = min(best, time.perf_counter() - started)
            times[name] = best
        return times
    finally:
        engine.dispose()
        if admin is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            admin.dispose()


@click.command()
@click.option("--small", default=10_000, show_default=True)
@click.option("--large", default=1_000_000, show_default=True)
@click.option("--database-url", default=None, help="PostgreSQL server to create scratch databases on")
def main(small: int, large: int, database_url: str | None) -> None:
    base = parse_database_url(database_url) if database_url else None
    with tempfile.TemporaryDirectory() as folder:
        print(f"backend: {base.get_backend_name() if base else 'sqlite'}")
        few = _measure(base, Path(folder), small)
        many = _measure(base, Path(folder), large)
    print(f"{'report':<12}{small:>12,} tasks{large:>14,} tasks{'ratio':>9}   (sizes: x{large / small:,.0f})")
    for name in REPORTS:
        print(f"{name:<12}{few[name] * 1000:>12.1f} ms{many[name] * 1000:>14.1f} ms{many[name] / few[name]:>9.1f}")


if __name__ == "__main__":
    main()
