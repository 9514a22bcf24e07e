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
