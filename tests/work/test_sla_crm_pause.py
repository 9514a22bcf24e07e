"""Who ends a pause: a CRM status resumes only the pause a CRM status started, never a rep's own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.models import SlaState
from orchestrator.work.sla import apply_crm_status, pause_task, resume_task
from tests.factories import AccountFactory, OwnerFactory
from tests.work.conftest import events, make_task

pytestmark = pytest.mark.usefixtures("sla_playbook")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_rep_s_own_pause_is_not_resumed_by_a_crm_status(session, settings, feed):
    task = make_task(feed, AccountFactory(owner=OwnerFactory(email="rep@acme.example")))
    assert pause_task(session, settings=settings, task=task, actor="rep@acme.example", now=utc(2026, 11, 23, 15),
                      reason="customer is on holiday")
    # The CRM task still reads "In Progress" (the rep paused in Handoff): a sync must not undo it.
    assert not apply_crm_status(session, settings=settings, task=task, status="In Progress",
                                now=utc(2026, 11, 23, 16))
    assert task.paused_at == utc(2026, 11, 23, 15) and task.sla_state == SlaState.PAUSED
    # A waiting status on top changes nothing either: it is paused already.
    assert not apply_crm_status(session, settings=settings, task=task, status="WAITING", now=utc(2026, 11, 23, 17))
    assert not apply_crm_status(session, settings=settings, task=task, status="IN_PROGRESS",
                                now=utc(2026, 11, 23, 18))
    assert task.paused_at is not None
    assert events(session, task) == [("paused", 1)]
    # The rep ends it by hand.
    assert resume_task(session, settings=settings, task=task, actor="rep@acme.example", now=utc(2026, 11, 24, 15))
    assert task.paused_at is None


def test_a_crm_pause_is_resumed_by_the_crm_and_a_later_manual_one_is_not(session, settings, feed):
    task = make_task(feed, AccountFactory(owner=OwnerFactory(email="rep@acme.example")))
    assert apply_crm_status(session, settings=settings, task=task, status="WAITING", now=utc(2026, 11, 23, 15))
    assert apply_crm_status(session, settings=settings, task=task, status="IN_PROGRESS", now=utc(2026, 11, 23, 16))
    assert task.paused_at is None
    assert pause_task(session, settings=settings, task=task, actor="rep@acme.example", now=utc(2026, 11, 23, 17))
    assert not apply_crm_status(session, settings=settings, task=task, status="IN_PROGRESS",
                                now=utc(2026, 11, 23, 18))
    assert task.paused_at == utc(2026, 11, 23, 17)
    assert events(session, task) == [("paused", 1), ("resumed", 1), ("paused", 2)]
