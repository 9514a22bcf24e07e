"""What the engine reads per signal is served by an index, so its cost does not grow with history.

PostgreSQL only, as in tests/foundation/test_due_indexes.py: sequential scans are switched
off and the plan of each query the real code sent must use the index built for it; with
the index dropped the planner falls back to a scan (or another index) and the test fails.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, text

from orchestrator.models import Signal
from orchestrator.work.briefs import build_brief
from tests.engine.conftest import install_playbook
from tests.engine.test_engine import CAPPED, _start_flow
from tests.factories import AccountFactory
from tests.foundation.test_due_indexes import _plans


@pytest.fixture
def postgres_session(session, backend):
    if backend != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    return session


def test_an_accounts_open_journeys_are_read_through_the_open_journey_index(postgres_session, feed):
    account = _start_flow(postgres_session, feed)
    plans = _plans(postgres_session, lambda: feed("product.usage", account, {"active_users": 1}), "journeys")
    assert any("ix_journeys_open_by_account" in plan for plan in plans), plans


def test_ending_a_journey_finds_its_tasks_through_the_journey_index(postgres_session, feed):
    account = _start_flow(postgres_session, feed)
    plans = _plans(postgres_session, lambda: feed("account.churned", account), "tasks")
    assert any("ix_tasks_journey_id" in plan for plan in plans), plans


def test_the_sensitive_signal_check_uses_the_account_type_time_index(postgres_session, feed):
    install_playbook(postgres_session, CAPPED.replace("limits: {customer_touches: 1 per 7d}",
                                                      "sensitive_signals: [sentiment.negative]"))
    account = AccountFactory()
    # An account with a long history of other signals: only the index with the type in it
    # goes straight to the few sensitive ones.
    postgres_session.execute(insert(Signal), [
        {"type": "product.usage", "dedupe_key": f"history-{n}", "account_id": account.id, "source": "test",
         "payload": {}, "occurred_at": feed.clock.now() - timedelta(minutes=n), "received_at": feed.clock.now(),
         "processed_at": feed.clock.now()} for n in range(2000)])
    feed("sentiment.negative", account, {"score": -0.8})
    postgres_session.execute(text("ANALYZE signals"))
    plans = _plans(postgres_session, lambda: feed("product.usage", account, {"n": 1}), "signals")
    assert any("ix_signals_account_id_type_occurred_at" in plan for plan in plans), plans


def test_a_briefs_automations_section_uses_the_automated_step_run_index(postgres_session, clock):
    account = AccountFactory()
    plans = _plans(postgres_session, lambda: build_brief(
        postgres_session, account=account, trigger=None, recommendation="r", sections=["automations"],
        now=clock.now()), "step_runs")
    assert any("ix_step_runs_automated" in plan for plan in plans), plans


def _rows_read(session, call, table):
    """Rows each query on `table` touched (returned or filtered out, every plan node), EXPLAIN ANALYZE."""
    import json

    from sqlalchemy import event

    connection = session.connection()
    captured = []

    def capture(_conn, _cursor, statement, parameters, _context, _executemany):
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            captured.append((statement, parameters))

    event.listen(connection, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(connection, "before_cursor_execute", capture)

    def touched(node):  # rows the scans at the leaves of the plan read, kept or filtered out
        if node.get("Plans"):
            return sum(touched(child) for child in node["Plans"])
        return (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * node.get("Actual Loops", 1)

    found = []
    for statement, parameters in captured:
        plan = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).scalar()
        plan = json.loads(plan) if isinstance(plan, str) else plan
        found.append(touched(plan[0]["Plan"]))
    return found


def _history(session, account, now, *, days):
    """`days` of product usage, 30 rows a day, and a high-severity ticket a week."""
    rows = [{"type": "product.usage", "dedupe_key": f"u-{account.id}-{n}", "account_id": account.id,
             "source": "test", "payload": {"active_users": n % 50}, "occurred_at": now - timedelta(minutes=48 * n),
             "received_at": now, "processed_at": now} for n in range(days * 30)]
    rows += [{"type": "support.ticket_opened", "dedupe_key": f"t-{account.id}-{n}", "account_id": account.id,
              "source": "test", "payload": {"ticket_id": f"T-{n}", "severity": "high"},
              "occurred_at": now - timedelta(days=7 * n), "received_at": now, "processed_at": now}
             for n in range(days // 7)]
    session.execute(insert(Signal), rows)


def test_a_brief_reads_as_many_signal_rows_for_two_years_of_history_as_for_one_month(postgres_session, clock):
    now = clock.now()
    long, short = AccountFactory(), AccountFactory()
    _history(postgres_session, long, now, days=730)  # 22,000 rows
    _history(postgres_session, short, now, days=31)  # the same last month, nothing before
    postgres_session.execute(text("ANALYZE signals"))

    def read(account):
        return _rows_read(postgres_session, lambda: build_brief(
            postgres_session, account=account, trigger=None, recommendation="r", sections=["recent_signals"],
            now=now), "signals")

    long_reads, short_reads = read(long), read(short)
    # Query by query, the rows touched follow the window (30 days), not the history.
    assert len(long_reads) == len(short_reads)
    assert all(a <= b * 1.05 + 5 for a, b in zip(long_reads, short_reads, strict=True)), (long_reads, short_reads)
    assert max(long_reads) <= 30 * 31, long_reads
