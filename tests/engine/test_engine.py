"""The engine's behaviour, one playbook feature at a time, on SQLite and PostgreSQL."""

from __future__ import annotations

import textwrap
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from orchestrator.intake import signals
from orchestrator.journeys import engine
from orchestrator.models import (
    AuditEvent,
    CustomerTouch,
    ExceptionItem,
    Journey,
    OutboxMessage,
    StageChange,
    StepRun,
    Task,
)
from tests.engine.conftest import HEADER, Feeder, install_playbook
from tests.factories import AccountFactory, DealFactory, OwnerFactory

AUTOMATIONS = """
    id: automations
    name: Automations
    stage: adopt
""" + HEADER + """
    enroll: {on: product.usage, when: "signal.usage_change_pct <= -30"}
    steps:
      - id: flag
        kind: automated
        oversight: out_of_loop
        risk: {error_cost: low, correction: fast}
        do: crm.update_field
        with: {field: health, value: "at risk ({{ signal.usage_change_pct }}%)"}
      - id: nudge
        kind: automated
        oversight: on_the_loop
        risk: {error_cost: low, correction: fast}
        do: customer.in_app_message
        with: {body: "Try saved views, {{ account.name }}."}
        override:
          window: 4h
          compensate: {do: crm.create_note, with: {body: "Nudge withdrawn."}}
      - id: discount
        kind: automated
        oversight: in_the_loop
        risk: {error_cost: high, correction: slow}
        do: customer.email
        with: {to: "buyer@customer.example", subject: "An offer", body: "10% off your renewal."}
        approval:
          assign: {to: account.owner}
          sla: {due: 4 business hours}
        on_reject: {goto: rejected}
      - id: approved
        kind: exit
        reason: offer sent
      - id: rejected
        kind: exit
        reason: offer declined by owner
"""


def _count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def _journey(session, account):
    return session.scalars(select(Journey).where(Journey.account_id == account.id)).one()


def test_out_of_loop_step_runs_and_writes_an_outbox_row_with_rendered_arguments(session, feed):
    install_playbook(session, AUTOMATIONS)
    account = AccountFactory(name="Globex")
    feed("product.usage", account, {"usage_change_pct": -42})
    row = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "crm.update_field")).one()
    assert row.payload["args"] == {"field": "health", "value": "at risk (-42%)"}
    assert row.account_id == account.id and row.status == "pending"


def test_enrollment_condition_false_records_the_decision_and_enrolls_nobody(session, feed):
    install_playbook(session, AUTOMATIONS)
    account = AccountFactory()
    feed("product.usage", account, {"usage_change_pct": -5})
    assert _count(session, Journey) == 0
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "not_enrolled")).one()
    assert "signal.usage_change_pct <= -30" in event.rule


def test_on_the_loop_customer_facing_step_is_held_and_an_override_cancels_it_unsent(
        session, feed, settings, clock):
    install_playbook(session, AUTOMATIONS)
    account = AccountFactory(name="Initech")
    feed("product.usage", account, {"usage_change_pct": -40})
    nudge = session.scalars(select(StepRun).where(StepRun.step_id == "nudge")).one()
    assert nudge.status == "done"
    assert nudge.override_until == clock.now() + timedelta(hours=4)
    held = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "customer.in_app_message")).one()
    assert held.status == "pending" and held.next_attempt_at == nudge.override_until
    notice = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "notify.email")).one()
    assert notice.payload["to"] == account.owner.email and "Override it before" in notice.payload["body"]
    assert _count(session, CustomerTouch) == 1

    clock.advance(timedelta(hours=1))
    engine.override_step(session=session, settings=settings, step_run_id=nudge.id,
                         actor=account.owner.email, now=clock.now(), reason="they churned")
    assert nudge.status == "overridden"
    assert held.status == "cancelled"
    # Nothing was sent, so nothing is compensated and the touch is given back to the cap.
    assert _count(session, OutboxMessage, OutboxMessage.kind == "crm.create_note") == 0
    assert _count(session, CustomerTouch) == 0
    assert _count(session, AuditEvent, AuditEvent.action == "overridden") == 1
    assert _count(session, AuditEvent, AuditEvent.action == "outbox_cancelled") == 1


INTERNAL_ON_THE_LOOP = """
    id: internal-otl
    name: Internal on the loop
    stage: adopt
""" + HEADER + """
    enroll: {on: product.usage}
    steps:
      - id: mark
        kind: automated
        oversight: on_the_loop
        risk: {error_cost: low, correction: fast}
        do: crm.update_field
        with: {field: health, value: at risk}
        override:
          window: 4h
          compensate: {do: crm.update_field, with: {field: health, value: healthy}}
"""


def test_on_the_loop_internal_step_runs_at_once_and_an_override_runs_its_compensation(
        session, feed, settings, clock):
    install_playbook(session, INTERNAL_ON_THE_LOOP)
    account = AccountFactory(name="Initech")
    feed("product.usage", account, {"usage_change_pct": -40})
    mark = session.scalars(select(StepRun).where(StepRun.step_id == "mark")).one()
    ran = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "crm.update_field")).one()
    assert ran.next_attempt_at == clock.now()  # due at once, not held
    notice = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "notify.email")).one()
    assert "You can override it" in notice.payload["body"]

    clock.advance(timedelta(hours=1))
    engine.override_step(session=session, settings=settings, step_run_id=mark.id,
                         actor=account.owner.email, now=clock.now(), reason="false alarm")
    assert mark.status == "overridden"
    compensation = session.scalars(select(OutboxMessage).where(
        OutboxMessage.kind == "crm.update_field", OutboxMessage.id != ran.id)).one()
    assert compensation.payload["args"] == {"field": "health", "value": "healthy"}
    assert ran.status == "pending"  # the original write is not cancelled: it is undone
    assert _count(session, AuditEvent, AuditEvent.action == "overridden") == 1


def test_override_after_the_window_is_refused(session, feed, settings, clock):
    install_playbook(session, AUTOMATIONS)
    account = AccountFactory()
    feed("product.usage", account, {"usage_change_pct": -40})
    nudge = session.scalars(select(StepRun).where(StepRun.step_id == "nudge")).one()
    clock.advance(timedelta(hours=5))
    with pytest.raises(engine.EngineError, match="no open override window"):
        engine.override_step(session=session, settings=settings, step_run_id=nudge.id,
                             actor="x@acme.example", now=clock.now())


def test_in_the_loop_step_waits_for_approval_then_runs(session, feed, settings, clock):
    install_playbook(session, AUTOMATIONS)
    account = AccountFactory(name="Umbrella")
    feed("product.usage", account, {"usage_change_pct": -40})
    assert _count(session, OutboxMessage, OutboxMessage.kind == "customer.email") == 0
    approval = session.scalars(select(Task).where(Task.kind == "approval")).one()
    assert approval.owner_id == account.owner_id
    assert "Approve" in approval.title and "10% off your renewal" in approval.recommendation
    assert _journey(session, account).status == "waiting"

    engine.decide_task(session=session, settings=settings, task_id=approval.id, outcome="approved",
                       actor=account.owner.email, now=clock.now())
    assert _count(session, OutboxMessage, OutboxMessage.kind == "customer.email") == 1
    journey = _journey(session, account)
    assert journey.status == "completed" and "offer sent" in journey.end_reason


def test_rejecting_an_approval_takes_the_declared_path_and_runs_nothing(session, feed, settings, clock):
    install_playbook(session, AUTOMATIONS)
    account = AccountFactory()
    feed("product.usage", account, {"usage_change_pct": -40})
    approval = session.scalars(select(Task).where(Task.kind == "approval")).one()
    engine.decide_task(session=session, settings=settings, task_id=approval.id, outcome="rejected",
                       actor=account.owner.email, now=clock.now())
    assert _count(session, OutboxMessage, OutboxMessage.kind == "customer.email") == 0
    journey = _journey(session, account)
    assert journey.status == "completed" and "declined by owner" in journey.end_reason
    assert session.scalars(select(StepRun).where(StepRun.step_id == "discount")).one().status == "rejected"


def test_a_closed_task_cannot_be_decided_twice(session, feed, settings, clock):
    install_playbook(session, AUTOMATIONS)
    account = AccountFactory()
    feed("product.usage", account, {"usage_change_pct": -40})
    approval = session.scalars(select(Task).where(Task.kind == "approval")).one()
    engine.decide_task(session=session, settings=settings, task_id=approval.id, outcome="approved",
                       actor="a@acme.example", now=clock.now())
    with pytest.raises(engine.EngineError, match="already"):
        engine.decide_task(session=session, settings=settings, task_id=approval.id,
                           outcome="rejected", actor="a@acme.example", now=clock.now())


def test_an_approval_takes_only_approved_or_rejected(session, feed, settings, clock):
    install_playbook(session, AUTOMATIONS)
    account = AccountFactory()
    feed("product.usage", account, {"usage_change_pct": -40})
    approval = session.scalars(select(Task).where(Task.kind == "approval")).one()
    with pytest.raises(engine.EngineError, match="approved or rejected"):
        engine.decide_task(session=session, settings=settings, task_id=approval.id, outcome="done",
                           actor="a@acme.example", now=clock.now())



def test_an_approval_completed_in_the_crm_needs_a_verdict_and_an_approved_status_decides_it(session, feed):
    install_playbook(session, AUTOMATIONS)
    account = AccountFactory()
    feed("product.usage", account, {"usage_change_pct": -40})
    approval = session.scalars(select(Task).where(Task.kind == "approval")).one()
    # A rep ticked "Completed": neither approve nor reject, so nothing is guessed and someone is told.
    feed("task.completed", account, {"task_id": approval.id, "outcome": "done", "actor": "rep@acme.example"})
    assert approval.status == "open"
    assert _count(session, OutboxMessage, OutboxMessage.kind == "customer.email") == 0
    item = session.scalars(select(ExceptionItem).where(ExceptionItem.category == "invalid_signal")).one()
    assert f"approval task {approval.id}" in item.message and "approved or rejected" in item.message and item.owner
    # A status mapped to a verdict (completed_statuses: Approved = "approved") decides it.
    feed("task.completed", account, {"task_id": approval.id, "outcome": "approved", "actor": "rep@acme.example"})
    assert (approval.status, approval.outcome, approval.completed_by) == ("done", "approved", "rep@acme.example")
    assert _count(session, OutboxMessage, OutboxMessage.kind == "customer.email") == 1

CAPPED = """
    id: capped
    name: Capped
    stage: adopt
""" + HEADER + """
    enroll: {on: product.usage}
    limits: {customer_touches: 1 per 7d}
    steps:
      - id: nudge
        kind: automated
        oversight: out_of_loop
        risk: {error_cost: low, correction: fast}
        do: customer.in_app_message
        with: {body: "Hello"}
"""


def test_customer_touch_cap_skips_the_step_and_records_why(session, feed, clock):
    install_playbook(session, CAPPED)
    account = AccountFactory()
    feed("product.usage", account, {"n": 1})
    clock.advance(timedelta(days=1))
    feed("product.usage", account, {"n": 2})
    assert _count(session, CustomerTouch) == 1
    skipped = session.scalars(select(StepRun).where(StepRun.status == "skipped")).one()
    assert "cap" in skipped.reason
    assert _count(session, AuditEvent, AuditEvent.action == "step_skipped") == 1
    clock.advance(timedelta(days=7))
    feed("product.usage", account, {"n": 3})
    assert _count(session, CustomerTouch) == 2


def test_a_recent_sensitive_signal_keeps_automation_away_from_the_customer(session, feed, clock):
    install_playbook(session, CAPPED.replace("limits: {customer_touches: 1 per 7d}",
                                             "sensitive_signals: [sentiment.negative]"))
    account = AccountFactory()
    feed("sentiment.negative", account, {"score": -0.8})
    feed("product.usage", account, {"n": 1})
    assert _count(session, CustomerTouch) == 0
    skipped = session.scalars(select(StepRun).where(StepRun.status == "skipped")).one()
    assert "protected human zone" in skipped.reason and "sentiment.negative" in skipped.reason


def test_quiet_hours_defer_a_customer_facing_step_until_they_end(session, settings, clock):
    from dataclasses import replace

    quiet = replace(settings, quiet_hours="20:00-08:00", quiet_hours_timezone="UTC")
    install_playbook(session, CAPPED)
    account = AccountFactory()
    clock.set(clock.now().replace(hour=22))
    feed = Feeder(session, quiet, clock)
    feed("product.usage", account, {"n": 1})
    assert _count(session, CustomerTouch) == 0
    journey = _journey(session, account)
    assert journey.status == "waiting" and journey.wait_until.hour == 8
    clock.advance(timedelta(hours=10))
    assert feed.sweep() == 1
    assert _count(session, CustomerTouch) == 1
    assert _journey(session, account).status == "completed"


FLOW = """
    id: flow
    name: Flow
    stage: onboard
""" + HEADER + """
    enroll: {on: deal.closed_won, once_per: account}
    exit_on: [account.churned]
    steps:
      - id: kickoff
        kind: human
        assign: {to: account.owner, fallback: {role: csm}}
        task:
          title: "Kickoff with {{ account.name }}"
          recommend: "Book a kickoff for the {{ deal.name }} rollout."
          brief: [trigger, account, contacts, deal]
        sla: {ack: 4 business hours, due: 2 business days}
      - id: to-adopt
        kind: set_stage
        stage: adopt
      - id: wait-usage
        kind: wait
        for: product.usage
        until: signal.active_users >= 5
        timeout: 14d
        on_timeout: {goto: route}
      - id: activated
        kind: exit
        reason: activated
      - id: route
        kind: branch
        rules:
          - {when: "account.segment == 'enterprise'", goto: rescue}
          - {when: "account.segment == 'mid'", goto: stalled}
      - id: rescue
        kind: hybrid
        draft: "Hi {{ account.name }}, shall we book 20 minutes to get your team going?"
        publish:
          do: customer.email
          with: {to: "team@customer.example", subject: "Getting started", body: "{{ draft }}"}
        assign: {to: account.owner}
        task:
          title: "Review the rescue email for {{ account.name }}"
          recommend: "Edit the draft if needed, then publish."
          brief: [trigger, account, journey]
        sla: {due: 1 business day}
      - id: stalled
        kind: exit
        reason: stalled
"""


def _start_flow(session, feed, **account_fields):
    install_playbook(session, FLOW)
    account = AccountFactory(stage="onboard", **account_fields)
    deal = DealFactory(account=account, name="Platform", amount=30000)
    feed("deal.closed_won", account, {"amount": 30000}, deal=deal)
    return account


def test_human_step_creates_one_task_for_the_account_owner_with_a_brief(session, feed):
    account = _start_flow(session, feed, name="Hooli")
    task = session.scalars(select(Task)).one()
    assert task.owner_id == account.owner_id and task.kind == "action"
    assert task.title == "Kickoff with Hooli"
    assert task.recommendation == "Book a kickoff for the Platform rollout."
    assert "deal.closed_won" in task.brief_text and "Book a kickoff" in task.brief_text
    assert task.ack_by is not None and task.due_at > task.ack_by
    assert _count(session, OutboxMessage, OutboxMessage.kind == "crm.create_task") == 1


def test_completing_the_task_advances_through_the_stage_change_to_the_wait(session, feed, settings, clock):
    account = _start_flow(session, feed)
    task = session.scalars(select(Task)).one()
    clock.advance(timedelta(hours=2))
    engine.decide_task(session=session, settings=settings, task_id=task.id, outcome="done",
                       actor=account.owner.email, now=clock.now())
    assert account.stage == "adopt"
    change = session.scalars(select(StageChange)).one()
    assert (change.from_stage, change.to_stage) == ("onboard", "adopt")
    journey = _journey(session, account)
    assert journey.status == "waiting" and journey.wait_signal == "product.usage"
    assert journey.wait_until == clock.now() + timedelta(days=14)


def test_a_signal_that_meets_the_wait_condition_moves_the_journey_on(session, feed, settings, clock):
    account = _start_flow(session, feed)
    task = session.scalars(select(Task)).one()
    engine.decide_task(session=session, settings=settings, task_id=task.id, outcome="done",
                       actor="x@acme.example", now=clock.now())
    clock.advance(timedelta(days=2))
    feed("product.usage", account, {"active_users": 2})
    assert _journey(session, account).status == "waiting"
    clock.advance(timedelta(days=1))
    feed("product.usage", account, {"active_users": 7})
    journey = _journey(session, account)
    assert journey.status == "completed" and "activated" in journey.end_reason


def _time_out_flow(session, feed, settings, clock, segment):
    account = _start_flow(session, feed, segment=segment)
    task = session.scalars(select(Task)).one()
    engine.decide_task(session=session, settings=settings, task_id=task.id, outcome="done",
                       actor="x@acme.example", now=clock.now())
    clock.advance(timedelta(days=13))
    assert feed.sweep() == 0
    clock.advance(timedelta(days=1, minutes=1))
    assert feed.sweep() == 1
    return account


def test_a_wait_timeout_takes_on_timeout_and_a_hybrid_draft_goes_to_review(session, feed, settings, clock):
    account = _time_out_flow(session, feed, settings, clock, "enterprise")
    wait = session.scalars(select(StepRun).where(StepRun.step_id == "wait-usage")).one()
    assert wait.status == "timed_out"
    review = session.scalars(select(Task).where(Task.kind == "review")).one()
    assert review.draft.startswith(f"Hi {account.name}, shall we book 20 minutes")
    assert _count(session, OutboxMessage, OutboxMessage.kind == "customer.email") == 0

    engine.decide_task(session=session, settings=settings, task_id=review.id, outcome="published",
                       actor=account.owner.email, now=clock.now())
    sent = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "customer.email")).one()
    assert sent.payload["args"]["body"] == review.draft  # what the person reviewed is what goes out
    assert _journey(session, account).status == "completed"


def test_a_branch_no_rule_matches_parks_the_journey_in_the_exception_queue(session, feed, settings, clock):
    account = _time_out_flow(session, feed, settings, clock, "smb")
    journey = _journey(session, account)
    assert journey.status == "stalled"
    item = session.scalars(select(ExceptionItem).where(ExceptionItem.category == "unmatched_branch")).one()
    assert item.journey_id == journey.id and item.owner == settings.exception_owner
    assert "route" in item.message


def test_an_exit_on_signal_ends_the_journey_and_cancels_its_open_task(session, feed):
    account = _start_flow(session, feed)
    feed("account.churned", account)
    journey = _journey(session, account)
    assert journey.status == "exited" and "account.churned" in journey.end_reason
    assert session.scalars(select(Task)).one().status == "cancelled"
    assert account.churned_at is not None


def test_once_per_account_enrolls_a_second_trigger_only_after_the_first_journey_ends(session, feed, clock):
    account = _start_flow(session, feed)
    deal = DealFactory(account=account)
    feed("deal.closed_won", account, {"amount": 5}, deal=deal)
    assert _count(session, Journey) == 1
    assert _count(session, AuditEvent, AuditEvent.action == "not_enrolled") == 1
    feed("account.churned", account)
    clock.advance(timedelta(days=1))
    feed("deal.closed_won", account, {"amount": 6}, deal=deal)
    assert _count(session, Journey) == 2


def test_a_task_nobody_can_take_goes_to_the_exception_queue_not_to_a_team(session, feed):
    install_playbook(session, FLOW)
    away = OwnerFactory(active=False)
    account = AccountFactory(owner=away)
    feed("deal.closed_won", account, deal=DealFactory(account=account))
    assert _count(session, Task) == 0
    item = session.scalars(select(ExceptionItem).where(ExceptionItem.category == "no_assignee")).one()
    assert "kickoff" in item.message and item.owner
    assert _journey(session, account).status == "stalled"


def test_a_crm_task_completed_signal_completes_the_task_and_advances(session, feed):
    account = _start_flow(session, feed)
    task = session.scalars(select(Task)).one()
    feed("task.completed", account, {"task_id": task.id, "actor": "rep@acme.example"})
    assert task.status == "done" and task.completed_by == "rep@acme.example"
    assert _journey(session, account).current_step_id == "wait-usage"


def test_a_template_field_missing_from_the_data_parks_the_journey_with_the_field_named(session, feed):
    install_playbook(session, FLOW)
    account = AccountFactory()
    feed("deal.closed_won", account)  # no deal: the task title needs deal.name
    item = session.scalars(select(ExceptionItem)).one()
    assert item.category == "missing_field" and "deal.name" in item.message
    assert _journey(session, account).status == "stalled"


def test_every_decision_names_the_playbook_version_and_the_rule(session, feed):
    _start_flow(session, feed)
    events = session.scalars(select(AuditEvent).where(AuditEvent.journey_id.is_not(None))).all()
    assert {e.action for e in events} >= {"enrolled", "step_waiting", "task_created"}
    for event in events:
        assert event.playbook_id == "flow" and event.playbook_version == 1
        assert event.rule and event.reason


def test_the_signal_that_completes_a_task_does_not_also_satisfy_the_wait_after_it(session, feed):
    install_playbook(session, FLOW.replace("for: product.usage", "for: task.completed")
                     .replace("until: signal.active_users >= 5", "until: signal.outcome == 'live'"))
    account = AccountFactory(stage="onboard")
    feed("deal.closed_won", account, deal=DealFactory(account=account))
    task = session.scalars(select(Task)).one()
    feed("task.completed", account, {"task_id": task.id, "outcome": "live"})
    journey = _journey(session, account)
    assert task.status == "done"
    assert journey.status == "waiting" and journey.current_step_id == "wait-usage"
    feed("task.completed", account, {"outcome": "live"})
    assert _journey(session, account).status == "completed"


def test_a_stalled_journey_still_leaves_on_its_exit_signal(session, feed):
    install_playbook(session, FLOW)
    account = AccountFactory(owner=OwnerFactory(active=False))
    feed("deal.closed_won", account, deal=DealFactory(account=account))
    assert _journey(session, account).status == "stalled"
    feed("account.churned", account)
    assert _journey(session, account).status == "exited"


def test_retrying_a_parked_journey_after_the_data_is_fixed_runs_the_step_again(
        session, feed, settings, clock):
    account = _time_out_flow(session, feed, settings, clock, "smb")
    journey = _journey(session, account)
    assert journey.status == "stalled"
    account.segment = "enterprise"  # RevOps fixes the CRM data
    engine.retry_journey(session=session, settings=settings, journey_id=journey.id,
                         actor="ops@acme.example", now=clock.now())
    assert journey.status == "waiting" and journey.current_step_id == "rescue"
    item = session.scalars(select(ExceptionItem).where(ExceptionItem.journey_id == journey.id)).one()
    assert item.status == "resolved" and item.resolved_by == "ops@acme.example"
    with pytest.raises(engine.EngineError, match="not parked"):
        engine.retry_journey(session=session, settings=settings, journey_id=journey.id,
                             actor="ops@acme.example", now=clock.now())


def test_ending_a_journey_by_hand_cancels_its_task_and_frees_the_account(session, feed, settings, clock):
    account = _start_flow(session, feed)
    journey = _journey(session, account)
    engine.end_journey(session=session, settings=settings, journey_id=journey.id,
                       actor="ops@acme.example", now=clock.now(), reason="duplicate deal")
    assert journey.status == "exited" and "duplicate deal" in journey.end_reason
    assert session.scalars(select(Task)).one().status == "cancelled"
    with pytest.raises(engine.EngineError, match="already ended"):
        engine.end_journey(session=session, settings=settings, journey_id=journey.id,
                           actor="ops@acme.example", now=clock.now(), reason="again")


def test_a_completion_reported_by_the_crm_is_not_written_back_to_it(session, feed):
    account = _start_flow(session, feed)
    task = session.scalars(select(Task)).one()
    feed("task.completed", account, {"task_id": task.id})
    assert _count(session, OutboxMessage, OutboxMessage.kind == "crm.complete_task") == 0


def test_an_approval_is_recorded_once_as_a_task_closure_and_once_as_a_journey_decision(
        session, feed, settings, clock):
    install_playbook(session, AUTOMATIONS)
    account = AccountFactory()
    feed("product.usage", account, {"usage_change_pct": -40})
    approval = session.scalars(select(Task).where(Task.kind == "approval")).one()
    engine.decide_task(session=session, settings=settings, task_id=approval.id, outcome="approved",
                       actor="ann@acme.example", now=clock.now())
    actions = [e.action for e in session.scalars(select(AuditEvent).where(AuditEvent.actor == "ann@acme.example"))]
    assert sorted(actions) == ["approved", "task_completed"]


def test_a_trigger_signal_missing_a_field_the_condition_reads_goes_to_the_exception_queue(session, feed):
    install_playbook(session, AUTOMATIONS)
    account = AccountFactory()
    feed("product.usage", account, {"active_users": 3})  # no usage_change_pct
    assert _count(session, Journey) == 0
    item = session.scalars(select(ExceptionItem)).one()
    assert item.category == "missing_field" and "signal.usage_change_pct" in item.message


def test_an_awaited_signal_missing_the_field_its_wait_reads_is_flagged_and_the_wait_goes_on(
        session, feed, settings, clock):
    account = _start_flow(session, feed)
    task = session.scalars(select(Task)).one()
    engine.decide_task(session=session, settings=settings, task_id=task.id, outcome="done",
                       actor="x@acme.example", now=clock.now())
    feed("product.usage", account, {"seats": 4})
    assert _journey(session, account).status == "waiting"
    item = session.scalars(select(ExceptionItem)).one()
    assert "signal.active_users" in item.message and item.journey_id == _journey(session, account).id


def test_a_journey_whose_timeout_fails_is_parked_once_not_reported_every_sweep(session, feed, settings, clock):
    account = _start_flow(session, feed)
    journey = _journey(session, account)
    journey.status, journey.current_step_id = "waiting", "no-such-step"  # damaged by hand
    journey.wait_until = clock.now() - timedelta(minutes=1)
    session.flush()
    feed.sweep()
    feed.sweep()
    assert journey.status == "stalled"
    items = session.scalars(select(ExceptionItem).where(ExceptionItem.journey_id == journey.id)).all()
    assert [item.category for item in items] == ["engine_error"]


def test_parking_a_journey_is_one_audit_event_naming_the_playbook_version_and_step(session, feed):
    install_playbook(session, FLOW)
    account = AccountFactory(owner=OwnerFactory(active=False))
    feed("deal.closed_won", account, deal=DealFactory(account=account))
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "exception_raised")).one()
    assert (event.playbook_id, event.playbook_version, event.step_id) == ("flow", 1, "kickoff")
    assert event.rule == "exception:no_assignee"


def test_a_playbook_naming_a_calendar_nobody_configured_parks_the_journey_for_a_person(session, feed):
    install_playbook(session, FLOW.replace("sla: {ack: 4 business hours, due: 2 business days}",
                                           "sla: {ack: 4 business hours, due: 2 business days, calendar: emea}"))
    account = AccountFactory()
    feed("deal.closed_won", account, deal=DealFactory(account=account))
    item = session.scalars(select(ExceptionItem)).one()
    assert item.category == "configuration" and 'no calendar named "emea"' in item.message


def test_a_wait_names_the_signal_it_waits_for_in_the_audit_trail(session, feed, settings, clock):
    account = _start_flow(session, feed)
    engine.decide_task(session=session, settings=settings, task_id=session.scalars(select(Task)).one().id,
                       outcome="done", actor="x@acme.example", now=clock.now())
    event = session.scalars(select(AuditEvent).where(AuditEvent.step_id == "wait-usage",
                                                     AuditEvent.action == "step_waiting")).one()
    assert event.reason.startswith("waiting for product.usage until ")
    assert event.account_id == account.id


def test_a_wait_condition_that_cannot_read_a_signal_parks_only_that_journey(session, feed, settings, clock):
    account = _start_flow(session, feed)
    install_playbook(session, AUTOMATIONS)
    engine.decide_task(session=session, settings=settings, task_id=session.scalars(select(Task)).one().id,
                       outcome="done", actor="x@acme.example", now=clock.now())
    # A webhook that sends numbers as text: the wait's `signal.active_users >= 5` cannot compare.
    report = feed("product.usage", account, {"active_users": "7", "usage_change_pct": -45})
    assert report.counts["errors"] == 0
    flow = session.scalars(select(Journey).where(Journey.playbook_id == "flow")).one()
    assert flow.status == "stalled"
    item = session.scalars(select(ExceptionItem).where(ExceptionItem.journey_id == flow.id)).one()
    assert item.category == "expression_error" and "cannot compare" in item.message
    # The same signal still enrolled the account in the other playbook.
    assert session.scalars(select(Journey).where(Journey.playbook_id == "automations")).one()


def test_completing_an_approval_in_the_crm_without_a_verdict_approves_nothing(session, feed):
    install_playbook(session, AUTOMATIONS)
    account = AccountFactory()
    feed("product.usage", account, {"usage_change_pct": -40})
    approval = session.scalars(select(Task).where(Task.kind == "approval")).one()
    feed("task.completed", account, {"task_id": approval.id})
    assert approval.status == "open"
    assert _count(session, OutboxMessage, OutboxMessage.kind == "customer.email") == 0
    item = session.scalars(select(ExceptionItem).where(ExceptionItem.category == "invalid_signal")).one()
    assert f"tasks decide {approval.id}" in item.message
    feed("task.completed", account, {"task_id": approval.id, "outcome": "approved"})
    assert approval.status == "done" and approval.outcome == "approved"
    assert _count(session, OutboxMessage, OutboxMessage.kind == "customer.email") == 1


def test_a_task_completed_signal_cannot_close_another_accounts_task(session, feed):
    account = _start_flow(session, feed)
    task = session.scalars(select(Task)).one()
    stranger = AccountFactory()
    feed("task.completed", stranger, {"task_id": task.id})
    assert task.status == "open" and _journey(session, account).current_step_id == "kickoff"


def test_a_task_completed_signal_with_a_garbled_task_id_is_flagged_not_crashed(session, feed):
    account = _start_flow(session, feed)
    report = feed("task.completed", account, {"task_id": "T-17"})
    assert report.counts["errors"] == 0
    item = session.scalars(select(ExceptionItem)).one()
    assert item.category == "invalid_signal" and "'T-17'" in item.message


def test_an_approval_given_after_a_complaint_arrived_sends_nothing_and_says_why(session, feed, settings, clock):
    sensitive = AUTOMATIONS.replace("    steps:\n", "    sensitive_signals: [sentiment.negative]\n    steps:\n", 1)
    install_playbook(session, sensitive)
    account = AccountFactory()
    feed("product.usage", account, {"usage_change_pct": -40})
    approval = session.scalars(select(Task).where(Task.kind == "approval")).one()
    clock.advance(timedelta(hours=2))
    feed("sentiment.negative", account, {"score": -0.9})
    clock.advance(timedelta(hours=1))
    engine.decide_task(session=session, settings=settings, task_id=approval.id, outcome="approved",
                       actor="ann@acme.example", now=clock.now())
    assert _count(session, OutboxMessage, OutboxMessage.kind == "customer.email") == 0
    discount = session.scalars(select(StepRun).where(StepRun.step_id == "discount")).one()
    assert discount.status == "skipped" and "protected human zone" in discount.reason
    assert _journey(session, account).status == "completed"


def test_an_approval_given_in_quiet_hours_holds_delivery_until_they_end(session, settings, clock):
    from dataclasses import replace

    quiet = replace(settings, quiet_hours="20:00-08:00", quiet_hours_timezone="UTC")
    feed = Feeder(session, quiet, clock)
    install_playbook(session, AUTOMATIONS)
    account = AccountFactory()
    feed("product.usage", account, {"usage_change_pct": -40})
    approval = session.scalars(select(Task).where(Task.kind == "approval")).one()
    clock.set(clock.now().replace(hour=23))
    engine.decide_task(session=session, settings=quiet, task_id=approval.id, outcome="approved",
                       actor="ann@acme.example", now=clock.now())
    email = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "customer.email")).one()
    assert email.next_attempt_at == (clock.now() + timedelta(days=1)).replace(hour=8)
    assert session.scalars(select(StepRun).where(StepRun.step_id == "discount")).one().status == "done"


STAGE_FROM_DATA = """
    id: stage-from-data
    name: Stage from data
    stage: adopt
""" + HEADER + """
    enroll: {on: product.usage}
    steps:
      - id: move
        kind: automated
        oversight: in_the_loop
        risk: {error_cost: high, correction: slow}
        do: journey.set_stage
        with: {stage: "{{ signal.next_stage }}"}
        approval:
          assign: {to: account.owner}
          sla: {due: 1 business day}
"""


def test_an_approved_action_that_renders_a_bad_stage_parks_the_journey_and_still_closes_the_task(
        session, feed, settings, clock):
    install_playbook(session, STAGE_FROM_DATA)
    account = AccountFactory(stage="adopt")
    feed("product.usage", account, {"next_stage": "renewal"})
    approval = session.scalars(select(Task)).one()
    engine.decide_task(session=session, settings=settings, task_id=approval.id, outcome="approved",
                       actor="ann@acme.example", now=clock.now())
    assert approval.status == "done" and account.stage == "adopt"
    assert _journey(session, account).status == "stalled"
    item = session.scalars(select(ExceptionItem)).one()
    assert item.category == "configuration" and '"renewal" is not a journey stage' in item.message


LOOPING = """
    id: looping
    name: Looping
    stage: adopt
""" + HEADER + """
    enroll: {on: product.usage}
    steps:
      - id: watch
        kind: wait
        until: "account.health < 50"
        timeout: 7d
        on_timeout: {exit: true}
      - id: note
        kind: automated
        oversight: out_of_loop
        risk: {error_cost: low, correction: fast}
        do: crm.create_note
        with: {body: "Health is low"}
      - id: again
        kind: goto
        to: watch
"""


def test_lint_refuses_a_loop_through_a_wait_that_may_not_wait():
    from orchestrator.playbook import PlaybookInvalid, load_playbook_text

    with pytest.raises(PlaybookInvalid, match="loop-without-wait"):
        load_playbook_text(textwrap.dedent(LOOPING))


def test_a_journey_caught_looping_keeps_none_of_its_writes_and_is_parked(session, feed):
    install_playbook(session, LOOPING, lint=False)  # e.g. applied before lint knew this case
    account = AccountFactory(health=20)
    feed("product.usage", account, {"n": 1})
    assert _count(session, OutboxMessage) == 0
    journey = _journey(session, account)
    assert journey.status == "stalled"
    item = session.scalars(select(ExceptionItem)).one()
    assert item.category == "loop_guard" and "nothing they did was kept" in item.message


def test_retrying_a_journey_whose_timeout_failed_takes_the_timeout_path(session, feed, settings, clock):
    account = _start_flow(session, feed, segment="enterprise")
    engine.decide_task(session=session, settings=settings, task_id=session.scalars(select(Task)).one().id,
                       outcome="done", actor="x@acme.example", now=clock.now())
    journey = _journey(session, account)
    assert journey.current_step_id == "wait-usage"
    journey.status = "stalled"  # as the sweep leaves it when the timeout itself failed
    clock.advance(timedelta(days=15))
    engine.retry_journey(session=session, settings=settings, journey_id=journey.id, actor="ops@acme.example",
                         now=clock.now())
    assert session.scalars(select(StepRun).where(StepRun.step_id == "wait-usage")).one().status == "timed_out"
    assert journey.current_step_id == "rescue" and journey.status == "waiting"


def test_retrying_a_wait_before_it_ran_out_waits_again_with_one_waiting_run(session, feed, settings, clock):
    account = _start_flow(session, feed)
    engine.decide_task(session=session, settings=settings, task_id=session.scalars(select(Task)).one().id,
                       outcome="done", actor="x@acme.example", now=clock.now())
    journey = _journey(session, account)
    journey.status = "stalled"
    clock.advance(timedelta(days=2))
    engine.retry_journey(session=session, settings=settings, journey_id=journey.id, actor="ops@acme.example",
                         now=clock.now())
    runs = session.scalars(select(StepRun).where(StepRun.step_id == "wait-usage").order_by(StepRun.id)).all()
    assert [run.status for run in runs] == ["skipped", "waiting"]
    assert journey.wait_until == clock.now() + timedelta(days=14)


def test_a_journey_caught_looping_inside_a_batch_is_parked_and_the_batch_goes_on(session, settings, clock):
    install_playbook(session, LOOPING, lint=False)
    before, looping, after = AccountFactory(health=80), AccountFactory(health=20), AccountFactory(health=80)
    raws = [{"type": "product.usage", "account": {"domain": account.domain}, "payload": {"n": i},
             "occurred_at": clock.now().isoformat(), "dedupe_key": f"loop-{i}"}
            for i, account in enumerate([before, looping, after])]
    signals.ingest_many(session=session, raws=raws, source="test", now=clock.now(), settings=settings)

    report = engine.process_pending(session=session, settings=settings, now=clock.now())

    assert report.signals == 3 and report.counts["errors"] == 0
    assert _journey(session, looping).status == "stalled"
    assert _journey(session, before).status == _journey(session, after).status == "waiting"
    assert _count(session, OutboxMessage) == 0
    item = session.scalars(select(ExceptionItem)).one()
    assert item.category == "loop_guard" and item.account_id == looping.id


def test_a_journey_caught_looping_on_its_timeout_is_parked_and_the_sweep_moves_the_others(session, feed, clock):
    looping_on_timeout = LOOPING.replace("on_timeout: {exit: true}", "on_timeout: {goto: note}")
    install_playbook(session, looping_on_timeout, lint=False)
    looping, steady = AccountFactory(health=80), AccountFactory(health=80)
    for account in (looping, steady):
        feed("product.usage", account, {"n": 1})
    assert _journey(session, looping).status == _journey(session, steady).status == "waiting"
    looping.health = 20  # the wait it goes back to is met at once: note, again, watch, note, ...
    clock.advance(timedelta(days=8))

    assert feed.sweep() == 2  # both left their wait: one went on, one was parked

    assert _journey(session, looping).status == "stalled"
    assert _journey(session, steady).status == "waiting"
    assert _count(session, OutboxMessage) == 1  # the steady account's note; the loop kept none
    assert session.scalars(select(ExceptionItem)).one().account_id == looping.id


ORDERED = """
    id: ordered-steps
    name: Ordered steps
    stage: adopt
""" + HEADER + """
    enroll: {on: product.usage}
    steps:
      - {id: first-stage, kind: set_stage, stage: adopt}
      - {id: second-stage, kind: set_stage, stage: adopt}
      - id: flag-it
        kind: automated
        oversight: out_of_loop
        risk: {error_cost: low, correction: fast}
        do: crm.update_field
        with: {field: health, value: "watch"}
      - {id: wait-more, kind: wait, for: product.seat_limit_reached, timeout: 14d, on_timeout: {exit: true}}
"""


def test_step_runs_are_numbered_in_the_order_they_ran_whichever_of_them_needed_an_id_first(session, feed):
    # The second set_stage run waits for the next flush; the automated run after it is written at once for
    # its outbox row's key. The waiting run must still be written first: a journey's steps are its runs by id.
    install_playbook(session, ORDERED)
    account = AccountFactory()

    feed("product.usage", account, {"active_users": 3})

    journey = session.scalars(select(Journey).where(Journey.playbook_id == "ordered-steps")).one()
    runs = session.scalars(select(StepRun).where(StepRun.journey_id == journey.id).order_by(StepRun.id)).all()
    assert [run.step_id for run in runs] == ["first-stage", "second-stage", "flag-it", "wait-more"]


def test_ending_a_journey_judges_its_step_runs_as_the_batch_has_them_without_a_flush(session, settings, clock):
    from sqlalchemy import event

    from orchestrator.journeys.steps import Run, end, waiting_run
    from orchestrator.models import JourneyStatus, PlaybookVersion, assign_id

    account = AccountFactory()
    version = PlaybookVersion(playbook_id="ending", version=1, name="ending", stage="adopt", checksum="e",
                              source_text="", source_path="ending.yaml")
    session.add(version)
    session.flush()
    journey = Journey(account_id=account.id, playbook_id="ending", playbook_version_id=version.id,
                      enrollment_key="ending:1", enrolled_at=clock.now(), context={}, status="waiting",
                      current_step_id="wait")
    session.add(journey)
    written = StepRun(journey=journey, step_id="wait", kind="wait", status="waiting", reason="", outcome={},
                      started_at=clock.now())
    moved_on = StepRun(journey=journey, step_id="call", kind="human", status="waiting", reason="", outcome={},
                       started_at=clock.now())
    session.add_all([written, moved_on])
    session.flush()
    # The batch's unwritten changes: one run done in memory, one new waiting run named by relationship only.
    moved_on.status = "done"
    fresh = StepRun(journey=journey, step_id="wait", kind="wait", status="waiting", reason="", outcome={},
                    started_at=clock.now())
    session.add(fresh)
    assign_id(session, fresh)
    run = Run(session, settings, clock.now())
    flushes: list[object] = []
    event.listen(session, "before_flush", lambda *args: flushes.append(args))

    assert waiting_run(run, journey) is fresh  # the newest waiting run at the journey's step
    end(run, journey, version, JourneyStatus.EXITED, "test")

    assert flushes == [] and fresh in session.new
    assert (written.status, fresh.status, moved_on.status) == ("skipped", "skipped", "done")


PARKED_WAITERS = """
    id: parked-waiters
    name: Parked waiters
    stage: adopt
""" + HEADER + """
    enroll: {on: support.ticket_opened, once_per: signal}
    steps:
      - {id: hold, kind: wait, for: product.seat_limit_reached, timeout: 30d, on_timeout: {exit: true}}
"""

EXITS_ON_CHURN = """
    id: exits-on-churn
    name: Exits on churn
    stage: adopt
""" + HEADER + """
    enroll: {on: deal.closed_won}
    exit_on: [account.churned]
    steps:
      - {id: hold, kind: wait, for: product.seat_limit_reached, timeout: 30d, on_timeout: {exit: true}}
"""


@contextmanager
def _journeys_read(attribute):
    """`attribute` of every journey the block reads from the database (loaded or refreshed)."""
    from sqlalchemy import event

    read: list = []

    def on_load(journey, _context, _keys=None):
        read.append(getattr(journey, attribute))

    event.listen(Journey, "load", on_load)
    event.listen(Journey, "refresh", on_load)
    try:
        yield read
    finally:
        event.remove(Journey, "load", on_load)
        event.remove(Journey, "refresh", on_load)


def test_a_pass_reads_only_the_open_journeys_its_signals_can_move(session, feed):
    install_playbook(session, PARKED_WAITERS)
    install_playbook(session, EXITS_ON_CHURN)
    account = AccountFactory()
    for n in range(5):
        feed("support.ticket_opened", account, {"ticket_id": n})
    feed("deal.closed_won", account)
    journeys = session.scalars(select(Journey).where(Journey.account_id == account.id)).all()
    assert sorted(journey.playbook_id for journey in journeys) == ["exits-on-churn"] + ["parked-waiters"] * 5
    with _journeys_read("playbook_id") as loaded:
        feed("account.churned", account)

    # The churn ends the journey that exits on it; the five waiting for another signal are not even read.
    assert loaded == ["exits-on-churn"]
    session.expire_all()
    statuses = {journey.playbook_id: journey.status for journey in
                session.scalars(select(Journey).where(Journey.account_id == account.id))}
    assert statuses == {"exits-on-churn": "exited", "parked-waiters": "waiting"}


def test_an_enrollment_once_per_signal_does_not_read_the_playbooks_open_journeys(session, feed):
    install_playbook(session, PARKED_WAITERS)  # enrolls on support.ticket_opened, once_per: signal
    account, other = AccountFactory(), AccountFactory()
    for n in range(4):
        feed("support.ticket_opened", account, {"ticket_id": n})
    feed("deal.closed_won", other)
    with _journeys_read("id") as loaded:
        report = feed("support.ticket_opened", account, {"ticket_id": 9})

    assert report.counts["enrolled"] == 1 and loaded == []  # a new signal's key cannot collide with theirs
    assert session.scalar(select(func.count()).select_from(Journey).where(
        Journey.account_id == account.id, Journey.ended_at.is_(None))) == 5


def test_an_accounts_journeys_are_read_for_its_own_signals_in_the_batch_not_the_others(session, feed, settings, clock):
    install_playbook(session, EXITS_ON_CHURN)
    churning, staying = AccountFactory(), AccountFactory()
    feed("deal.closed_won", churning)
    feed("deal.closed_won", staying)
    for account, kind in ((churning, "account.churned"), (staying, "product.usage")):
        result = signals.ingest(session=session, raw={"type": kind, "account": {"id": account.id},
                                                      "occurred_at": clock.now().isoformat(), "payload": {}},
                                source="test", now=clock.now(), settings=settings)
        assert result.status == "accepted"
    with _journeys_read("account_id") as loaded:
        report = feed.process()  # one pass, both signals

    assert report.signals == 2 and loaded == [churning.id]
    statuses = dict(session.execute(select(Journey.account_id, Journey.status)).tuples().all())
    assert statuses == {churning.id: "exited", staying.id: "waiting"}
