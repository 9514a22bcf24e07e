"""What periodic jobs ask for ("what is due now") is served by an index, not a table scan.

PostgreSQL only: the planner is asked to avoid sequential scans, then the plan of each
query the real claim functions send must use the index built for it. With `enable_seqscan`
off the planner still falls back to a scan when no index can answer, so a missing or
unusable (e.g. partial-predicate mismatch) index fails the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from orchestrator.delivery import outbox
from orchestrator.intake import signals
from orchestrator.journeys import engine
from tests.conftest import T0


def _plans(session: Session, call: Callable[[], Any], table: str) -> list[str]:
    connection = session.connection()
    captured: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _executemany):
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            captured.append((statement, parameters))

    event.listen(connection, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(connection, "before_cursor_execute", capture)
    assert captured, f"no query on {table} was sent"
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    plans = []
    for statement, parameters in captured:
        rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
        plans.append("\n".join(row[0] for row in rows))
    return plans


@pytest.fixture
def postgres_session(session, backend):
    if backend != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    return session


def test_claiming_pending_signals_uses_the_pending_index(postgres_session):
    plans = _plans(postgres_session, lambda: signals.pending_signals(postgres_session, limit=100), "signals")
    assert all("ix_signals_pending" in plan for plan in plans), plans


def test_the_wait_timeout_sweep_uses_the_wait_due_index(postgres_session, settings):
    plans = _plans(postgres_session,
                   lambda: engine.sweep_timeouts(session=postgres_session, settings=settings, now=T0),
                   "journeys")
    assert any("ix_journeys_wait_due" in plan for plan in plans), plans


def test_claiming_due_outbox_messages_uses_the_due_index(postgres_session):
    plans = _plans(postgres_session, lambda: outbox.pending(postgres_session, now=T0, limit=100),
                   "outbox_messages")
    assert all("ix_outbox_due" in plan for plan in plans), plans


def test_closing_expired_override_windows_uses_the_open_window_index(postgres_session, settings):
    plans = _plans(postgres_session,
                   lambda: engine.sweep_timeouts(session=postgres_session, settings=settings, now=T0),
                   "step_runs")
    assert any("ix_step_runs_override_open" in plan for plan in plans), plans
