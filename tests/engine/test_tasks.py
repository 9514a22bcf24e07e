from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from orchestrator import models
from orchestrator.durations import parse_duration
from orchestrator.models import Priority, TaskStatus
from orchestrator.playbook.model import Escalation, Sla
from orchestrator.work.briefs import Brief
from orchestrator.work.tasks import (
    TaskStateError,
    acknowledge_task,
    calendar_for,
    complete_task,
    create_task,
    deadlines,
    open_task_count,
    priority_for,
)
from tests.factories import AccountFactory, OwnerFactory

NEW_YORK = ZoneInfo("America/New_York")


def _sla(due="2 business days", ack=None, escalate=()):
    return Sla(due=parse_duration(due), ack=parse_duration(ack) if ack else None, escalate=escalate)


def _signal(session, account, type="product.usage", payload=None, at=None):
    at = at or datetime(2026, 11, 20, tzinfo=UTC)
    signal = models.Signal(type=type, dedupe_key=f"{type}:{account.id}:{at.isoformat()}:{payload}",
                           account_id=account.id, source="webhook", payload=payload or {}, occurred_at=at)
    session.add(signal)
    session.flush()
    return signal


def _brief(text="Why you got this\n- Signal: deal.closed_won"):
    return Brief(data={"trigger": None, "recommendation": "Book the kickoff", "assigned": "account owner"},
                 text=text)


def _count(session, model, **where):
    query = select(func.count()).select_from(model)
    for key, value in where.items():
        query = query.where(getattr(model, key) == value)
    return session.scalar(query)


# -- deadlines --------------------------------------------------------------------


def test_a_task_created_friday_1600_new_york_with_two_business_days_is_due_tuesday_1600(settings):
    owner = OwnerFactory.build(timezone="America/New_York")
    friday = datetime(2026, 11, 20, 16, 0, tzinfo=NEW_YORK)

    ack_by, due_at = deadlines(sla=_sla(ack="4 business hours"), calendar=calendar_for(owner, settings),
                               start=friday)

    assert due_at == datetime(2026, 11, 24, 16, 0, tzinfo=NEW_YORK)
    # One hour left on Friday, three more on Monday morning.
    assert ack_by == datetime(2026, 11, 23, 12, 0, tzinfo=NEW_YORK)


def test_thanksgiving_is_not_a_business_day(settings):
    owner = OwnerFactory.build(timezone="America/New_York")
    wednesday = datetime(2026, 11, 25, 16, 0, tzinfo=NEW_YORK)

    _, due_at = deadlines(sla=_sla(), calendar=calendar_for(owner, settings), start=wednesday)

    # Thursday 26th is Thanksgiving: Friday counts as the first day, Monday the second.
    assert due_at == datetime(2026, 11, 30, 16, 0, tzinfo=NEW_YORK)


def test_an_owners_own_working_hours_and_time_zone_shape_the_calendar(settings):
    owner = OwnerFactory.build(timezone="Europe/Berlin", working_hours={"hours": "08:00-12:00", "holidays": "DE"})
    calendar = calendar_for(owner, settings)

    due = calendar.add(datetime(2026, 11, 23, 11, 0, tzinfo=ZoneInfo("Europe/Berlin")),
                       parse_duration("2 business hours"))

    assert calendar.timezone == "Europe/Berlin"
    assert due == datetime(2026, 11, 24, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))


def test_a_calendar_named_by_the_playbook_wins_over_the_owners(settings):
    settings = replace(settings, calendars={**settings.calendars,
                                            "emea": {"timezone": "Europe/London", "hours": "08:00-16:00"}})
    owner = OwnerFactory.build(timezone="America/New_York")

    calendar = calendar_for(owner, settings, "emea")

    assert (calendar.timezone, calendar.start.hour, calendar.end.hour) == ("Europe/London", 8, 16)


# -- priority ---------------------------------------------------------------------


def test_priority_is_normal_for_a_routine_task_on_a_mid_market_account(session):
    account = AccountFactory(arr=Decimal("48000"))
    signal = _signal(session, account, "deal.closed_won")

    assert priority_for(account=account, signal=signal, due_in=timedelta(days=4)) == Priority.NORMAL


def test_priority_is_low_for_a_small_account_with_nothing_urgent(session):
    account = AccountFactory(arr=Decimal("5000"))
    assert priority_for(account=account, signal=None, due_in=timedelta(days=4)) == Priority.LOW


def test_an_escalation_raises_priority_and_a_short_sla_makes_it_urgent(session):
    account = AccountFactory(arr=Decimal("48000"))
    escalation = _signal(session, account, "support.escalation")

    assert priority_for(account=account, signal=escalation, due_in=timedelta(days=2)) == Priority.HIGH
    assert priority_for(account=account, signal=escalation, due_in=timedelta(hours=4)) == Priority.URGENT


def test_payload_severity_and_negative_sentiment_count(session):
    account = AccountFactory(arr=Decimal("48000"))
    critical = _signal(session, account, "support.ticket_opened", {"severity": "Critical"})
    unhappy = _signal(session, account, "survey.response", {"sentiment": -0.6})

    assert priority_for(account=account, signal=critical, due_in=timedelta(days=2)) == Priority.HIGH
    assert priority_for(account=account, signal=unhappy, due_in=timedelta(days=2)) == Priority.HIGH


def test_a_large_account_is_high_priority_on_its_own(session):
    account = AccountFactory(arr=Decimal("750000"))
    assert priority_for(account=account, signal=None, due_in=timedelta(days=3)) == Priority.HIGH


# -- create / acknowledge / complete ----------------------------------------------


def test_create_task_stores_deadlines_priority_one_outbox_message_and_one_audit_event(session, settings, clock):
    owner = OwnerFactory(name="Ana", email="ana@acme.example", timezone="America/New_York")
    account = AccountFactory(owner=owner, arr=Decimal("48000"))
    brief = _brief("Why you got this\n- Signal: deal.closed_won, amount 25000")

    task = create_task(session, settings=settings, account=account, owner=owner, kind="action",
                       title="Kickoff call with Acme", recommendation="Book the kickoff", brief=brief,
                       sla=_sla(ack="4 business hours"), now=clock.now())

    # Monday 09:00 New York + 2 business days = Wednesday 09:00; ack 4 business hours = 13:00.
    assert task.due_at == datetime(2026, 11, 25, 9, 0, tzinfo=NEW_YORK)
    assert task.ack_by == datetime(2026, 11, 23, 13, 0, tzinfo=NEW_YORK)
    assert (task.status, task.priority, task.owner_id) == (TaskStatus.OPEN, Priority.NORMAL, owner.id)
    assert task.brief_text == brief.text and task.brief == brief.data

    messages = session.scalars(select(models.OutboxMessage).where(models.OutboxMessage.task_id == task.id)).all()
    assert len(messages) == 1
    message = messages[0]
    assert (message.kind, message.target, message.idempotency_key) == ("crm.create_task", "crm",
                                                                       f"task:{task.id}:create")
    assert message.payload["description"] == brief.text
    assert message.payload["subject"] == "Kickoff call with Acme"
    assert message.payload["owner_email"] == "ana@acme.example"
    assert message.payload["due_date"] == "2026-11-25"
    assert message.payload["priority"] == "normal"
    assert message.payload["account_id"] == account.id

    events = session.scalars(select(models.AuditEvent).where(models.AuditEvent.account_id == account.id)).all()
    assert [e.action for e in events] == ["task_created"]
    assert events[0].detail["task_id"] == task.id
    assert "Ana" in events[0].reason


def test_rolling_back_the_transaction_leaves_no_task_outbox_message_or_audit_event(session, settings, clock):
    account = AccountFactory()
    before = [_count(session, m) for m in (models.Task, models.OutboxMessage, models.AuditEvent)]

    savepoint = session.begin_nested()
    create_task(session, settings=settings, account=account, owner=account.owner, kind="action", title="t",
                recommendation="r", brief=_brief(), sla=_sla(), now=clock.now())
    assert [_count(session, m) for m in (models.Task, models.OutboxMessage, models.AuditEvent)] == \
        [n + 1 for n in before]
    savepoint.rollback()

    assert [_count(session, m) for m in (models.Task, models.OutboxMessage, models.AuditEvent)] == before


def test_the_audit_event_names_the_playbook_version_and_step(session, settings, clock):
    account = AccountFactory()
    version = models.PlaybookVersion(playbook_id="onboard-kickoff", version=3, name="Onboarding", stage="onboard",
                                     checksum="x", source_text="", source_path="p.yaml")
    session.add(version)
    session.flush()
    journey = models.Journey(account_id=account.id, playbook_id="onboard-kickoff", playbook_version_id=version.id,
                             enrollment_key=f"onboard-kickoff:{account.id}", current_step_id="kickoff-call")
    session.add(journey)
    session.flush()
    step_run = models.StepRun(journey_id=journey.id, step_id="kickoff-call", kind="human")
    session.add(step_run)
    session.flush()

    task = create_task(session, settings=settings, account=account, owner=account.owner, kind="action", title="t",
                       recommendation="r", brief=_brief(), sla=_sla(), now=clock.now(), journey=journey,
                       step_run=step_run)

    event = session.scalars(select(models.AuditEvent).where(models.AuditEvent.action == "task_created",
                                                            models.AuditEvent.journey_id == journey.id)).one()
    assert (event.playbook_id, event.playbook_version, event.step_id) == ("onboard-kickoff", 3, "kickoff-call")
    assert task.step_run_id == step_run.id


def test_the_first_escalation_rung_sets_the_next_escalation_time(session, settings, clock):
    account = AccountFactory()
    sla = _sla(escalate=(Escalation(anchor="due", offset=parse_duration("1 business day"), notify="owner.manager"),))

    task = create_task(session, settings=settings, account=account, owner=account.owner, kind="action", title="t",
                       recommendation="r", brief=_brief(), sla=sla, now=clock.now())

    # Due Wednesday 09:00; one business day later skips Thanksgiving Thursday.
    assert task.next_escalation_at == datetime(2026, 11, 27, 9, 0, tzinfo=NEW_YORK)


def test_acknowledging_stops_the_ack_clock_once(session, settings, clock):
    account = AccountFactory()
    task = create_task(session, settings=settings, account=account, owner=account.owner, kind="action", title="t",
                       recommendation="r", brief=_brief(), sla=_sla(ack="4 business hours"), now=clock.now())
    later = clock.now() + timedelta(hours=1)

    acknowledge_task(session, task=task, actor=account.owner.email, now=later)
    acknowledge_task(session, task=task, actor=account.owner.email, now=later + timedelta(hours=1))

    assert (task.status, task.acknowledged_at) == (TaskStatus.ACKNOWLEDGED, later)
    assert _count(session, models.AuditEvent, action="task_acknowledged", account_id=account.id) == 1


@pytest.mark.parametrize(("outcome", "status", "action"), [
    ("done", TaskStatus.DONE, "task_completed"),
    ("approved", TaskStatus.DONE, "task_completed"),
    ("published", TaskStatus.DONE, "task_completed"),
    ("rejected", TaskStatus.REJECTED, "task_completed"),
    ("cancelled", TaskStatus.CANCELLED, "task_cancelled"),
])
def test_completing_a_task_records_the_outcome_in_the_crm_outbox_and_the_audit(session, settings, clock,
                                                                               outcome, status, action):
    account = AccountFactory()
    task = create_task(session, settings=settings, account=account, owner=account.owner, kind="approval",
                       title="t", recommendation="r", brief=_brief(), sla=_sla(), now=clock.now())
    later = clock.now() + timedelta(hours=2)

    complete_task(session, task=task, actor="ana@acme.example", outcome=outcome, now=later)

    assert (task.status, task.outcome, task.completed_at, task.completed_by) == (
        status, outcome, later, "ana@acme.example")
    message = session.scalars(select(models.OutboxMessage).where(
        models.OutboxMessage.idempotency_key == f"task:{task.id}:complete")).one()
    assert (message.kind, message.payload["outcome"]) == ("crm.complete_task", outcome)
    event = session.scalars(select(models.AuditEvent).where(models.AuditEvent.action == action,
                                                            models.AuditEvent.account_id == account.id)).one()
    assert event.actor == "ana@acme.example" and event.detail["outcome"] == outcome


def test_completing_twice_the_same_way_is_harmless_and_differently_is_refused(session, settings, clock):
    account = AccountFactory()
    task = create_task(session, settings=settings, account=account, owner=account.owner, kind="action", title="t",
                       recommendation="r", brief=_brief(), sla=_sla(), now=clock.now())
    complete_task(session, task=task, actor="a@acme.example", outcome="done", now=clock.now())

    complete_task(session, task=task, actor="a@acme.example", outcome="done", now=clock.now())
    with pytest.raises(TaskStateError, match="already done"):
        complete_task(session, task=task, actor="a@acme.example", outcome="rejected", now=clock.now())
    assert _count(session, models.OutboxMessage, task_id=task.id) == 2  # create + one complete


def test_a_completion_that_came_from_the_crm_is_not_echoed_back(session, settings, clock):
    account = AccountFactory()
    task = create_task(session, settings=settings, account=account, owner=account.owner, kind="action", title="t",
                       recommendation="r", brief=_brief(), sla=_sla(), now=clock.now())

    complete_task(session, task=task, actor="crm", outcome="done", now=clock.now(), sync_crm=False)

    assert _count(session, models.OutboxMessage, task_id=task.id) == 1


def test_open_task_count_counts_open_and_acknowledged_only(session, clock):
    account = AccountFactory()
    owner = account.owner
    for status in (TaskStatus.OPEN, TaskStatus.ACKNOWLEDGED, TaskStatus.DONE, TaskStatus.CANCELLED):
        session.add(models.Task(account_id=account.id, owner_id=owner.id, title=status, due_at=clock.now(),
                                status=status))
    session.flush()

    assert open_task_count(session, owner.id) == 2


def test_an_owner_without_a_timezone_works_on_the_default_calendars(session, settings):
    from orchestrator.work.tasks import calendar_for

    owner = OwnerFactory(timezone=None)
    assert calendar_for(owner, settings).timezone == settings.calendars["default"]["timezone"]
    owner.timezone = "Europe/Berlin"
    assert calendar_for(owner, settings).timezone == "Europe/Berlin"
