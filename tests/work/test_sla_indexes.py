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


def test_overdue_reviews_are_read_through_the_open_check_index(postgres_session, settings):  # noqa: F811
    from orchestrator.work.reviews import check_overdue_reviews

    plans = _plans(postgres_session, lambda: check_overdue_reviews(postgres_session, settings=settings, now=T0),
                   "playbook_reviews")
    assert all("ix_playbook_reviews_open_check" in plan for plan in plans), plans


def test_daily_digests_read_open_tasks_per_person_through_an_index(postgres_session, settings):  # noqa: F811
    from orchestrator.work.reminders import send_daily_digests
    from tests.factories import OwnerFactory

    OwnerFactory()
    postgres_session.flush()
    plans = _plans(postgres_session, lambda: send_daily_digests(postgres_session, settings=settings, now=T0),
                   "tasks")
    assert not any("Seq Scan on tasks" in plan for plan in plans), plans
