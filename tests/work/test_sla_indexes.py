"""The SLA sweeps read partial indexes on what is due, never a scan of tasks or exception items (PostgreSQL)."""

from __future__ import annotations

from orchestrator.work.exception_escalation import claim_due_items
from orchestrator.work.sweep import claim_due
from tests.conftest import T0
from tests.foundation.test_due_indexes import _plans, postgres_session  # noqa: F401  (fixture)


def test_the_sla_sweep_claims_tasks_through_the_sla_check_index(postgres_session):  # noqa: F811
    plans = _plans(postgres_session, lambda: claim_due(postgres_session, now=T0, limit=200), "tasks")
    assert all("ix_tasks_sla_check" in plan for plan in plans), plans
    assert not any("Seq Scan on tasks" in plan for plan in plans), plans


def test_exception_escalation_claims_items_through_the_escalation_index(postgres_session):  # noqa: F811
    plans = _plans(postgres_session, lambda: claim_due_items(postgres_session, now=T0, limit=200),
                   "exception_items")
    assert all("ix_exception_items_escalation_due" in plan for plan in plans), plans
