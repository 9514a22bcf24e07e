"""Three `handoff worker` processes on one PostgreSQL, one killed with SIGKILL mid-sweep: every rung once.

10,000 tasks, every rung of their two-rung chains due and the chains' end too (HANDOFF_SLA_WORKER_TASKS
changes the count); about 80 s on a loaded 2-core box, most of it the three workers sweeping.
`bench/sla.py --workers N` runs the same scenario and prints its time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import URL

from orchestrator import schema
from orchestrator.db import make_engine
from orchestrator.models import AuditEvent, ExceptionItem, OutboxMessage, SlaEvent, Task
from tests.work.sla_bulk import RUNGS, build

TASKS = int(os.environ.get("HANDOFF_SLA_WORKER_TASKS", "10000"))
EXPECTED_KINDS = {("ack_breached", 0), ("due_breached", 0), ("escalated", 1), ("escalated", 2),
                  ("exhausted", RUNGS + 1)}


def _worker(url: URL, log: Path) -> subprocess.Popen[bytes]:
    # libpq names the worker's connections after its log, so the test can see it hold a batch.
    env = {**os.environ, "HANDOFF_DATABASE_URL": url.render_as_string(hide_password=False),
           "HANDOFF_LOG_LEVEL": "WARNING", "PGAPPNAME": f"handoff-{log.stem}"}
    env.pop("HANDOFF_CONFIG", None)
    handle = log.open("wb")
    return subprocess.Popen([str(Path(sys.executable).parent / "handoff"), "worker", "--job", "sla.sweep"],
                            env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=log.parent)


def _holds_a_batch(engine: Engine, name: str) -> bool:
    """The worker is mid-sweep: one of its connections is in a transaction that has locked or written rows."""
    with engine.connect() as connection:
        return bool(connection.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name AND backend_xid IS NOT NULL"),
            {"name": name}))


def _ready(log: Path) -> bool:
    return log.exists() and "SIGTERM stops it" in log.read_text(errors="replace")


def _count(engine: Engine, query) -> int:
    with engine.connect() as connection:
        return connection.scalar(query) or 0


def run_scenario(url: URL, *, tasks: int, workdir: Path, timeout: float = 600) -> dict[str, float]:
    """Build `tasks` overdue tasks, run three workers, kill one mid-sweep, start a replacement; wait till done."""
    engine = make_engine(url)
    schema.upgrade(engine)
    now = datetime.now(UTC)
    build(engine, tasks=tasks, due=tasks, now=now)
    escalated = select(func.count()).select_from(SlaEvent).where(SlaEvent.kind == "escalated")
    remaining = select(func.count()).select_from(Task).where(Task.sla_check_at.is_not(None),
                                                             Task.sla_check_at <= func.now())
    started = time.monotonic()
    workers = [_worker(url, workdir / f"worker{n}.log") for n in range(3)]
    killed = False
    try:
        while time.monotonic() - started < timeout:
            if not killed and _holds_a_batch(engine, "handoff-worker0"):
                workers[0].send_signal(signal.SIGKILL)  # mid-sweep: its claimed batch rolls back
                workers[0].wait()
                killed = True
                workers.append(_worker(url, workdir / "worker3.log"))  # what an orchestrator would do
            if killed and _count(engine, escalated) >= tasks * RUNGS and _count(engine, remaining) == 0 \
                    and all(_ready(workdir / f"worker{n}.log") for n in (1, 2, 3)):
                break  # (a worker still starting up has no SIGTERM handler yet: wait for it to say so)
            time.sleep(0.5 if killed else 0.05)
        elapsed = time.monotonic() - started
    finally:
        for process in workers[1:]:
            process.send_signal(signal.SIGTERM)
        for process in workers[1:]:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    engine.dispose()
    return {"tasks": tasks, "seconds": elapsed, "killed": killed,
            "graceful_exits": [p.returncode for p in workers[1:]]}


@pytest.mark.slow
def test_three_workers_and_a_kill_fire_every_rung_exactly_once(backend, fresh_database, tmp_path):
    if backend != "postgresql":
        pytest.skip("several worker processes share one PostgreSQL (SQLite has a single writer)")
    outcome = run_scenario(fresh_database, tasks=TASKS, workdir=tmp_path)
    assert outcome["killed"]
    assert outcome["graceful_exits"] == [0, 0, 0], [p.read_text()[-2000:] for p in tmp_path.glob("*.log")]

    engine = make_engine(fresh_database)
    try:
        with engine.connect() as connection:
            per_task = connection.execute(text(
                "SELECT task_id, array_agg(kind || ':' || level ORDER BY kind, level) FROM sla_events "
                "GROUP BY task_id")).all()
            assert len(per_task) == TASKS
            expected = sorted(f"{kind}:{level}" for kind, level in EXPECTED_KINDS)
            wrong = [(task_id, kinds) for task_id, kinds in per_task if sorted(kinds) != expected]
            assert not wrong, wrong[:5]
            # Doubles would show where no unique key guards: audit rows and the priority ladder.
            assert connection.scalar(select(func.count()).select_from(AuditEvent)
                                     .where(AuditEvent.action == "task_escalated")) == TASKS * RUNGS
            assert connection.scalar(select(func.count()).select_from(Task).where(Task.priority == "high")) == TASKS
            assert connection.scalar(select(func.count()).select_from(OutboxMessage)
                                     .where(OutboxMessage.idempotency_key.like("task:%:escalate:1:update"))) == TASKS
            assert connection.scalar(select(func.count()).select_from(OutboxMessage)
                                     .where(OutboxMessage.idempotency_key.like("task:%:escalate:2:notify"))) == TASKS
            assert connection.scalar(select(func.count()).select_from(ExceptionItem)
                                     .where(ExceptionItem.category == "sla_exhausted")) == TASKS
            assert connection.scalar(select(func.count()).select_from(Task)
                                     .where(Task.sla_check_at.is_not(None))) == 0
    finally:
        engine.dispose()
