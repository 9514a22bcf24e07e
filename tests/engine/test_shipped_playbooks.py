"""Every shipped playbook driven through its journey by real signals, on SQLite and PostgreSQL.

Between them these cover every oversight level, a wait that times out, a branch that falls
back (`otherwise`) and one that matches nothing (exception queue), a customer-touch cap, a
protected human zone, and a task with nobody to take it.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from orchestrator.journeys import engine
from orchestrator.models import (
    CustomerTouch,
    ExceptionItem,
    Journey,
    OutboxMessage,
    StepRun,
    Task,
)
from orchestrator.playbook.store import apply_playbooks
from orchestrator.resources import shipped_playbooks_dir
from tests.factories import AccountFactory, ContactFactory, DealFactory, OwnerFactory


@pytest.fixture
def team(session, clock):
    """A sales and CS team: reps with a manager, a cs-lead, and the shipped playbooks."""
    report = apply_playbooks(session=session, paths=[shipped_playbooks_dir()], now=clock.now(),
                             actor="test")
    assert report.applied, report.findings
    manager = OwnerFactory(name="Maya Manager", email="maya@acme.example", role="manager")
    return {
        "manager": manager,
        "ae": OwnerFactory(name="Ari AE", email="ari@acme.example", role="ae", manager=manager),
        "sdr": OwnerFactory(name="Sam SDR", email="sam@acme.example", role="sdr", manager=manager),
        "sdr2": OwnerFactory(name="Sue SDR", email="sue@acme.example", role="sdr", manager=manager),
        "csm": OwnerFactory(name="Cleo CSM", email="cleo@acme.example", role="csm", manager=manager),
        "lead": OwnerFactory(name="Lee Lead", email="lee@acme.example", role="cs-lead"),
    }


def _tasks(session, account, **where):
    query = select(Task).where(Task.account_id == account.id).order_by(Task.id)
    for name, value in where.items():
        query = query.where(getattr(Task, name) == value)
    return session.scalars(query).all()


def _journey(session, account, playbook_id):
    return session.scalars(select(Journey).where(Journey.account_id == account.id,
                                                 Journey.playbook_id == playbook_id)
                           .order_by(Journey.id.desc())).first()


def _outbox(session, account, kind):
    return session.scalars(select(OutboxMessage).where(OutboxMessage.account_id == account.id,
                                                       OutboxMessage.kind == kind)
                           .order_by(OutboxMessage.id)).all()


def _decide(session, settings, clock, task, outcome, actor="rep@acme.example"):
    engine.decide_task(session=session, settings=settings, task_id=task.id, outcome=outcome,
                       actor=actor, now=clock.now())
    session.flush()


# --- acquire: speed to lead ------------------------------------------------------------------

def test_speed_to_lead_gets_a_big_lead_a_first_touch_within_the_hour_then_an_ae(
        session, feed, settings, clock, team):
    account = AccountFactory(name="Big Co", owner=team["sdr"], stage="acquire",
                             attributes={"employees": 800})
    feed("lead.created", account, {"email": "cto@bigco.example", "source_detail": "pricing page"})

    assert _outbox(session, account, "crm.update_field")[0].payload["args"] == \
        {"field": "lead_status", "value": "Working"}
    first = _tasks(session, account)[0]
    assert first.owner.role == "sdr"
    assert first.due_at == clock.now() + timedelta(hours=1)  # Monday 09:00 New York: business hours
    assert "lead.created" in first.brief_text and "Call within the hour" in first.brief_text

    _decide(session, settings, clock, first, "done")
    handoff = _tasks(session, account)[1]
    assert handoff.owner_id == team["ae"].id and handoff.title == "Qualified lead: Big Co"
    _decide(session, settings, clock, handoff, "done")
    journey = _journey(session, account, "speed-to-lead")
    assert journey.status == "completed" and "handed to an AE" in journey.end_reason


def test_speed_to_lead_asks_the_owner_before_a_nurture_email_to_a_small_lead(
        session, feed, settings, clock, team):
    account = AccountFactory(name="Tiny Co", owner=team["sdr"], attributes={"employees": 12})
    feed("lead.created", account, {"email": "founder@tiny.example"})
    _decide(session, settings, clock, _tasks(session, account)[0], "done")

    approval = _tasks(session, account, kind="approval")[0]
    assert approval.owner_id == team["sdr"].id
    assert "founder@tiny.example" in approval.recommendation
    assert _outbox(session, account, "customer.email") == []
    _decide(session, settings, clock, approval, "approved", actor=team["sdr"].email)
    email = _outbox(session, account, "customer.email")[0]
    assert email.payload["args"]["to"] == "founder@tiny.example"
    assert session.scalar(select(func.count()).select_from(CustomerTouch)
                          .where(CustomerTouch.account_id == account.id)) == 1


def test_speed_to_lead_sends_a_lead_of_unknown_size_to_the_exception_queue(
        session, feed, settings, clock, team):
    account = AccountFactory(name="Mystery Co", owner=team["sdr"], attributes={})
    feed("lead.created", account, {"email": "who@mystery.example"})
    _decide(session, settings, clock, _tasks(session, account)[0], "done")
    assert _journey(session, account, "speed-to-lead").status == "stalled"
    item = session.scalars(select(ExceptionItem).where(ExceptionItem.account_id == account.id)).one()
    assert item.category == "unmatched_branch" and "qualify" in item.message
    assert item.owner == settings.exception_owner


def test_a_first_touch_nobody_can_take_lands_with_the_exception_owner(session, feed, settings, team):
    for person in team.values():
        person.active = False
    account = AccountFactory(owner=team["sdr"], attributes={"employees": 50})
    feed("lead.created", account, {"email": "x@y.example"})
    assert _tasks(session, account) == []
    item = session.scalars(select(ExceptionItem).where(ExceptionItem.account_id == account.id)).one()
    assert item.category == "no_assignee" and "first-touch" in item.message
    assert item.owner == settings.exception_owner  # no_assignee has no owner of its own here


# --- onboard: kickoff --------------------------------------------------------------------------

def _closed_won(session, feed, team, **account_fields):
    account = AccountFactory(name="Acme Retail", segment="mid", stage="onboard", owner=team["ae"],
                             arr=Decimal("120000"), **account_fields)
    ContactFactory(account=account, name="Pat Champion", role="champion", is_primary=True,
                   email="pat@acmeretail.example")
    deal = DealFactory(account=account, name="Acme Retail platform", amount=Decimal("120000"),
                       attributes={"champion_email": "pat@acmeretail.example"})
    feed("deal.closed_won", account, {"amount": 120000}, deal=deal)
    return account


def test_onboarding_kickoff_brief_carries_trigger_recommendation_and_evidence(session, feed, team):
    account = _closed_won(session, feed, team)
    assert _outbox(session, account, "crm.create_note")[0].payload["args"]["body"] == \
        "Onboarding started for Acme Retail after the deal closed."
    kickoff = _tasks(session, account)[0]
    assert kickoff.owner_id == team["ae"].id
    assert kickoff.brief["trigger"]["type"] == "deal.closed_won"
    assert kickoff.brief["recommendation"].startswith("Book a 45-minute kickoff")
    text = kickoff.brief_text
    for evidence in ("deal.closed_won", "Book a 45-minute kickoff", "Acme Retail",
                     "120,000", "Pat Champion", "pat@acmeretail.example", "Acme Retail platform"):
        assert evidence in text, evidence
    assert len(text) <= 32_000


def test_onboarding_runs_on_the_loop_email_moves_to_adopt_then_times_out_into_a_review(
        session, feed, settings, clock, team):
    account = _closed_won(session, feed, team, csm=team["csm"])
    assert account.stage == "onboard"
    _decide(session, settings, clock, _tasks(session, account)[0], "done")

    welcome = session.scalars(select(StepRun).where(StepRun.step_id == "welcome-email")).one()
    assert welcome.oversight == "on_the_loop" and welcome.override_until is not None
    assert _outbox(session, account, "customer.email")[0].payload["args"]["to"] == "pat@acmeretail.example"
    assert account.stage == "adopt"
    journey = _journey(session, account, "onboard-kickoff")
    assert journey.status == "waiting" and journey.current_step_id == "wait-activation"

    clock.advance(timedelta(days=15))
    feed.sweep()
    review = _tasks(session, account, kind="review")[0]
    assert review.owner_id == team["csm"].id
    assert "only a few of your users have logged in" in review.draft
    _decide(session, settings, clock, review, "published", actor="cleo@acme.example")
    assert _outbox(session, account, "customer.email")[-1].payload["args"]["body"] == review.draft
    assert _journey(session, account, "onboard-kickoff").status == "completed"


def test_onboarding_ends_when_users_activate_before_the_timeout(session, feed, settings, clock, team):
    account = _closed_won(session, feed, team)
    _decide(session, settings, clock, _tasks(session, account)[0], "done")
    clock.advance(timedelta(days=3))
    feed("product.usage", account, {"active_users": 9, "usage_change_pct": 40})
    journey = _journey(session, account, "onboard-kickoff")
    assert journey.status == "completed" and "activated" in journey.end_reason


def test_a_small_deal_does_not_enroll_in_onboarding(session, feed, team):
    account = AccountFactory(segment="smb", owner=team["ae"])
    deal = DealFactory(account=account, amount=Decimal("4000"))
    feed("deal.closed_won", account, {"amount": 4000}, deal=deal)
    assert _journey(session, account, "onboard-kickoff") is None


# --- adopt: usage-drop rescue ----------------------------------------------------------------

def test_usage_drop_monitors_alerts_then_nudges_and_recovers_after_a_quiet_fortnight(
        session, feed, clock, team):
    account = AccountFactory(name="Drift Inc", owner=team["csm"], stage="adopt")
    feed("product.usage", account, {"usage_change_pct": -35, "active_users": 14})
    assert _outbox(session, account, "crm.update_field")[0].payload["args"]["value"] == "at_risk"
    alert = _outbox(session, account, "notify.email")[0]
    assert alert.payload["args"]["to"] == team["csm"].email and "14" in alert.payload["args"]["body"]
    nudge = session.scalars(select(StepRun).where(StepRun.step_id == "in-app-nudge")).one()
    assert nudge.status == "done" and nudge.oversight == "on_the_loop"  # branch fell to otherwise
    clock.advance(timedelta(days=15))
    feed.sweep()
    journey = _journey(session, account, "usage-drop-rescue")
    assert journey.status == "completed" and "recovered" in journey.end_reason


def test_a_steep_drop_goes_to_the_csm_and_zero_users_to_the_owner(session, feed, team):
    steep = AccountFactory(owner=team["ae"], csm=team["csm"])
    feed("product.usage", steep, {"usage_change_pct": -70, "active_users": 3})
    assert _tasks(session, steep)[0].owner_id == team["csm"].id
    dead = AccountFactory(owner=team["ae"])
    feed("product.usage", dead, {"usage_change_pct": -100, "active_users": 0})
    task = _tasks(session, dead)[0]
    assert task.owner_id == team["ae"].id and "stopped using the product" in task.title


def test_an_open_support_ticket_makes_the_nudge_a_protected_human_zone(session, feed, clock, team):
    account = AccountFactory(owner=team["csm"])
    feed("support.ticket_opened", account, {"severity": "high", "subject": "Exports broken"})
    clock.advance(timedelta(hours=1))
    feed("product.usage", account, {"usage_change_pct": -35, "active_users": 10})
    nudge = session.scalars(select(StepRun).where(StepRun.step_id == "in-app-nudge")).one()
    assert nudge.status == "skipped" and "protected human zone" in nudge.reason
    assert _outbox(session, account, "customer.in_app_message") == []


def test_the_account_wide_touch_cap_skips_a_second_nudge_and_says_why(session, settings, clock, team):
    from dataclasses import replace

    from tests.engine.conftest import Feeder

    feed = Feeder(session, replace(settings, customer_touch_cap="1 per 30d"), clock)
    account = AccountFactory(owner=team["csm"])
    feed("product.usage", account, {"usage_change_pct": -35, "active_users": 10})
    clock.advance(timedelta(days=15))
    feed.sweep()  # the first journey ends (recovered), so the account can enroll again
    clock.advance(timedelta(days=1))
    feed("product.usage", account, {"usage_change_pct": -40, "active_users": 9})
    assert _journey(session, account, "usage-drop-rescue").id != \
        session.scalars(select(Journey).order_by(Journey.id)).first().id
    assert len(_outbox(session, account, "customer.in_app_message")) == 1
    second = session.scalars(select(StepRun).where(StepRun.step_id == "in-app-nudge")
                             .order_by(StepRun.id.desc())).first()
    assert second.status == "skipped" and "cap" in second.reason and "30d" in second.reason


# --- expand: expansion to AE handoff ---------------------------------------------------------

def test_a_seat_limit_hands_a_mid_market_account_to_the_least_loaded_ae(session, feed, team):
    account = AccountFactory(name="Scale Co", segment="mid", owner=team["csm"])
    feed("product.seat_limit_reached", account, {"seats_used": 50, "seats_purchased": 50})
    assert account.stage == "expand"
    assert "50 of 50 seats" in _outbox(session, account, "crm.create_note")[0].payload["args"]["body"]
    task = _tasks(session, account)[0]
    assert task.owner_id == team["ae"].id and "out of seats" in task.title
    assert "50" in task.brief_text


def test_a_small_account_at_its_seat_limit_gets_an_upsell_outline_to_review(
        session, feed, settings, clock, team):
    account = AccountFactory(name="Small Co", segment="smb", owner=team["csm"])
    feed("product.seat_limit_reached", account, {"seats_used": 10, "seats_purchased": 10})
    review = _tasks(session, account, kind="review")[0]
    assert review.owner_id == team["csm"].id and "current seats: 10" in review.draft
    _decide(session, settings, clock, review, "published")
    assert _journey(session, account, "expansion-handoff").status == "completed"


# --- renew: renewal review ---------------------------------------------------------------------

def _renewal(session, feed, team, owner=None):
    account = AccountFactory(name="Renew Co", stage="adopt", owner=owner or team["ae"])
    deal = DealFactory(account=account, kind="renewal", is_closed=False, is_won=False,
                       attributes={"champion_email": "cfo@renewco.example"})
    feed("renewal.upcoming", account, {"days_to_renewal": 118}, deal=deal)
    return account


def test_renewal_review_marks_the_crm_drafts_a_brief_and_asks_before_the_survey(
        session, feed, settings, clock, team):
    account = _renewal(session, feed, team)
    assert account.stage == "renew"
    mark = session.scalars(select(StepRun).where(StepRun.step_id == "mark-in-review")).one()
    assert mark.override_until == clock.now() + timedelta(hours=24)
    review = _tasks(session, account, kind="review")[0]
    assert "renewing in 118 days" in review.draft
    _decide(session, settings, clock, review, "published")
    assert _outbox(session, account, "crm.create_note")[-1].payload["args"]["body"] == review.draft

    clock.advance(timedelta(days=5))
    feed("task.completed", account, {"outcome": "renewing", "actor": "ari@acme.example"})
    approval = _tasks(session, account, kind="approval")[0]
    assert approval.owner_id == team["ae"].id
    _decide(session, settings, clock, approval, "approved")
    survey = _outbox(session, account, "customer.survey")[0]
    assert survey.payload["args"] == {"survey": "renewal-nps", "to": "cfo@renewco.example"}
    assert _journey(session, account, "renewal-review").status == "completed"
    assert account.stage == "adopt"  # a renewal starts a new adopt phase


def test_a_renewal_override_inside_the_window_puts_the_crm_field_back(session, feed, settings, clock, team):
    account = _renewal(session, feed, team)
    mark = session.scalars(select(StepRun).where(StepRun.step_id == "mark-in-review")).one()
    clock.advance(timedelta(hours=3))
    engine.override_step(session=session, settings=settings, step_run_id=mark.id,
                         actor=team["ae"].email, now=clock.now())
    values = [m.payload["args"]["value"] for m in _outbox(session, account, "crm.update_field")]
    assert values == ["In review", "Not started"]


def test_no_renewal_decision_in_thirty_days_goes_to_the_owners_manager(session, feed, settings, clock, team):
    account = _renewal(session, feed, team)
    _decide(session, settings, clock, _tasks(session, account, kind="review")[0], "published")
    clock.advance(timedelta(days=31))
    feed.sweep()
    escalated = _tasks(session, account, kind="action")[-1]
    assert escalated.owner_id == team["manager"].id and "No renewal decision" in escalated.title


def test_a_manager_review_with_no_manager_goes_to_the_exception_queue(session, feed, settings, clock, team):
    loner = OwnerFactory(role="ae", manager=None)
    account = _renewal(session, feed, team, owner=loner)
    _decide(session, settings, clock, _tasks(session, account, kind="review")[0], "published")
    clock.advance(timedelta(days=31))
    feed.sweep()
    item = session.scalars(select(ExceptionItem).where(ExceptionItem.account_id == account.id)).one()
    assert item.category == "no_assignee" and "manager-review" in item.message
