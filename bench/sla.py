"""SLA sweep cost against open-task count, and against one APScheduler job per deadline, in one run.

    python bench/sla.py [--large 1000000] [--small 10000] [--due 1000] [--naive 100000]
                        [--workers 0] [--database-url postgresql://postgres@127.0.0.1:5432/test]

(a) Cost follows what is due: two scratch PostgreSQL databases, one with --small open tasks
    and one with --large, each with the same --due overdue tasks (two-rung chains). Prints
    the time of the sweep's claim query (one batch, rolled back) and of the whole sweep
    that escalates the due tasks, for both, and the large/small ratios. Built with Core
    bulk inserts; --large is a flag because a million rows take minutes on a small box.
(b) The naive design: one APScheduler DateTrigger job per task deadline, --naive of them, in
    a MemoryJobStore: time to add them, memory they hold (tracemalloc), time until all fired;
    against our one interval job per kind of work.
(c) With --workers N: the multi-worker scenario of tests/work/test_sla_workers.py (three
    `handoff worker` processes, one killed with SIGKILL) with N tasks, e.g. 10000.

Asserts nothing about speed; it prints what it measured.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator import schema  # noqa: E402
from orchestrator.config import Settings  # noqa: E402
from orchestrator.db import make_engine, make_session_factory, parse_database_url  # noqa: E402
from orchestrator.work.sweep import claim_due, sweep_sla  # noqa: E402
from tests.work.sla_bulk import add_background, build  # noqa: E402


def _scratch(base: URL) -> URL:
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"handoff_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name)


def _drop(base: URL, url: URL) -> None:
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


def _sweep_case(base: URL, *, open_tasks: int, due: int, now: datetime) -> dict[str, float]:
    url = _scratch(base)
    try:
        engine = make_engine(url)
        schema.upgrade(engine)
        started = time.perf_counter()
        build(engine, tasks=due, due=due, now=now)
        add_background(engine, tasks=open_tasks - due, now=now)
        with engine.begin() as connection:
            connection.execute(text("ANALYZE tasks"))
        built = time.perf_counter() - started
        sessions = make_session_factory(engine)
        claims = []
        for _ in range(5):
            with sessions() as session:
                started = time.perf_counter()
                claim_due(session, now=now, limit=200)
                claims.append(time.perf_counter() - started)
                session.rollback()
        settings = Settings(database_url=url, exception_owner="ops@bulk.example")  # chains run out into items
        started = time.perf_counter()
        report = sweep_sla(sessions=sessions, settings=settings, now=now)
        swept = time.perf_counter() - started
        engine.dispose()
        return {"open": open_tasks, "built_s": built, "claim_ms": sorted(claims)[2] * 1000,
                "sweep_s": swept, "checked": report.tasks}
    finally:
        _drop(base, url)


def _naive(count: int) -> dict[str, float]:
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    fired = 0
    lock = threading.Lock()
    done = threading.Event()

    def fire() -> None:
        nonlocal fired
        with lock:
            fired += 1
            if fired == count:
                done.set()

    scheduler = BackgroundScheduler(jobstores={"default": MemoryJobStore()}, timezone=UTC,
                                    job_defaults={"misfire_grace_time": None})
    scheduler.start(paused=True)
    tracemalloc.start()
    base_memory = tracemalloc.get_traced_memory()[0]
    at = datetime.now(UTC) + timedelta(seconds=1)
    started = time.perf_counter()
    for n in range(count):
        scheduler.add_job(fire, "date", run_date=at, id=f"task:{n}:due")
    added = time.perf_counter() - started
    memory = tracemalloc.get_traced_memory()[0] - base_memory
    tracemalloc.stop()
    started = time.perf_counter()
    scheduler.resume()
    done.wait(timeout=3600)
    to_fire = time.perf_counter() - started
    scheduler.shutdown(wait=False)
    return {"jobs": count, "add_s": added, "memory_mb": memory / 2**20, "fire_s": to_fire, "fired": fired}


@click.command()
@click.option("--large", default=1_000_000, show_default=True, help="Open tasks in the large case.")
@click.option("--small", default=10_000, show_default=True, help="Open tasks in the small case.")
@click.option("--due", default=1_000, show_default=True, help="Overdue tasks in both cases.")
@click.option("--naive", default=100_000, show_default=True, help="APScheduler jobs, one per deadline.")
@click.option("--workers", default=0, show_default=True, help="Run the multi-worker scenario with N tasks.")
@click.option("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test", show_default=True)
def main(large: int, small: int, due: int, naive: int, workers: int, database_url: str) -> None:
    base = parse_database_url(database_url)
    now = datetime.now(UTC)
    print(f"(a) sweep with {due} due tasks among {small:,} and among {large:,} open tasks (PostgreSQL)")
    cases = [_sweep_case(base, open_tasks=size, due=due, now=now) for size in (small, large)]
    for case in cases:
        print(f"    {case['open']:>10,} open: built in {case['built_s']:.1f}s; claim of one batch "
              f"{case['claim_ms']:.2f} ms; sweep of {case['checked']} due tasks {case['sweep_s']:.2f}s "
              f"({case['sweep_s'] / max(case['checked'], 1) * 1000:.1f} ms per due task)")
    print(f"    large/small: claim x{cases[1]['claim_ms'] / cases[0]['claim_ms']:.2f}, "
          f"sweep x{cases[1]['sweep_s'] / cases[0]['sweep_s']:.2f} for x{large / small:.0f} open tasks")

    print(f"(b) naive: one APScheduler job per deadline, {naive:,} jobs, MemoryJobStore")
    result = _naive(naive)
    print(f"    added in {result['add_s']:.1f}s ({naive / result['add_s']:,.0f}/s), holding "
          f"{result['memory_mb']:.1f} MiB; all {result['fired']:,} fired {result['fire_s']:.1f}s after they came due")
    ours = cases[0]
    print(f"    ours: 1 interval job (sla.sweep) whatever the count, no per-task memory in the process; "
          f"{ours['checked']} due tasks fully escalated in {ours['sweep_s']:.2f}s")
    if workers:
        from tests.work.test_sla_workers import run_scenario
        url = _scratch(base)
        try:
            with tempfile.TemporaryDirectory() as scratch:
                outcome = run_scenario(url, tasks=workers, workdir=Path(scratch), timeout=1800)
            print(f"(c) {workers:,} overdue tasks, 3 workers, one killed with SIGKILL and replaced: "
                  f"all rungs done in {outcome['seconds']:.1f}s (killed: {outcome['killed']}); "
                  "run the checks with HANDOFF_SLA_WORKER_TASKS=N pytest tests/work/test_sla_workers.py")
        finally:
            _drop(base, url)


if __name__ == "__main__":
    main()
