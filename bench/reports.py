"""Report query time over many tasks against few, in one run.

    python bench/reports.py [--small 10000] [--large 1000000] [--database-url URL]

Builds two scratch databases (SQLite files, or with --database-url new PostgreSQL databases beside
the one named, dropped afterwards) with `small` and `large` tasks, each task the approval of its own
step run, spread over 40 steps of 4 playbooks, 20 owners in 4 teams, 100 accounts, 30 days and a mix
of outcomes; per ten tasks a journey started by a signal, a stage change and an escalation; per twenty
a feedback verdict; per hundred an exception item. Bulk inserted with Core executemany. Then times
each report in the catalog (best of 3; sla by team and week, time-saved by playbook and week) on both
and prints the times and the ratio large/small next to the ratio of the sizes. Asserts nothing.
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
from orchestrator.models import (
    Account,
    ExceptionItem,
    Journey,
    Owner,
    PlaybookVersion,
    Signal,
    SlaEvent,
    StageChange,
    StepRun,
    Task,
    TaskFeedback,
)
from orchestrator.reports.catalog import REPORTS, run_report

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CHUNK = 20_000
OUTCOMES = [("done", "approved"), ("done", "approved"), ("done", "approved"), ("rejected", "rejected"),
            ("cancelled", "cancelled"), ("open", None)]
OVERSIGHT = ["in_the_loop", "on_the_loop", None, None]
STEP_STATUS = ["done", "done", "overridden", "skipped", "done"]
BY = {"sla": "team,week", "time-saved": "playbook,week"}  # the widest grouping each offers


def _fill(engine: Engine, tasks: int) -> None:
    with engine.begin() as connection:
        owners = [connection.execute(insert(Owner).values(
            email=f"o{n}@x.example", name=f"O{n}", role="csm", team=None if n == 19 else f"team{n % 4}")
            .returning(Owner.id)).scalar_one() for n in range(20)]
        accounts = [connection.execute(insert(Account).values(
            name=f"A{n}", owner_id=owners[n % 20], stage="onboard", segment=["smb", "mid", "enterprise"][n % 3])
            .returning(Account.id)).scalar_one() for n in range(100)]
        versions = [connection.execute(insert(PlaybookVersion).values(
            playbook_id=f"pb{n}", version=1, name=f"PB{n}", stage=["acquire", "onboard", "adopt", "renew"][n],
            checksum=hashlib.sha256(str(n).encode()).hexdigest(), source_text="", source_path=f"pb{n}.yaml")
            .returning(PlaybookVersion.id)).scalar_one() for n in range(4)]
        journeys = max(1, tasks // 10)
        for start in range(0, journeys, CHUNK):
            connection.execute(insert(Signal), [
                {"type": "lead.created", "dedupe_key": f"s{j}", "account_id": accounts[j % 100], "source": "cli",
                 "payload": {}, "occurred_at": T0 + timedelta(seconds=(j * 7907) % (30 * 86400)),
                 "received_at": T0} for j in range(start, min(journeys, start + CHUNK))])
        first_signal = connection.execute(text("SELECT min(id) FROM signals")).scalar_one()
        for start in range(0, journeys, CHUNK):
            connection.execute(insert(Journey), [
                {"account_id": accounts[j % 100], "playbook_id": f"pb{j % 4}", "playbook_version_id": versions[j % 4],
                 "enrollment_key": f"k{j}", "status": "waiting", "enrolled_at": T0, "context": {},
                 "trigger_signal_id": first_signal + j} for j in range(start, min(journeys, start + CHUNK))])
        first_journey = connection.execute(text("SELECT min(id) FROM journeys")).scalar_one()
        stages = ["acquire", "onboard", "adopt", "expand", "renew"]
        for start in range(0, journeys, CHUNK):
            connection.execute(insert(StageChange), [
                {"account_id": accounts[j % 100], "from_stage": stages[j % 4], "to_stage": stages[(j % 4) + 1],
                 "at": T0 + timedelta(seconds=(j * 7901) % (30 * 86400)), "seconds_in_previous": 3600 * (j % 500),
                 "journey_id": first_journey + j, "reason": ""} for j in range(start, min(journeys, start + CHUNK))])
        items = max(1, tasks // 100)
        connection.execute(insert(ExceptionItem), [
            {"category": ["missing_field", "unknown_account", "no_assignee"][i % 3], "owner": f"o{i % 20}@x.example",
             "message": "m", "detail": {}, "status": "open" if i % 2 else "resolved", "occurrences": 1 + i % 3,
             "journey_id": first_journey + i % journeys,
             "created_at": T0 + timedelta(seconds=(i * 7919) % (30 * 86400)),
             "respond_by": T0 + timedelta(seconds=(i * 7919) % (30 * 86400) + 8 * 3600)} for i in range(items)])
        for start in range(0, tasks, CHUNK):
            ids = range(start, min(tasks, start + CHUNK))
            connection.execute(insert(StepRun), [
                {"journey_id": first_journey + i % journeys, "step_id": f"s{i % 10}",
                 "kind": ["automated", "automated", "human", "hybrid"][i % 4],
                 "oversight": OVERSIGHT[i % 4], "status": STEP_STATUS[i % 5],
                 "reason": "crm.update_field ran" if i % 4 == 1 else "", "outcome": {"estimate_minutes": 15},
                 "started_at": T0 + timedelta(seconds=(i * 7919) % (30 * 86400))} for i in ids])
        first_run = connection.execute(text("SELECT min(id) FROM step_runs")).scalar_one()
        for start in range(0, tasks, CHUNK):
            ids = range(start, min(tasks, start + CHUNK))
            rows = []
            for i in ids:
                status, outcome = OUTCOMES[i % 6]
                created = T0 + timedelta(seconds=(i * 7919) % (30 * 86400))
                rows.append({"account_id": accounts[i % 100], "journey_id": first_journey + i % journeys,
                             "step_run_id": first_run + i, "owner_id": owners[i % 20], "kind": "approval",
                             "title": "t", "recommendation": "", "brief": {}, "brief_text": "", "status": status,
                             "outcome": outcome, "priority": "normal", "created_at": created,
                             "due_at": created + timedelta(days=1), "escalation_level": 0, "sla_state": "on_track",
                             "paused_seconds": (i % 7) * 60, "ack_outcome": "met" if i % 3 else "breached",
                             "due_outcome": None if outcome is None else ("met" if i % 5 else "breached"),
                             "acknowledged_at": created + timedelta(seconds=60 + i % 900) if i % 2 else None,
                             "completed_at": created + timedelta(seconds=5 + i % 400) if outcome else None})
            connection.execute(insert(Task), rows)
        first_task = connection.execute(text("SELECT min(id) FROM tasks")).scalar_one()
        for start in range(0, tasks // 10, CHUNK):  # an escalation for every tenth task, rung 1 or 2
            connection.execute(insert(SlaEvent), [
                {"task_id": first_task + i * 10, "kind": "escalated", "level": 1 + i % 2, "at": T0, "detail": {}}
                for i in range(start, min(tasks // 10, start + CHUNK))])
        for start in range(0, tasks // 20, CHUNK):  # feedback on every twentieth task
            connection.execute(insert(TaskFeedback), [
                {"task_id": first_task + i * 20, "by": "o@x.example", "useful": bool(i % 3), "note": "",
                 "created_at": T0, "updated_at": T0} for i in range(start, min(tasks // 20, start + CHUNK))])


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
                run_report(name, sessions=sessions, since=T0, until=T0 + timedelta(days=31),
                           by=BY.get(name), estimates={"crm.update_field": 3})
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
