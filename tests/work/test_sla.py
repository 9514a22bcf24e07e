"""Time travel through SLAs with the injected clock: states, verdicts, rungs once each, pauses, calendars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from orchestrator.models import AuditEvent, ExceptionItem, OutboxMessage, Priority, SlaState, Task
from orchestrator.work import reminders
from orchestrator.work.exception_escalation import claim_due_items, escalate_item
from orchestrator.work.sla import apply_crm_status, pause_task, resume_task
from orchestrator.work.tasks import acknowledge_task, complete_task
from tests.conftest import T0
from tests.factories import AccountFactory, OwnerFactory
from tests.work.conftest import events, make_task, sweep

pytestmark = pytest.mark.usefixtures("sla_playbook")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _outbox(session, task, kind=None):
    query = select(OutboxMessage).where(OutboxMessage.task_id == task.id).order_by(OutboxMessage.id)
    if kind:
        query = query.where(OutboxMessage.kind == kind)
    return list(session.scalars(query))


@pytest.fixture
def people(session):
    manager = OwnerFactory(email="boss@acme.example", name="Boss", role="manager")
    rep = OwnerFactory(email="rep@acme.example", name="Rep", manager=manager)
    sdr_away = OwnerFactory(email="away@acme.example", role="sdr", out_of_office_until=utc(2026, 12, 7))
    sdr = OwnerFactory(email="sdr@acme.example", role="sdr")
    return {"manager": manager, "rep": rep, "sdr_away": sdr_away, "sdr": sdr}


def test_each_rung_fires_once_in_order_and_the_exhausted_chain_opens_an_exception(session, settings, clock,
                                                                                   feed, people):
    account = AccountFactory(owner=people["rep"])
    task = make_task(feed, account)  # Monday 09:00 New York
    assert (task.ack_by, task.due_at) == (utc(2026, 11, 23, 16), utc(2026, 11, 24, 14))
    assert task.sla_check_at == task.ack_by

    assert sweep(session, settings, T0).tasks == 0  # nothing due: the sweep does not even see it
    sweep(session, settings, utc(2026, 11, 23, 16))
    assert events(session, task) == [("ack_breached", 0), ("escalated", 1)]
    assert (task.priority, task.sla_state) == (Priority.HIGH, SlaState.BREACHED)
    sweep(session, settings, utc(2026, 11, 23, 16, 30))  # a duplicate trigger does nothing
    assert events(session, task) == [("ack_breached", 0), ("escalated", 1)]

    sweep(session, settings, utc(2026, 11, 24, 14))
    assert events(session, task)[-2:] == [("due_breached", 0), ("escalated", 2)]
    notify = _outbox(session, task, "notify.email")
    assert [m.payload["to"] for m in notify] == ["boss@acme.example"]

    sweep(session, settings, utc(2026, 11, 24, 16))  # due + 2 business hours: reassign, OOO skipped
    assert events(session, task)[-1] == ("escalated", 3)
    assert task.owner_id == people["sdr"].id
    updates = _outbox(session, task, "crm.update_task")
    assert [m.payload.get("priority") for m in updates] == ["high", None]
    assert updates[1].payload["owner_email"] == "sdr@acme.example"

    sweep(session, settings, utc(2026, 11, 25, 16))  # one business day after the last rung
    assert events(session, task)[-1] == ("exhausted", 4)
    item = session.scalars(select(ExceptionItem).where(ExceptionItem.category == "sla_exhausted")).one()
    assert item.detail["task_id"] == task.id
    assert task.sla_check_at is None and task.next_escalation_at is None

    audits = session.scalars(select(AuditEvent).where(AuditEvent.action == "task_escalated")
                             .order_by(AuditEvent.id)).all()
    assert [a.rule for a in audits] == [f"sla-test/touch/sla.escalate[{n}]" for n in (1, 2, 3)]
    assert {a.playbook_version for a in audits} == {1}


def test_a_worker_back_after_days_catches_up_every_rung_once(session, settings, feed, people):
    task = make_task(feed, AccountFactory(owner=people["rep"]))
    sweep(session, settings, utc(2026, 11, 30, 15))
    sweep(session, settings, utc(2026, 11, 30, 15))
    kinds = events(session, task)
    assert [k for k in kinds if k[0] == "escalated"] == [("escalated", 1), ("escalated", 2), ("escalated", 3)]
    assert ("exhausted", 4) in kinds and len(kinds) == len(set(kinds))
    assert task.priority == Priority.HIGH  # raised once, not once per look
    # Past due, no reminder: it would only say what the breach already says.
    assert not _outbox(session, task, "notify.email")[1:]


def test_an_acknowledged_task_passes_over_its_ack_rung(session, settings, clock, feed, people):
    task = make_task(feed, AccountFactory(owner=people["rep"]))
    clock.advance(timedelta(hours=1))
    acknowledge_task(session, task=task, actor="rep@acme.example", now=clock.now())
    sweep(session, settings, utc(2026, 11, 23, 17))
    assert events(session, task) == [("ack_met", 0)]
    assert task.priority == Priority.NORMAL and task.escalation_level == 1
    complete_task(session, task=task, actor="rep@acme.example", outcome="done", now=utc(2026, 11, 23, 18))
    assert events(session, task)[-1] == ("due_met", 0)
    assert task.sla_check_at is None
    assert sweep(session, settings, utc(2026, 11, 30)).tasks == 0


def test_at_risk_then_reminder_before_due_once(session, settings, feed, people):
    task = make_task(feed, AccountFactory(owner=people["rep"]))
    acknowledge_task(session, task=task, actor="rep", now=T0)
    sweep(session, settings, utc(2026, 11, 23, 19, 59))  # 5h59 of an 8h window
    assert task.sla_state == SlaState.ON_TRACK
    sweep(session, settings, utc(2026, 11, 23, 20))  # 6h: 75% elapsed, and 2 business hours before due
    assert task.sla_state == SlaState.AT_RISK
    assert events(session, task)[-2:] == [("at_risk", 0), ("reminded", 0)]
    sweep(session, settings, utc(2026, 11, 23, 21))
    assert len(_outbox(session, task, "notify.email")) == 1


def test_a_weekend_does_not_count(session, settings, clock, feed, people):
    clock.set(utc(2026, 11, 20, 21))  # Friday 16:00 New York
    task = make_task(feed, AccountFactory(owner=people["rep"]))
    assert task.ack_by == utc(2026, 11, 23, 15)  # Monday 10:00: one hour Friday, one Monday
    sweep(session, settings, utc(2026, 11, 22, 20))  # Sunday
    sweep(session, settings, utc(2026, 11, 23, 14, 59))
    assert events(session, task) == []
    sweep(session, settings, utc(2026, 11, 23, 15))
    assert events(session, task)[0] == ("ack_breached", 0)


def test_a_public_holiday_does_not_count(session, settings, clock, feed, people):
    clock.set(utc(2026, 11, 25, 21))  # Wednesday 16:00 New York; Thursday is Thanksgiving
    task = make_task(feed, AccountFactory(owner=people["rep"]))
    assert task.due_at == utc(2026, 11, 27, 21)  # Friday 16:00
    acknowledge_task(session, task=task, actor="rep", now=clock.now())
    sweep(session, settings, utc(2026, 11, 26, 23))
    assert ("due_breached", 0) not in events(session, task)
    sweep(session, settings, utc(2026, 11, 27, 21))
    assert ("due_breached", 0) in events(session, task)


def test_two_time_zones_breach_at_their_own_hours(session, settings, clock, feed, people):
    berliner = OwnerFactory(email="b@acme.example", timezone="Europe/Berlin", manager=people["manager"])
    clock.set(utc(2026, 11, 23, 15))  # 10:00 in New York, 16:00 in Berlin
    ny_task = make_task(feed, AccountFactory(owner=people["rep"]))
    berlin_task = make_task(feed, AccountFactory(owner=berliner))
    assert ny_task.ack_by == utc(2026, 11, 23, 17)  # 12:00 New York
    assert berlin_task.ack_by == utc(2026, 11, 24, 9)  # 17:00 Mon + 1h Tue: 10:00 Berlin
    sweep(session, settings, utc(2026, 11, 23, 17))
    assert ("ack_breached", 0) in events(session, ny_task)
    assert events(session, berlin_task) == []
    sweep(session, settings, utc(2026, 11, 24, 9))
    assert ("ack_breached", 0) in events(session, berlin_task)


def test_a_dst_change_over_the_weekend_keeps_local_hours(session, settings, clock, feed, people):
    clock.set(utc(2026, 10, 30, 20))  # Friday 16:00 EDT; clocks fall back on Sunday
    task = make_task(feed, AccountFactory(owner=people["rep"]))
    assert task.due_at == utc(2026, 11, 2, 21)  # Monday 16:00 EST
    acknowledge_task(session, task=task, actor="rep", now=clock.now())
    sweep(session, settings, utc(2026, 11, 2, 20, 30))  # 15:30 EST, though 16:30 "EDT"
    assert ("due_breached", 0) not in events(session, task)
    sweep(session, settings, utc(2026, 11, 2, 21))
    assert ("due_breached", 0) in events(session, task)


def test_waiting_on_the_customer_pauses_and_resumes_with_the_business_time_left(session, settings, clock,
                                                                                 feed, people):
    task = make_task(feed, AccountFactory(owner=people["rep"]))
    acknowledge_task(session, task=task, actor="rep", now=utc(2026, 11, 23, 15))
    assert apply_crm_status(session, settings=settings, task=task, status="WAITING", now=utc(2026, 11, 23, 18))
    assert task.sla_state == SlaState.PAUSED and task.sla_check_at is None
    assert not pause_task(session, settings=settings, task=task, actor="rep", now=utc(2026, 11, 23, 19))
    sweep(session, settings, utc(2026, 11, 24, 20))  # past the old due: paused, so nothing
    assert events(session, task) == [("ack_met", 0), ("paused", 1)]

    # Resumed Wednesday 10:00 New York with the 4 business hours that were left Monday 13:00.
    assert apply_crm_status(session, settings=settings, task=task, status="In Progress",
                            now=utc(2026, 11, 25, 15))
    assert task.due_at == utc(2026, 11, 25, 19)
    assert task.paused_seconds == (4 + 8 + 1) * 3600  # business time spent waiting
    assert not resume_task(session, settings=settings, task=task, actor="rep", now=utc(2026, 11, 25, 16))
    update = _outbox(session, task, "crm.update_task")[-1]
    assert update.payload["due_at"] == task.due_at.isoformat()

    sweep(session, settings, utc(2026, 11, 25, 18, 59))
    assert ("due_breached", 0) not in events(session, task)
    sweep(session, settings, utc(2026, 11, 25, 19))
    assert events(session, task)[-2:] == [("due_breached", 0), ("escalated", 2)]


def test_nobody_to_reassign_to_keeps_the_owner_and_raises_an_exception(session, settings, feed, people):
    people["sdr"].out_of_office_until = utc(2026, 12, 1)
    task = make_task(feed, AccountFactory(owner=people["rep"]))
    sweep(session, settings, utc(2026, 11, 24, 16))
    assert events(session, task)[-1] == ("escalated", 3)
    assert task.owner_id == people["rep"].id
    item = session.scalars(select(ExceptionItem).where(ExceptionItem.category == "no_assignee")).one()
    assert "escalation rung 3" in item.message


def test_exception_items_escalate_to_their_owner_then_the_default_owner(session, settings):
    from orchestrator import exception_queue
    item = exception_queue.raise_item(session, settings=settings, category="unknown_account",
                                      message="who is this?", at=T0)
    assert claim_due_items(session, now=utc(2026, 11, 23, 17, 59), limit=10) == []
    due = claim_due_items(session, now=utc(2026, 11, 23, 18), limit=10)  # 4 business hours
    assert [escalate_item(session, settings=settings, item=i, now=utc(2026, 11, 23, 18)) for i in due] == \
        ["data-steward@example.com"]
    assert claim_due_items(session, now=utc(2026, 11, 23, 21, 59), limit=10) == []
    due = claim_due_items(session, now=utc(2026, 11, 23, 22), limit=10)
    assert [escalate_item(session, settings=settings, item=i, now=utc(2026, 11, 23, 22)) for i in due] == \
        ["ops-lead@example.com"]
    assert item.next_escalation_at is None
    assert claim_due_items(session, now=utc(2026, 12, 30), limit=10) == []


def test_daily_digests_go_out_at_the_start_of_each_owners_day_once(session, settings, feed, people):
    berliner = OwnerFactory(email="b@acme.example", timezone="Europe/Berlin")
    make_task(feed, AccountFactory(owner=people["rep"]))
    make_task(feed, AccountFactory(owner=berliner))
    assert reminders.send_daily_digests(session, settings=settings, now=utc(2026, 11, 24, 7, 59)) == 0
    assert reminders.send_daily_digests(session, settings=settings, now=utc(2026, 11, 24, 8)) == 1
    assert reminders.send_daily_digests(session, settings=settings, now=utc(2026, 11, 24, 14)) == 1
    assert reminders.send_daily_digests(session, settings=settings, now=utc(2026, 11, 24, 15)) == 0
    digests = session.scalars(select(OutboxMessage).where(OutboxMessage.idempotency_key.like("digest:daily:%"))
                              .order_by(OutboxMessage.id)).all()
    assert [d.payload["to"] for d in digests] == ["b@acme.example", "rep@acme.example"]
    assert "1 open" in digests[0].payload["subject"]


def test_weekly_digest_to_each_category_owner_on_monday_once(session, settings):
    from orchestrator import exception_queue
    exception_queue.raise_item(session, settings=settings, category="unknown_account", message="x",
                               at=utc(2026, 11, 27))
    monday = utc(2026, 11, 30, 14)
    assert reminders.send_weekly_digests(session, settings=settings, now=monday - timedelta(days=1)) == 0
    assert reminders.send_weekly_digests(session, settings=settings, now=monday) == 2
    assert reminders.send_weekly_digests(session, settings=settings, now=monday + timedelta(hours=1)) == 0
    bodies = {m.payload["to"]: m.payload["body"] for m in session.scalars(
        select(OutboxMessage).where(OutboxMessage.idempotency_key.like("digest:weekly:%")))}
    assert "unknown_account: 1" in bodies["data-steward@example.com"]
    assert session.scalar(select(func.count()).select_from(Task)) == 0


def test_a_missed_monday_sends_the_weekly_digest_once_later_that_week(session, settings):
    from orchestrator import exception_queue
    exception_queue.raise_item(session, settings=settings, category="unknown_account", message="x",
                               at=utc(2026, 11, 27))
    exception_queue.raise_item(session, settings=settings, category="unknown_account", message="this week",
                               at=utc(2026, 11, 30, 20))
    # Nobody ran on Monday 30 November: Tuesday's first business hour sends last week's log, once.
    tuesday = utc(2026, 12, 1, 14)
    assert reminders.send_weekly_digests(session, settings=settings, now=tuesday - timedelta(minutes=1)) == 0
    assert reminders.send_weekly_digests(session, settings=settings, now=tuesday) == 2
    assert reminders.send_weekly_digests(session, settings=settings, now=utc(2026, 12, 3, 15)) == 0
    sent = {m.payload["to"]: m.payload for m in session.scalars(
        select(OutboxMessage).where(OutboxMessage.idempotency_key.like("digest:weekly:%")))}
    assert "unknown_account: 1 raised" in sent["data-steward@example.com"]["body"]  # last week's only
    assert sent["data-steward@example.com"]["subject"].endswith("week of 2026-11-23")
    assert reminders.send_weekly_digests(session, settings=settings, now=utc(2026, 12, 7, 14)) == 2  # next week


def test_daily_digests_after_days_of_outage_send_today_only(session, settings, feed, people):
    make_task(feed, AccountFactory(owner=people["rep"]))
    # Workers down Tuesday to Thursday: Friday morning brings one digest, not four.
    assert reminders.send_daily_digests(session, settings=settings, now=utc(2026, 11, 27, 14)) == 1
    assert reminders.send_daily_digests(session, settings=settings, now=utc(2026, 11, 27, 16)) == 0
    keys = session.scalars(select(OutboxMessage.idempotency_key)
                           .where(OutboxMessage.idempotency_key.like("digest:daily:%"))).all()
    assert [key.rsplit(":", 1)[1] for key in keys] == ["2026-11-27"]
