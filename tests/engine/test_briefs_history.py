"""Briefs on real, noisy histories: hundreds of usage rows, a complaint among them, a rep who must act.

Each test builds the account's history, lets the engine create the task as it would in
production (a deal won enrolls the kickoff playbook), and asserts on the lines the rep reads.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from orchestrator import models
from orchestrator.db import SESSION_CONNECTORS_KEY, SESSION_DESCRIPTION_LIMITS_KEY
from orchestrator.journeys.decisions import decide_task
from orchestrator.models import ExternalId, Task
from orchestrator.runtime import description_limits
from orchestrator.work.briefs import BriefOptions, build_brief, live_brief, relative_day, render_text
from tests.engine.conftest import HEADER, install_playbook
from tests.factories import AccountFactory, ContactFactory, DealFactory, OwnerFactory

KICKOFF = """
    id: kickoff
    name: Kickoff
    stage: onboard
""" + HEADER + """
    enroll: {on: deal.closed_won, once_per: deal}
    sensitive_signals: [sentiment.negative, support.escalation]
    steps:
      - id: kickoff-call
        kind: human
        assign: {to: account.owner}
        task:
          title: "Kickoff with {{ account.name }}"
          recommend: "Book the kickoff call."
          brief: [trigger, account, contacts, recent_signals, journey, deal]
        sla: {due: 2 business days}
      - id: welcome
        kind: automated
        oversight: out_of_loop
        do: customer.email
        with: {to: "team@customer.example", subject: "Welcome", body: "Your kickoff is booked."}
"""

COMPLAINT = ("Seit dem Update funktioniert der Export nicht mehr, wir verlieren jeden Tag Daten und niemand "
             "antwortet auf unsere Tickets.")


def _usage(session, account, days, *, start=400, step=-1):
    """One product.usage row a day for `days` days up to today: active users change by `step` a day from `start`."""
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    for n in range(days):
        at = now - timedelta(days=days - 1 - n)
        session.add(models.Signal(type="product.usage", dedupe_key=f"usage:{account.id}:{n}", account_id=account.id,
                                  source="segment", payload={"active_users": start + step * n, "period": "1d"},
                                  occurred_at=at, received_at=at, processed_at=at))
    session.flush()


def _raw(session, account, type, payload, at, *, deal=None):
    signal = models.Signal(type=type, dedupe_key=f"{type}:{account.id}:{at.isoformat()}", account_id=account.id,
                           deal_id=deal.id if deal is not None else None, source="zendesk", payload=payload,
                           occurred_at=at, received_at=at, processed_at=at)
    session.add(signal)
    session.flush()
    return signal


def _world(session, clock, *, arr=Decimal("0"), contacts=True, days=300, domain="globex.example",
           external=("salesforce", "0015e00000GLX001")):
    owner = OwnerFactory(name="Ana Ruiz", email=f"ana@{domain}.acme.example")
    deal_owner = OwnerFactory(name="Omar Diaz", email=f"omar@{domain}.acme.example")
    session.add(ExternalId(kind="owner", local_id=deal_owner.id, source="salesforce", external_id=f"own-{domain}"))
    account = AccountFactory(name="Globex", domain=domain, arr=arr, health=38, owner=owner,
                             stage="onboard", renewal_date=clock.now() - timedelta(days=2))
    session.add(ExternalId(kind="account", local_id=account.id, source=external[0], external_id=external[1]))
    if contacts:
        ContactFactory(account=account, name="Pat Primary", role="economic_buyer", is_primary=True,
                       email="pat@globex.example")
    deal = DealFactory(account=account, name="Globex platform", amount=Decimal("92000"), kind="new",
                       close_date=clock.now() - timedelta(days=27), owner=deal_owner,
                       attributes={"champion_email": "gina@globex.example"})
    _usage(session, account, days)
    complaint = _raw(session, account, "sentiment.negative", {"channel": "email", "score": -0.8, "comment": COMPLAINT},
                     clock.now() - timedelta(days=2))
    ticket = _raw(session, account, "support.ticket_opened",
                  {"ticket_id": "ZD-88", "severity": "high", "subject": "Export broken",
                   "body": "CSV export returns 500 since Monday", "requester": "lena@globex.example"},
                  clock.now() - timedelta(days=3))
    _raw(session, account, "support.ticket_opened", {"ticket_id": "ZD-90", "severity": "low", "subject": "Logo"},
         clock.now() - timedelta(days=4))
    return account, deal, complaint, ticket


def _won(session, feed, clock, account, deal, *, days_ago=27):
    if not session.scalars(select(models.PlaybookVersion).where(models.PlaybookVersion.playbook_id == "kickoff")).all():
        install_playbook(session, KICKOFF)
    feed("deal.closed_won", account, {"amount": 92000, "owner_id": f"own-{account.domain}",
                                      "close_date": (clock.now() - timedelta(days=days_ago)).date().isoformat()},
         deal=deal, at=clock.now() - timedelta(days=days_ago))
    return session.scalars(select(Task).where(Task.account_id == account.id)).one()


def _section(text, heading):
    start = text.index(f"\n\n{heading}\n") + 2
    end = text.find("\n\n", start)
    return text[start: end if end != -1 else None]


def test_the_complaint_among_300_usage_rows_is_in_the_risks_right_after_the_trigger(session, feed, clock):
    account, deal, complaint, ticket = _world(session, clock)

    task = _won(session, feed, clock, account, deal)

    text = task.brief_text
    risks = _section(text, "Risks")
    assert text.index("Why you got this") < text.index("\n\nRisks\n") < text.index("\n\nRecommendation\n")
    assert f'- Negative sentiment via email, score -0.8, 2026-11-21 (2 days ago): "{COMPLAINT}"' in risks
    assert ('- Open high-severity ticket ZD-88 (high), 2026-11-20 (3 days ago): '
            '"Export broken - CSV export returns 500 since Monday"') in risks
    assert "ZD-90" not in risks  # a low-severity ticket is activity, not a risk
    # The protection notice names the signal and its date, in the engine's own words.
    assert ("- Protected human zone: sentiment.negative on 2026-11-21; a person handles this account's customer "
            "contact. Customer-facing automation (emails, surveys) is held back until 2026-12-21.") in risks
    assert "- Renewal date passed 2 days ago (2026-11-21) with no renewal recorded" in risks
    assert "in -2 days" not in text
    # ...and once the kickoff is done, the engine holds the welcome email back for the reason the brief gave.
    decide_task(session=session, settings=feed.settings, task_id=task.id, outcome="done", actor="ana@acme.example",
                now=clock.now())
    welcome = session.scalars(select(models.StepRun).where(models.StepRun.step_id == "welcome")).one()
    assert welcome.status == "skipped"
    assert welcome.reason == ("protected human zone: sentiment.negative on 2026-11-21; "
                              "a person handles this account's customer contact")


def test_usage_becomes_one_trend_line_with_the_right_numbers(session, feed, clock):
    account, deal, _complaint, _ticket = _world(session, clock)

    text = _won(session, feed, clock, account, deal).brief_text

    activity = _section(text, "Recent activity")
    usage_lines = [line for line in activity.splitlines() if "Product usage" in line]
    # 300 daily rows falling by one a day from 400: 101 today, 108 a week before, 131 thirty days before.
    assert usage_lines == ["- Product usage: 101 active users on 2026-11-23 (today); 7 days: down 7 (-6.5%) "
                           "from 108; 30 days: down 30 (-22.9%) from 131; 30 readings in 30 days"]
    assert "active_users=" not in text
    # Tickets and sentiment one by one, with severity and an excerpt; usage rows pushed none of them out.
    assert '- 2026-11-21 (2 days ago) Negative sentiment [via email, score -0.8]: "Seit dem Update' in activity
    assert '- 2026-11-19 (4 days ago) Support ticket opened ZD-90 [severity low, open]: "Logo"' in activity


def test_usage_trend_numbers_on_a_realistic_series(session, clock):
    account = AccountFactory(name="Initech", arr=Decimal("50000"))
    _usage(session, account, 400, start=400, step=-1)  # 400 rows: 400, 399, ... 1 (today)

    brief = build_brief(session, account=account, trigger=None, recommendation="r", sections=["recent_signals"],
                        now=clock.now())

    usage = brief.data["recent_signals"]["usage"]
    assert (usage["active_users"], usage["week"]["from"], usage["month"]["from"], usage["readings"]) == (1, 8, 31, 30)
    assert ("- Product usage: 1 active users on 2026-11-23 (today); 7 days: down 7 (-87.5%) from 8; "
            "30 days: down 30 (-96.8%) from 31; 30 readings in 30 days") in brief.text
    assert "- Usage down 96.8% in 30 days (31 -> 1 active users)" in brief.text


def test_the_trigger_reads_in_words_money_dates_people_and_the_rule_that_made_the_task(session, feed, clock):
    account, deal, _complaint, _ticket = _world(session, clock)

    task = _won(session, feed, clock, account, deal)

    why = task.brief_text.split("\n\n", 1)[0]
    assert "- Signal: Deal won (deal.closed_won) at 2026-10-27 14:00 UTC, 27 days ago (source: test)" in why
    assert "- Deal amount: $92,000" in why
    assert "- Owner: Omar Diaz <omar@globex.example.acme.example>" in why  # own-globex.example, by name
    assert "- Close date: 2026-10-27 (27 days ago)" in why
    assert "own-globex" not in why and "92000" not in why
    assert "- Signal age: 27 days. It happened on 2026-10-27: check it still applies before acting on it." in why
    assert "- Made by: playbook kickoff version 1, step kickoff-call" in why
    assert "- Why you: account owner (the step's assignment rule)" in why
    # No ARR yet: the deal's amount decides, and the brief says so.
    assert task.priority == "normal"
    assert "- Priority normal: deal amount (account ARR not known yet) $92,000 is between $10k and $100k (0)" in why


def test_a_fresh_signal_states_no_age_and_the_threshold_is_configurable(session, clock):
    account = AccountFactory()
    signal = _raw(session, account, "deal.closed_won", {"amount": 1000}, clock.now() - timedelta(days=3))

    fresh = build_brief(session, account=account, trigger=signal, recommendation="r", sections=[], now=clock.now())
    strict = build_brief(session, account=account, trigger=signal, recommendation="r", sections=[], now=clock.now(),
                         options=BriefOptions(stale_after=timedelta(days=2)))

    assert "Signal age" not in fresh.text
    assert "- Signal age: 3 days." in strict.text


def test_relative_days_read_right_on_both_sides_of_today():
    now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    assert relative_day(now - timedelta(days=2), now) == "2 days ago"
    assert relative_day(now + timedelta(days=3), now) == "in 3 days"
    assert relative_day(now - timedelta(days=1), now) == "yesterday"
    assert relative_day(now + timedelta(days=1), now) == "tomorrow"
    assert relative_day(now - timedelta(hours=13), now) == "today"


def test_a_deal_amount_decides_priority_while_the_account_has_no_arr(session, feed, clock):
    account, deal, _complaint, _ticket = _world(session, clock)
    deal.amount = Decimal("173000")

    task = _won(session, feed, clock, account, deal)

    assert task.priority == "normal"  # +1 for $100k+; no ARR no longer counts as a small account
    assert "deal amount (account ARR not known yet) $173,000 is $100k+ (+1)" in task.brief_text


def test_without_contacts_the_brief_shows_the_triggers_people_and_where_to_add_them(session, clock):
    account, deal, _complaint, ticket = _world(session, clock, contacts=False)
    ticket.payload = {**ticket.payload, "requester_name": "Lena Vogel"}

    brief = build_brief(session, account=account, trigger=ticket, recommendation="r", sections=["contacts"],
                        deal=deal, now=clock.now())

    contacts = _section(brief.text, "Key contacts")
    assert ("- No contacts on file: add them on the Salesforce account 0015e00000GLX001 (its contacts), then sync, "
            "so the next brief names them.") in contacts
    assert "- From the trigger: Lena Vogel <lena@globex.example> (ticket requester)" in contacts
    assert "- From the trigger: <gina@globex.example> (deal champion)" in contacts


def test_the_live_brief_shows_the_journey_waiting_and_marks_new_signals(session, feed, clock):
    account, deal, _complaint, _ticket = _world(session, clock, days=40)
    task = _won(session, feed, clock, account, deal)
    snapshot = task.brief_text
    assert "- kickoff: waiting on this task at step kickoff-call" in snapshot

    clock.set(clock.now() + timedelta(days=1))
    _raw(session, account, "support.escalation", {"ticket_id": "ZD-91", "severity": "urgent",
                                                  "subject": "Still broken"}, clock.now() - timedelta(hours=1))
    account.health = 20
    session.flush()

    live = live_brief(session, task=task, now=clock.now())

    assert task.brief_text == snapshot  # the CRM's copy is a snapshot
    assert "- kickoff: waiting on this task at step kickoff-call" in live.text
    assert "active, running" not in live.text
    assert "- [new] 2026-11-24 (today) Support escalation ZD-91 [severity urgent, open]: \"Still broken\"" in live.text
    assert "1 new signal(s) since the task was created (2026-11-23 14:00 UTC), marked [new]" in live.text
    assert "- Open high-severity ticket ZD-91 (urgent), 2026-11-24 (today)" in live.text
    assert "- Health fell from 38 to 20 since this task was created" in live.text
    assert "- Priority normal:" in live.text  # the priority it was given, with its reasons


def test_the_text_fits_each_connectors_limit_cutting_least_important_lines_first(session, clock):
    account, deal, complaint, ticket = _world(session, clock, days=40)
    journey_version = models.PlaybookVersion(playbook_id="noise", version=1, name="noise", stage="onboard",
                                             checksum="noise", source_text="", source_path="noise.yaml", active=False)
    session.add(journey_version)
    session.flush()
    for j in range(30):
        journey = models.Journey(account_id=account.id, playbook_id="noise", playbook_version_id=journey_version.id,
                                 enrollment_key=f"noise:{j}", enrolled_at=clock.now() - timedelta(days=j),
                                 status="completed")
        session.add(journey)
        session.flush()
        for s in range(30):
            session.add(models.StepRun(journey_id=journey.id, step_id=f"step-{s}", kind="automated", status="done",
                                       reason="x" * 400, started_at=clock.now() - timedelta(days=j)))
    session.flush()
    brief = build_brief(session, account=account, trigger=ticket, recommendation="Call Lena today.",
                        sections=["account", "contacts", "recent_signals", "journey", "automations", "deal"],
                        deal=deal, now=clock.now())
    full = render_text(brief.data, limit=10**9)
    assert len(full) > 32_000

    for limit in (65_536, 32_000, 8_000, 3_000):
        text = render_text(brief.data, limit=limit)
        assert len(text) <= limit
        assert text.startswith("Why you got this\n- Signal: Support ticket opened")
        assert "\n\nRisks\n" in text and COMPLAINT in text  # never cut
        assert "Recommendation\nCall Lena today." in text
    small = render_text(brief.data, limit=8_000)
    # Automations and journey history went first; the account and the tickets stayed.
    assert "What automation already did" in small and "more omitted)" in small
    assert "- ARR: not known yet | Health: 38" in small
    assert "ZD-90" in _section(small, "Recent activity")


def test_each_crm_connector_declares_its_description_limit_and_the_runtime_reads_it():
    assert description_limits({"salesforce": {}, "hubspot": {}, "files": {}}) == {"salesforce": 32_000,
                                                                                   "hubspot": 65_536}
    assert description_limits({}) == {}


def _noisy(session, clock, account):
    """Journeys with long step reasons: a history whose full brief is far over any CRM's limit."""
    version = models.PlaybookVersion(playbook_id=f"noise-{account.id}", version=1, name="noise", stage="onboard",
                                     checksum="noise",
                                     source_text="", source_path="noise.yaml", active=False)
    session.add(version)
    session.flush()
    for j in range(19):
        journey = models.Journey(account_id=account.id, playbook_id=version.playbook_id,
                                 playbook_version_id=version.id, enrollment_key=f"noise:{account.id}:{j}",
                                 status="completed", enrolled_at=clock.now() - timedelta(days=j + 1),
                                 ended_at=clock.now() - timedelta(days=j + 1))
        session.add(journey)
        session.flush()
        session.add_all(models.StepRun(journey_id=journey.id, step_id=f"step-{s}", kind="human", status="done",
                                       reason="y" * 450, started_at=clock.now() - timedelta(days=j + 1))
                        for s in range(12))
    session.flush()


def test_the_engine_cuts_the_brief_to_the_limit_of_the_crm_the_task_goes_to(session, feed, clock):
    session.info[SESSION_CONNECTORS_KEY] = {"salesforce": {}, "hubspot": {}}
    session.info[SESSION_DESCRIPTION_LIMITS_KEY] = description_limits({"salesforce": {}, "hubspot": {}})
    lengths = {}
    for source in ("salesforce", "hubspot"):
        account, deal, _complaint, _ticket = _world(session, clock, days=40, domain=f"{source}.example",
                                                    external=(source, f"{source}-acc-1"))
        _noisy(session, clock, account)
        task = _won(session, feed, clock, account, deal)
        message = session.scalars(select(models.OutboxMessage).where(models.OutboxMessage.task_id == task.id)).one()
        assert message.connector == source
        assert message.payload["description"] == task.brief_text
        lengths[source] = len(task.brief_text)
        assert "\n\nRisks\n" in task.brief_text and COMPLAINT in task.brief_text
        assert "Recommendation\nBook the kickoff call." in task.brief_text
    assert 30_000 < lengths["salesforce"] <= 32_000  # cut to Salesforce's Task.Description
    assert 32_000 < lengths["hubspot"] <= 65_536  # HubSpot's hs_task_body takes the whole brief


def test_catalog_formats_percentages_money_and_dates_on_both_sides_of_today(session, clock):
    account = AccountFactory()
    usage = _raw(session, account, "product.usage", {"active_users": 1200, "usage_change_pct": -35, "period": "30d"},
                 clock.now())
    renewal = _raw(session, account, "renewal.upcoming",
                   {"days_to_renewal": 75, "renewal_date": "2027-02-06", "amount": 240000.5}, clock.now())

    usage_text = build_brief(session, account=account, trigger=usage, recommendation="r", sections=[],
                             now=clock.now()).text
    renewal_text = build_brief(session, account=account, trigger=renewal, recommendation="r", sections=[],
                               now=clock.now()).text

    assert "- Active users: 1,200\n- Usage change: -35%\n- Period: 30d" in usage_text
    assert "- Renewal amount: $240,000.50" in renewal_text
    assert "- Renewal date: 2027-02-06 (in 75 days)" in renewal_text
    assert "- Days to renewal: 75" in renewal_text


def test_a_renewal_inside_the_window_is_a_risk_and_one_further_out_is_not(session, clock):
    soon = AccountFactory(name="Soon", renewal_date=clock.now() + timedelta(days=10))
    later = AccountFactory(name="Later", renewal_date=clock.now() + timedelta(days=90))

    soon_text = build_brief(session, account=soon, trigger=None, recommendation="r", sections=[],
                            now=clock.now()).text
    later_text = build_brief(session, account=later, trigger=None, recommendation="r", sections=[],
                             now=clock.now()).text
    narrow = build_brief(session, account=soon, trigger=None, recommendation="r", sections=[], now=clock.now(),
                         options=BriefOptions(renewal_within=timedelta(days=5))).text

    expected = f"- Renewal in 10 days ({(clock.now() + timedelta(days=10)):%Y-%m-%d})"
    assert expected in _section(soon_text, "Risks")
    assert "Renewal" not in later_text and "Renewal" not in narrow
