"""Monitors end to end, on SQLite and PostgreSQL: the shipped usage-watch playbook fires once per
window on a usage drop and once per silence, and the alert reaches a person with its figures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from orchestrator.journeys.monitors import sweep_silences
from orchestrator.models import AuditEvent, Journey, MonitorFiring, MonitorWindow, OutboxMessage, Signal, Task
from orchestrator.playbook import PlaybookInvalid, load_playbook_text
from orchestrator.resources import shipped_playbooks_dir
from orchestrator.worker.jobs import BUILTIN_JOB_MODULES
from tests.engine.conftest import HEADER, install_playbook
from tests.factories import AccountFactory, OwnerFactory

# T0 is Monday 2026-11-23 14:00 UTC; 7d windows run Monday to Monday (UTC).
WEEK = timedelta(days=7)


@pytest.fixture
def watch(session):
    text = (shipped_playbooks_dir() / "adopt" / "usage-watch.yaml").read_text()
    return install_playbook(session, text, "adopt/usage-watch.yaml")


@pytest.fixture
def account():
    csm = OwnerFactory(name="Cleo CSM", email="cleo@acme.example", role="csm")
    return AccountFactory(name="Initech", stage="adopt", csm=csm,
                          owner=OwnerFactory(name="Ari AE", email="ari@acme.example", role="ae"))


def _alerts(session, account):
    return session.scalars(select(Signal).where(Signal.account_id == account.id, Signal.type == "usage.alert")
                           .order_by(Signal.id)).all()


def _firings(session, account):
    return session.scalars(select(MonitorFiring).where(MonitorFiring.account_id == account.id)
                           .order_by(MonitorFiring.id)).all()


def _tasks(session, account):
    return session.scalars(select(Task).where(Task.account_id == account.id).order_by(Task.id)).all()


def test_a_usage_drop_fires_once_per_window_and_alerts_the_csm_with_the_figures(
        session, feed, clock, watch, account):
    last_week = clock.now() - WEEK
    feed("product.usage", account, {"active_users": 50}, at=last_week)
    feed("product.usage", account, {"active_users": 50}, at=last_week + timedelta(days=2))
    assert _alerts(session, account) == []  # no window before it: nothing to compare with

    feed("product.usage", account, {"active_users": 20})  # this week: 60% down
    feed.process()  # the alert the monitor sent is evaluated in the next pass
    (alert,) = _alerts(session, account)
    assert alert.source == "monitor"
    assert alert.payload["monitor"] == "usage_drop" and alert.payload["change"] == -60.0
    assert (alert.payload["previous"], alert.payload["value"]) == (50.0, 20.0)
    (task,) = _tasks(session, account)
    assert task.owner.email == "cleo@acme.example"
    assert task.title == "Usage down -60% week over week at Initech"
    assert "from 50.0 to 20.0" in task.recommendation
    flagged = session.scalars(select(OutboxMessage).where(OutboxMessage.account_id == account.id,
                                                          OutboxMessage.kind == "crm.update_field")).all()
    assert [m.payload["args"] for m in flagged] == [{"field": "health", "value": "at_risk"}]

    clock.advance(timedelta(hours=2))
    feed("product.usage", account, {"active_users": 10})  # still down, same window: no second firing
    feed.process()
    assert len(_alerts(session, account)) == 1 and len(_firings(session, account)) == 1
    event = session.scalars(select(AuditEvent).where(AuditEvent.account_id == account.id,
                                                     AuditEvent.action == "monitor_fired")).one()
    assert event.rule == "monitor:usage-watch/usage_drop" and event.detail["change"] == -60.0

    clock.advance(WEEK)
    feed("product.usage", account, {"active_users": 5})  # down 67% on last week's 15: a new window fires
    feed.process()
    assert [f.detail["change"] for f in _firings(session, account)] == [-60.0, pytest.approx(-66.6667)]
    assert len(_tasks(session, account)) == 2


def test_a_steady_account_never_fires(session, feed, clock, watch, account):
    for week in range(4):
        feed("product.usage", account, {"active_users": 40 - week * 5}, at=clock.now() + week * WEEK)
    clock.advance(4 * WEEK)
    feed.process()
    assert _firings(session, account) == []
    assert session.scalar(select(func.count()).select_from(MonitorWindow)
                          .where(MonitorWindow.account_id == account.id)) == 4


def test_a_late_signal_counts_in_its_own_window_and_fires_nothing(session, feed, clock, watch, account):
    feed("product.usage", account, {"active_users": 50}, at=clock.now() - WEEK)
    feed("product.usage", account, {"active_users": 50})
    feed("product.usage", account, {"active_users": 1}, at=clock.now() - WEEK + timedelta(hours=1))
    feed.process()
    assert _firings(session, account) == []
    older = session.scalars(select(MonitorWindow).where(MonitorWindow.account_id == account.id)
                            .order_by(MonitorWindow.window_start)).first()
    assert (older.signals, older.total) == (2, 51.0)


def test_silence_fires_once_when_due_and_again_only_after_usage_resumes(
        session, feed, settings, clock, watch, account):
    feed("product.usage", account, {"active_users": 12})
    clock.advance(timedelta(days=13))
    assert sweep_silences(session=session, settings=settings, now=clock.now()).fired == 0
    clock.advance(timedelta(days=1, minutes=1))
    assert sweep_silences(session=session, settings=settings, now=clock.now()).fired == 1
    assert sweep_silences(session=session, settings=settings, now=clock.now()).fired == 0
    clock.advance(timedelta(days=3))
    assert sweep_silences(session=session, settings=settings, now=clock.now()).fired == 0
    feed.process()
    (alert,) = _alerts(session, account)
    assert alert.payload["monitor"] == "usage_silence" and alert.payload["silent_for"] == "14d"
    (task,) = _tasks(session, account)
    assert task.owner.email == "ari@acme.example"
    assert task.title == "No product usage from Initech for 14d"

    feed("product.usage", account, {"active_users": 3})  # usage resumes: the clock restarts from it
    clock.advance(timedelta(days=15))
    assert sweep_silences(session=session, settings=settings, now=clock.now()).fired == 1
    assert [f.monitor_key for f in _firings(session, account)] == ["usage-watch/usage_silence"] * 2


def test_silence_waits_for_a_usage_signal_that_is_stored_but_not_yet_evaluated(
        session, feed, settings, clock, watch, account):
    from orchestrator.intake import signals

    feed("product.usage", account, {"active_users": 12})
    clock.advance(timedelta(days=14, hours=1))
    signals.ingest(session=session, source="test", now=clock.now(), settings=settings,
                   raw={"type": "product.usage", "account": {"id": account.id},
                        "occurred_at": (clock.now() - timedelta(hours=2)).isoformat(), "payload": {"active_users": 2}})
    assert sweep_silences(session=session, settings=settings, now=clock.now()).fired == 0
    feed.process()
    assert sweep_silences(session=session, settings=settings, now=clock.now()).fired == 0
    assert _firings(session, account) == []


def test_the_absence_job_is_registered_with_the_scheduler():
    assert "orchestrator.journeys.monitors" in BUILTIN_JOB_MODULES


TICKETS = """
    id: ticket-burst
    name: Ticket burst
    stage: adopt
""" + HEADER + """
    monitors:
      - id: three_tickets
        on: support.ticket_opened
        measure: count
        over: 4 business days
        when: value >= 3
        emit: support.burst
    enroll: {on: support.burst, once_per: signal}
    steps:
      - id: note
        kind: automated
        oversight: out_of_loop
        do: crm.create_note
        with: {body: "{{ signal.value }} tickets in {{ signal.over }}"}
"""


def test_a_count_over_business_days_fires_at_the_third_ticket_once(session, feed, clock, account):
    install_playbook(session, TICKETS, lint=False)
    for hours in (0, 20, 30, 40):  # the first three within four business days of the first
        feed("support.ticket_opened", account, {"ticket_id": f"T-{hours}"}, at=clock.now() + timedelta(hours=hours))
    feed.process()
    (firing,) = _firings(session, account)
    assert firing.detail["value"] == 3.0 and firing.detail["over"] == "4 business days"
    notes = session.scalars(select(OutboxMessage).where(OutboxMessage.account_id == account.id,
                                                        OutboxMessage.kind == "crm.create_note")).all()
    assert [n.payload["args"]["body"] for n in notes] == ["3.0 tickets in 4 business days"]
    assert session.scalars(select(Journey).where(Journey.account_id == account.id)).one().status == "completed"


@pytest.mark.parametrize(("monitor", "message"), [
    ("{id: m, on: product.usage, over: 7d, when: change <= -40}", "emit"),
    ("{id: m, on: product.usage, over: 7d, emit: x.y}", "when"),
    ("{id: m, on: product.usage, measure: avg, over: 7d, when: value > 1, emit: x.y}", "measure"),
    ("{id: m, on: product.usage, over: 7d, when: account.arr > 1, emit: x.y}", "account"),
    ("{id: m, absent: product.usage, over: 7d, emit: x.y}", "for"),
    ("{id: m, on: product.usage, absent: product.usage, for: 7d, emit: x.y}", "one of the two"),
])
def test_a_monitor_is_checked_before_it_runs(monitor, message):
    text = TICKETS.replace("""    monitors:
      - id: three_tickets
        on: support.ticket_opened
        measure: count
        over: 4 business days
        when: value >= 3
        emit: support.burst
""", f"    monitors:\n      - {monitor}\n")
    with pytest.raises(PlaybookInvalid) as raised:
        load_playbook_text(text, "bad.yaml", lint=False)
    assert message in str(raised.value.findings)
