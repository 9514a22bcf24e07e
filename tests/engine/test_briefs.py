import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from orchestrator import models
from orchestrator.journeys.governance import record_touch
from orchestrator.work.briefs import MAX_TEXT_LENGTH, build_brief
from tests.factories import AccountFactory, ContactFactory, DealFactory, OwnerFactory

ALL = ("trigger", "account", "contacts", "recent_signals", "journey", "automations", "deal")


def _signal(session, account, type, payload, at, deal=None):
    signal = models.Signal(type=type, dedupe_key=f"{type}:{account.id}:{at.isoformat()}", account_id=account.id,
                           deal_id=deal.id if deal is not None else None, source="segment", payload=payload,
                           occurred_at=at)
    session.add(signal)
    session.flush()
    return signal


def _journey(session, account, playbook_id, *, enrolled_at, step="kickoff-call", deal=None):
    version = session.query(models.PlaybookVersion).filter_by(playbook_id=playbook_id).first()
    if version is None:
        version = models.PlaybookVersion(playbook_id=playbook_id, version=1, name=playbook_id, stage="onboard",
                                         checksum="x", source_text="", source_path=f"{playbook_id}.yaml")
        session.add(version)
        session.flush()
    journey = models.Journey(account_id=account.id, playbook_id=playbook_id, playbook_version_id=version.id,
                             enrollment_key=f"{playbook_id}:{account.id}:{enrolled_at.isoformat()}",
                             current_step_id=step, enrolled_at=enrolled_at, status="waiting",
                             deal_id=deal.id if deal is not None else None)
    session.add(journey)
    session.flush()
    return journey


def _run(session, journey, step_id, kind, status, at, reason="", oversight=None):
    run = models.StepRun(journey_id=journey.id, step_id=step_id, kind=kind, status=status, reason=reason,
                         oversight=oversight, started_at=at, finished_at=at)
    session.add(run)
    session.flush()
    return run


@pytest.fixture
def acme(session, clock):
    owner = OwnerFactory(name="Ana Ruiz", email="ana@acme.example")
    account = AccountFactory(name="Acme Corp", domain="acme.example", segment="enterprise", industry="Logistics",
                             arr=Decimal("184500"), health=42, owner=owner, stage="adopt",
                             stage_entered_at=clock.now() - timedelta(days=30),
                             renewal_date=datetime(2027, 3, 1, tzinfo=UTC))
    ContactFactory(account=account, name="Uma User", role="user", title="Analyst")
    ContactFactory(account=account, name="Ada Admin", role="admin", title="IT Admin", email="ada@acme-corp.example")
    ContactFactory(account=account, name="Cora Champion", role="champion", title="VP Ops")
    ContactFactory(account=account, name="Pat Primary", role="economic_buyer", title="CFO", is_primary=True,
                   email="pat@acme-corp.example")
    return account


def test_the_brief_carries_the_triggers_values_the_recommendation_the_arr_and_key_contacts(session, clock, acme):
    journey = _journey(session, acme, "adopt-usage", enrolled_at=clock.now() - timedelta(days=14),
                       step="activation-rescue")
    trigger = _signal(session, acme, "product.usage", {"active_users": 3, "seats": 50},
                      clock.now() - timedelta(hours=2))

    brief = build_brief(session, account=acme, trigger=trigger,
                        recommendation="Call the champion and offer an admin training session.",
                        sections=ALL, journey=journey, assignee_how="account owner", now=clock.now())

    text = brief.text
    # The trigger reads through the signal catalog: labels, not payload keys.
    assert text.startswith("Why you got this\n- Signal: Product usage (product.usage) at 2026-11-23 12:00 UTC, "
                           "today (source: segment)")
    assert "- Active users: 3" in text and "- Seats: 50" in text
    assert "- Made by: playbook adopt-usage version 1, step activation-rescue" in text
    assert "- Why you: account owner (the step's assignment rule)" in text
    assert "Recommendation\nCall the champion and offer an admin training session." in text
    assert "- ARR: $184,500 | Health: 42" in text
    assert "- Stage: adopt, 30 days in stage" in text
    assert "- Owner: Ana Ruiz <ana@acme.example>" in text
    assert "- Renewal: 2027-03-01 (in 98 days)" in text
    assert "- Pat Primary (primary, economic_buyer) | CFO | pat@acme-corp.example" in text
    assert "- Ada Admin (admin) | IT Admin | ada@acme-corp.example" in text

    data = brief.data
    assert data["trigger"]["values"] == {"active_users": 3, "seats": 50}
    assert data["recommendation"] == "Call the champion and offer an admin training session."
    assert data["account"]["arr"] == 184500.0
    assert data["assigned"] == "account owner"
    json.dumps(data)  # stored in a JSON column: must serialise as is


def test_key_contacts_put_the_primary_first_then_champion_buyer_admin_at_most_five(session, clock, acme):
    for n in range(4):
        ContactFactory(account=acme, name=f"Zed User {n}", role="user")

    contacts = build_brief(session, account=acme, trigger=None, recommendation="r", sections=["contacts"],
                           now=clock.now()).data["contacts"]

    names = [c["name"] for c in contacts["items"]]
    assert names[:4] == ["Pat Primary", "Cora Champion", "Ada Admin", "Uma User"]
    assert len(names) == 5
    assert contacts["total"] == 8


def test_recent_activity_is_a_usage_trend_line_not_a_list_of_usage_rows(session, clock, acme):
    for n in range(12):
        _signal(session, acme, "product.usage", {"active_users": n}, clock.now() - timedelta(days=12 - n))

    brief = build_brief(session, account=acme, trigger=None, recommendation="r", sections=["recent_signals"],
                        now=clock.now())

    usage = brief.data["recent_signals"]["usage"]
    assert (usage["active_users"], usage["week"]["from"], usage["readings"]) == (11, 4, 12)
    assert ("- Product usage: 11 active users on 2026-11-22 (yesterday); 7 days: up 7 (+175.0%) from 4; "
            "30 days: no earlier reading; 12 readings in 30 days") in brief.text
    assert "active_users=" not in brief.text


def test_journey_history_and_what_automation_did_are_listed(session, clock, acme):
    onboarding = _journey(session, acme, "onboard-kickoff", enrolled_at=clock.now() - timedelta(days=40))
    _run(session, onboarding, "welcome", "automated", "done", clock.now() - timedelta(days=40),
         oversight="out_of_loop")
    _run(session, onboarding, "send-survey", "automated", "skipped", clock.now() - timedelta(days=39),
         reason="customer-touch cap reached", oversight="out_of_loop")
    _run(session, onboarding, "kickoff-call", "human", "done", clock.now() - timedelta(days=38))
    record_touch(session, account_id=acme.id, journey_id=onboarding.id, step_id="welcome",
                 action="customer.email", at=clock.now() - timedelta(days=3))

    brief = build_brief(session, account=acme, trigger=None, recommendation="r",
                        sections=["journey", "automations"], now=clock.now())

    text = brief.text
    assert "- onboard-kickoff: waiting at step kickoff-call, enrolled 2026-10-14 14:00 UTC" in text
    assert "  - kickoff-call (human): done 2026-10-16 14:00 UTC" in text
    assert "send-survey: skipped (out_of_loop) - customer-touch cap reached" in text
    assert "- Customer touches in the last 30 days: 1" in text
    assert "customer.email (onboard-kickoff/welcome)" in text
    assert [s["step_id"] for s in brief.data["automations"]["steps"]] == ["send-survey", "welcome"]
    assert text.index("Journey history") < text.index("What automation already did")


def test_the_deal_section_shows_the_journeys_deal(session, clock, acme):
    deal = DealFactory(account=acme, name="Acme expansion", amount=Decimal("36000"), stage="Negotiation",
                       kind="expansion", close_date=datetime(2026, 12, 15, tzinfo=UTC),
                       owner=OwnerFactory(name="Rex Rep"))
    journey = _journey(session, acme, "expand-upsell", enrolled_at=clock.now(), deal=deal)

    brief = build_brief(session, account=acme, trigger=None, recommendation="r", sections=["deal"],
                        journey=journey, now=clock.now())

    assert "- Acme expansion: $36,000, stage Negotiation (expansion)" in brief.text
    assert "- Close date: 2026-12-15" in brief.text
    assert "- Deal owner: Rex Rep" in brief.text


def test_the_text_fits_the_crm_field_with_500_signals_and_keeps_trigger_and_recommendation(session, clock, acme):
    long_note = "word " * 400
    for n in range(500):
        _signal(session, acme, "support.ticket_opened", {"subject": f"ticket {n}", "body": long_note},
                clock.now() - timedelta(minutes=500 - n))
    for j in range(20):
        journey = _journey(session, acme, f"playbook-{j}", enrolled_at=clock.now() - timedelta(days=j + 1))
        for s in range(40):
            _run(session, journey, f"step-{s}", "automated", "done", clock.now() - timedelta(days=j + 1),
                 reason=long_note, oversight="out_of_loop")
    trigger = _signal(session, acme, "support.escalation", {"ticket": "ZD-4711", "severity": "high"}, clock.now())
    recommendation = "Call Pat Primary today; offer a named support engineer until ZD-4711 is closed."

    brief = build_brief(session, account=acme, trigger=trigger, recommendation=recommendation, sections=ALL,
                        now=clock.now())

    assert len(brief.text) <= MAX_TEXT_LENGTH
    assert "- Ticket: ZD-4711" in brief.text and "- Severity: high" in brief.text
    assert recommendation in brief.text
    assert "- ARR: $184,500" in brief.text
    assert "more omitted)" in brief.text
    assert "Pat Primary" in brief.text
    assert len(brief.data["recent_signals"]["tickets"]) == 25  # a bounded window, not the whole history
    json.dumps(brief.data)


def test_a_recommendation_longer_than_the_field_is_the_only_thing_shortened(session, clock, acme):
    brief = build_brief(session, account=acme, trigger=None, recommendation="x" * 40_000,
                        sections=["account"], now=clock.now())

    assert len(brief.text) <= MAX_TEXT_LENGTH
    assert brief.text.endswith("(truncated: full brief in Handoff)")
    assert brief.data["recommendation"] == "x" * 40_000


def test_an_unknown_section_is_refused(session, clock, acme):
    with pytest.raises(ValueError, match="unknown brief section"):
        build_brief(session, account=acme, trigger=None, recommendation="r", sections=["gossip"], now=clock.now())
